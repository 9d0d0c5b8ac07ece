"""Categorical columns: a tf.Transform vocabulary per column, and its ids.

For each categorical column c (text; an integer code is its decimal text),
the transform graph emits `c_id`, an int64 [batch] id:

  0                 missing (an empty string, an absent value)
  1 .. V            the vocabulary: the V most frequent values (at most
                    `top_k`) seen at least `min_count` times over the whole
                    dataset, in tf.Transform's order (decreasing frequency,
                    ties in reverse lexicographic order)
  V+1 .. V+B        any other value (rarer, or never seen in training),
                    hashed into `oov_buckets` buckets

so every value, including one never seen and the empty string, has an id,
and the column's size (what an embedding needs) is V + B + 1. The
vocabulary is `tft.vocabulary` over the present values, in the graph's
assets as VOCABULARY_PREFIX + c; `sizes` reads V back from it.
"""

import dataclasses
from typing import Optional

ID_SUFFIX = "_id"
VOCABULARY_PREFIX = "normpipe_vocabulary_"


@dataclasses.dataclass(frozen=True)
class VocabularyOptions:
    """Args: top_k (the vocabulary's largest size; None: no limit),
    min_count (a value seen fewer times over the dataset is out of the
    vocabulary), oov_buckets (ids for values out of the vocabulary, >= 1)."""

    top_k: Optional[int] = 1000
    min_count: int = 5
    oov_buckets: int = 1

    def __post_init__(self):
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be >= 1 or None. Received: {self.top_k!r}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1. Received: {self.min_count!r}")
        if self.oov_buckets < 1:
            raise ValueError(f"oov_buckets must be >= 1 (an unseen value needs an id). Received: {self.oov_buckets!r}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def id_name(column: str) -> str:
    """The graph output holding a categorical column's ids."""
    return column + ID_SUFFIX


def vocabulary_file(column: str) -> str:
    return VOCABULARY_PREFIX + column


def text_column(value):
    """A preprocessing_fn input as string [batch], missing as "": a string,
    or an integer (its decimal text), dense [batch] / [batch, 1] or a
    VarLen tf.SparseTensor of at most one value per row."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from normpipe.components import labels  # pylint: disable=import-outside-toplevel

    if value.dtype != tf.string:
        if not value.dtype.is_integer:
            raise ValueError(f"a categorical input must hold strings or integers. Received: {value.dtype.name}")
        if isinstance(value, tf.SparseTensor):
            value = tf.SparseTensor(value.indices, tf.strings.as_string(value.values), value.dense_shape)
        else:
            value = tf.strings.as_string(value)
    return labels.string_column(value)


def category_ids(value, column: str, options: VocabularyOptions):
    """The int64 [batch] ids of a categorical input (see the module docstring)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    strings = text_column(value)
    present = tf.not_equal(strings, "")
    vocabulary = tft.vocabulary(tf.boolean_mask(strings, present), top_k=options.top_k,
                                frequency_threshold=options.min_count, vocab_filename=vocabulary_file(column))
    index = tft.apply_vocabulary(strings, vocabulary, num_oov_buckets=options.oov_buckets)
    return tf.where(present, index + 1, tf.zeros_like(index))


def read_vocabulary(transform_dir: str, column: str):
    """The vocabulary of `column` in id order (id 1 first), as text."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    path = f"{transform_dir.rstrip('/')}/transform_fn/assets/{vocabulary_file(column)}"
    with tf.io.gfile.GFile(path, "rb") as f:
        return [line.decode("utf-8", "replace") for line in f.read().split(b"\n") if line]


def sizes(transform_dir: str, categorical, options: dict) -> dict:
    """{id output: number of ids (V + oov_buckets + 1)} of the graph's categorical columns."""
    return {id_name(c): len(read_vocabulary(transform_dir, c)) + int(options["oov_buckets"]) + 1
            for c in categorical}
