"""The tf.Transform graph of full-dataset normalization: what a
preprocessing_fn builds (the Beam run and the files around it are in
transform.py).

For each numeric feature x, with full-dataset statistics from the same
analyzers that statistics.json reports (see statistics.py):

  missing (NaN)  imputed with the full-dataset mean
  zscore         x_z  = (x - mean) / std            (population std, ddof=0)
  minmax         x_01 = (x - min) / (max - min)

computed in float64 and emitted as float32 model inputs. The arithmetic runs
on x * 2**k (k per feature, see statistics.py and exact_float.py), which
gives the same ratios and survives TensorFlow's flush-to-zero. A feature with zero
variance (or min == max, or no present value) maps to 0.0: the feature carries
no information, and 0.0 is what its imputed mean maps to. Results are clipped
to +-OUTPUT_LIMIT so that an infinite serving input yields a finite value.
The label, if any, passes through as float32 under its raw name (missing as
NaN). Each categorical column gives its vocabulary ids, `<column>_id`
(int64; see categories.py). Raw inputs are what tf.Transform passes, from normpipe's readers or
from TFX (see statistics.as_column); other raw inputs are not passed through.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from normpipe.components import categories, labels, statistics
from normpipe.core import exact_float
from normpipe.core.kernels import OUTPUT_LIMIT, scale_clip_float32

METHODS = ("zscore", "minmax")
SUFFIX = {"zscore": "_z", "minmax": "_01"}


def matrix_key(method: str) -> str:
    """The graph output holding one method's normalized features as a
    float32 [batch, F] matrix, columns in `output_names` order.

    A model that takes all of them as one input reads this output directly,
    so serving does not split the matrix into features only to stack them
    again. Like the statistics output, it is not materialized and not in
    transformed_metadata.
    """
    return f"__{method}_matrix__"


def is_internal(name: str) -> bool:
    """Graph outputs that are not features: statistics and matrices."""
    return name.startswith("__") and name.endswith("__")


@dataclasses.dataclass(frozen=True)
class TransformOptions:
    """What the preprocessing_fn computes.

    Args:
      features: numeric raw features to normalize, in order.
      method: "zscore", "minmax" or "both".
      label: raw label column passed through as float32, or None.
      exponents: per-feature power-of-two scales (see exact_float.py).
      matrix_outputs: also emit each method's features as one matrix
        (`matrix_key`), which normpipe's exports read; such outputs are not
        features, so a TFX pipeline, which materializes every output, goes
        without them.
      categorical: raw columns (text or integer codes) whose vocabulary ids
        the graph emits as `<column>_id` (see categories.py).
      vocabulary: the categorical columns' VocabularyOptions.
    """

    features: Tuple[str, ...]
    method: str = "zscore"
    label: Optional[str] = None
    exponents: Optional[Tuple[int, ...]] = None
    matrix_outputs: bool = True
    categorical: Tuple[str, ...] = ()
    vocabulary: categories.VocabularyOptions = categories.VocabularyOptions()

    def __post_init__(self):
        if self.method not in METHODS + ("both",):
            raise ValueError(f"method must be one of zscore, minmax, both. Received: {self.method!r}")
        if not self.features:
            raise ValueError("features must not be empty. Received: ()")
        if self.exponents is not None and len(self.exponents) != len(self.features):
            raise ValueError(f"exponents must have one value per feature. Received: {len(self.exponents)} exponents")
        produced = [n for m in self.methods for n in self.output_names(m)]
        if self.label and self.label in set(produced) | set(self.features) | set(self.categorical):
            raise ValueError(f"label must not be a feature or a normalized output name. Received: {self.label!r}")
        ids = [categories.id_name(c) for c in self.categorical]
        clash = sorted(set(ids) & (set(produced) | {self.label}) | set(self.categorical) & set(self.features))
        if clash or len(set(self.categorical)) != len(self.categorical):
            raise ValueError(f"categorical must name columns that are not features, whose ids do not take an "
                             f"output's name. Received: {list(self.categorical)}")

    @property
    def id_outputs(self) -> Tuple[str, ...]:
        return tuple(categories.id_name(c) for c in self.categorical)

    @property
    def methods(self) -> Tuple[str, ...]:
        return METHODS if self.method == "both" else (self.method,)

    def output_names(self, method: str) -> Tuple[str, ...]:
        return tuple(name + SUFFIX[method] for name in self.features)


def _inverse(denominator):
    """1 / denominator where denominator > 0 and finite, else 0, as [1, F].

    It depends on the analyzers alone, so it is a constant in the saved graph.
    """
    ok = tf.logical_and(denominator > 0, tf.math.is_finite(denominator))
    inverse = tf.where(ok, 1.0 / tf.where(ok, denominator, tf.ones_like(denominator)), tf.zeros_like(denominator))
    return inverse[tf.newaxis, :]


def _scaled(values, exponents):
    """float64 [F] values * 2**k per feature, exact (see exact_float.ldexp)."""
    return exact_float.ldexp(values[tf.newaxis, :], exponents)[0]


def normalize_matrix(x, stats, method, exponents=None):
    """float64 [batch, F] raw values -> float32 normalized values.

    `stats` are `statistics.analyze_features` results. The arithmetic runs on
    x * 2**k (exact, and clear of TensorFlow's flush-to-zero), and the
    deviation x - mean is (x - mean) - mean_low: mean + mean_low is the
    exact mean to ~106 bits, so a spread-1 feature near an offset of 1e12
    keeps its z-scores' digits, which the mean rounded to float64 (good to
    ~1e-4 there) would lose.
    """
    exponents = np.zeros(x.shape[1], np.int64) if exponents is None else exponents
    present = stats["count"] > 0
    zero = tf.zeros_like(stats["mean"])
    mean = _scaled(tf.where(present, stats["mean"], zero), exponents)
    mean_low = _scaled(tf.where(present, stats["mean_low"], zero), exponents)
    deviation = (exact_float.ldexp(x, exponents) - mean) - mean_low
    deviation = tf.where(tf.math.is_nan(x), tf.constant(0.0, tf.float64), deviation)  # imputed with the mean
    if method == "zscore":
        return scale_clip_float32(deviation, _inverse(_scaled(tf.where(present, stats["std"], zero), exponents)))
    low = _scaled(tf.where(present, stats["min"], zero), exponents)
    high = _scaled(tf.where(present, stats["max"], zero), exponents)
    return scale_clip_float32(deviation + ((mean - low) + mean_low), _inverse(high - low))


def graph_config(options: TransformOptions) -> dict:
    """What the transform graph records about itself (see statistics.py)."""
    return statistics.graph_config(
        options.features, options.exponents, label=options.label, methods=list(options.methods),
        outputs={m: list(options.output_names(m)) for m in options.methods},
        matrices={m: matrix_key(m) for m in options.methods} if options.matrix_outputs else {},
        output_limit=OUTPUT_LIMIT,
        categorical=list(options.categorical), vocabulary=options.vocabulary.as_dict(),
    )


def normalized_outputs(inputs: dict, options: TransformOptions) -> dict:
    """The normalized features of `options` ({`<feature><suffix>`: float32
    [batch]}, and the matrices if `options.matrix_outputs`), with the
    statistics and the graph's description kept in the graph (see
    statistics.py). The label is recorded in that description, not emitted:
    `label_column` gives it."""
    x = statistics.stack_features(inputs, options.features)
    stats = statistics.analyze_features(x)
    computed = [normalize_matrix(x, stats, method, options.exponents) for method in options.methods]
    # every output is computed from these, so they keep the statistics in the graph
    computed = statistics.depend_on_graph_constants(computed, stats, graph_config(options))
    outputs = {}
    for method, normalized in zip(options.methods, computed):
        if options.matrix_outputs:
            outputs[matrix_key(method)] = normalized
        # One Unpack rather than a slice per feature: fewer ops per request.
        outputs.update(zip(options.output_names(method), tf.unstack(normalized, axis=1)))
    return outputs


def categorical_outputs(inputs: dict, options: TransformOptions) -> dict:
    """{`<column>_id`: int64 [batch]} of options.categorical (see categories.py)."""
    return {categories.id_name(column): categories.category_ids(inputs[column], column, options.vocabulary)
            for column in options.categorical}


def label_column(inputs: dict, label: str) -> tf.Tensor:
    """The label as the graph emits it (see labels.label_output): a numeric
    one as float32 [batch], missing as NaN; a string one as its class index."""
    return labels.label_output(inputs[label], label)


def make_preprocessing_fn(options: TransformOptions):
    """The tf.Transform preprocessing_fn: the normalized features (and the
    label), with the statistics kept in the graph (see statistics.py)."""

    def preprocessing_fn(inputs):
        outputs = normalized_outputs(inputs, options)
        outputs.update(categorical_outputs(inputs, options))
        if options.label:
            outputs[options.label] = label_column(inputs, options.label)
        return outputs

    return preprocessing_fn
