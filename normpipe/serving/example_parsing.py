"""tf.train.Example parsing for the serving signatures.

`serving_examples` (and `regress` / `classify`) take serialized
tf.train.Examples, as TFX's ExampleGen writes them and TF Serving's
Classify/Regress APIs send them; these functions turn them into the float64
feature matrix the other signatures take.
"""

import numpy as np
import tensorflow as tf

from normpipe.components import categories


def example_types(metadata, features) -> dict:
    """{feature: "int64" | "float" | "bytes"}: the tf.train.Example list each
    feature is parsed from: the data's own type (integer columns, as TFX's
    CsvExampleGen writes them, are int64_list; text bytes_list), else the
    graph input's."""
    recorded = metadata.get("example_types") or {}

    def kind(name):
        dtype = tf.as_dtype(metadata["raw_specs"][name]["dtype"])
        return "bytes" if dtype == tf.string else "int64" if dtype.is_integer else "float"

    return {n: recorded.get(n) or kind(n) for n in features}


def parse_example_texts(examples, columns, kinds) -> dict:
    """Serialized tf.train.Examples -> {categorical column: string [batch]},
    absent = "": a bytes_list feature as it is, an int64_list one (an
    integer code) as its decimal text, a float_list one as its shortest
    text (7.0 -> "7", as normpipe's readers write a code)."""
    if not columns:
        return {}
    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    parsed = tf.io.parse_example(examples, {n: tf.io.VarLenFeature(dtypes[kinds[n]]) for n in columns})
    texts = {}
    for name in columns:
        value = parsed[name]
        if kinds[name] == "float":
            number = tf.cast(value.values, tf.float64)
            integral = tf.equal(tf.floor(number), number)
            text = tf.where(integral, tf.strings.as_string(tf.cast(number, tf.int64)),
                            tf.strings.as_string(number, shortest=True))
            value = tf.SparseTensor(value.indices, text, value.dense_shape)
        texts[name] = categories.text_column(value)  # as the transform graph reads it: "" where absent
    return texts


def parse_examples(examples, features, kinds) -> dict:
    """Serialized tf.train.Examples -> {feature: float64 [batch]}, absent = NaN
    (see `parse_example_matrix`)."""
    matrix = parse_example_matrix(examples, features, kinds)
    return dict(zip(features, tf.unstack(matrix, num=len(features), axis=1)))


def parse_example_matrix(examples, features, kinds):
    """Serialized tf.train.Examples -> float64 [batch, len(features)], absent = NaN.

    `kinds` ({feature: "int64" | "float"}, see `example_types`) says which
    list each feature is parsed from; int64 is exact up to 2**53. A feature
    with more than one value in an example is an error. The work after
    parsing is a fixed number of ops per list type, whatever the number of
    features, so a wide model's signatures stay small.
    """
    dtypes = {n: tf.int64 if kinds[n] == "int64" else tf.float32 for n in features}
    parsed = tf.io.parse_example(examples, {n: tf.io.VarLenFeature(dtypes[n]) for n in features})
    batch = tf.shape(examples, out_type=tf.int64)[0]
    groups = [[n for n in features if dtypes[n] == dtype] for dtype in (tf.float32, tf.int64)]
    groups = [names for names in groups if names]
    matrix = tf.concat([_dense_columns([parsed[n] for n in names], names, batch) for names in groups], axis=1)
    grouped = [n for names in groups for n in names]
    if grouped != list(features):
        where = {n: j for j, n in enumerate(grouped)}
        matrix = tf.gather(matrix, [where[n] for n in features], axis=1)
    return matrix


def _dense_columns(sparse, names, batch):
    """VarLen [batch, <=1] sparse tensors, one per feature -> float64
    [batch, len(names)], an absent value as NaN: one SparseConcat of all of
    them, then each feature's column (its position among the features
    that have a value in this batch) or an all-NaN one."""
    widths = tf.stack([s.dense_shape for s in sparse])[:, 1]
    check = tf.debugging.Assert(
        tf.reduce_all(widths <= 1),
        ["an example holds more than one value of feature", tf.gather(tf.constant(names), tf.argmax(widths))],
    )
    with tf.control_dependencies([check]):
        joined = sparse[0] if len(sparse) == 1 else tf.sparse.concat(1, sparse)
    dense = tf.sparse.to_dense(
        tf.SparseTensor(joined.indices, tf.cast(joined.values, tf.float64), joined.dense_shape),
        default_value=tf.constant(np.nan, tf.float64),
    )
    # the last column is all NaN: where a feature without values points
    dense = tf.concat([dense, tf.fill(tf.stack([batch, 1]), tf.constant(np.nan, tf.float64))], 1)
    position = tf.where(widths > 0, tf.cumsum(widths) - 1, tf.reduce_sum(widths))
    return tf.gather(dense, position, axis=1)
