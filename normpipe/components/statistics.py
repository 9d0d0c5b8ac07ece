"""Full-dataset feature statistics from tf.Transform analyzers.

For each numeric feature x (float64, missing as NaN):

  count    number of present (non-NaN) values
  missing  number of NaN values
  mean     sum(x) / count over present values
  var      population variance, ddof=0: sum((x - mean)^2) / count
  std      sqrt(var)
  min/max  over present values

All in float64: tf.Transform's mean/var combiner merges per-batch
(count, mean, M2) triples, which stays accurate on data with a large offset.

TensorFlow's CPU kernels flush subnormal floats (|x| < 2.2e-308) to zero, so
no analyzer does arithmetic on raw values (see exact_float.py): min and max
are taken over int64 keys that sort like the floats, and mean and variance
over x * 2**k, with k a per-feature power of two chosen from the sample (0
unless its spread is outside 2**+-256). Both are exact transformations;
`read_statistics` scales the results back in numpy. A value so far beyond
the sample's scale that the scaled square overflows is a UserError rather
than a silently skipped value. A feature with no present value reports count
0 and null mean/var/std/min/max.

A `preprocessing_fn` cannot emit float64 features, so each feature's
analyzer results are bit-cast to int64 and emitted as one [batch, 8, F]
output named `STATS_KEY`. `read_statistics` runs the saved transform graph
on one row and bit-casts them back: statistics.json and the constants inside
the transform graph are the same numbers.
"""

import math

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from normpipe.components import exact_float
from normpipe.components.errors import UserError

STATS_KEY = "__statistics__"
# mean and var are of x * 2**exponent; min and max of x itself.
FIELDS = ("count", "missing", "mean", "var", "min", "max", "exponent", "overflow")
_KEY_ABOVE_ALL = exact_float.key_of(np.inf)
_KEY_BELOW_ALL = exact_float.key_of(-np.inf)


def analyze_features(x: tf.Tensor, centers=None, exponents=None) -> dict:
    """tf.Transform analyzers over a float64 [batch, F] matrix, per column.

    One analyzer per statistic for all features (reduce_instance_dims=False)
    keeps the analysis graph small whatever the number of features.

    `exponents` (one int per column) scale the values by 2**k before mean
    and variance, exactly; "mean" and "var" are of the scaled values, and
    so are "center" and "centered_mean" (mean = center + centered_mean).
    `centers` (one float per column, e.g. a sample median) are subtracted
    from the scaled values and added back to the mean: tf.reduce_sum of
    values near 1e12 loses ~1e-3 of the mean to rounding, which the variance
    of a spread-1 feature then inherits; centered values keep float64's
    accuracy whatever the offset.
    """
    width = x.shape[1]
    exponents = np.zeros(width, np.int64) if exponents is None else np.asarray(exponents, np.int64)
    centers = np.zeros(width) if centers is None else np.asarray(centers, np.float64)
    present = tf.logical_not(tf.math.is_nan(x))
    center = tf.constant(np.ldexp(centers, exponents), tf.float64)
    centered = exact_float.ldexp(x, exponents) - center
    overflow = tf.logical_and(tf.math.is_finite(x), tf.logical_not(tf.math.is_finite(centered * centered)))
    key = exact_float.order_key(x)
    centered_mean = tft.mean(centered, reduce_instance_dims=False)  # skips non-finite values, as tft.var
    return {
        "count": tft.sum(tf.cast(present, tf.int64), reduce_instance_dims=False),
        "missing": tft.sum(tf.cast(tf.logical_not(present), tf.int64), reduce_instance_dims=False),
        "mean": centered_mean + center,
        "var": tft.var(centered, reduce_instance_dims=False),
        "min": exact_float.from_order_key(tft.min(tf.where(present, key, _KEY_ABOVE_ALL), reduce_instance_dims=False)),
        "max": exact_float.from_order_key(tft.max(tf.where(present, key, _KEY_BELOW_ALL), reduce_instance_dims=False)),
        "exponent": tf.constant(exponents.astype(np.float64)),
        "overflow": tft.sum(tf.cast(overflow, tf.int64), reduce_instance_dims=False),
        # Not in FIELDS: for normalizing, x - mean is taken as (x - center) -
        # centered_mean, which keeps digits that mean, rounded near a large
        # offset, has lost.
        "center": center,
        "centered_mean": centered_mean,
    }


def stack_features(inputs: dict, features) -> tf.Tensor:
    """The features as one float64 [batch, F] matrix, in `features` order."""
    return tf.stack([tf.cast(inputs[name], tf.float64) for name in features], axis=1)


def encode_statistics(stats: dict, batch_size: tf.Tensor) -> tf.Tensor:
    """The [8, F] statistics, float64 bit-cast to int64, tiled to [batch, 8, F]."""
    matrix = tf.stack([tf.cast(stats[f], tf.float64) for f in FIELDS])
    return tf.tile(tf.bitcast(matrix, tf.int64)[tf.newaxis], [batch_size, 1, 1])


def statistics_outputs(inputs: dict, features, centers=None, stats=None, exponents=None) -> dict:
    """The preprocessing_fn output carrying the statistics of `features`.

    `stats` are the analyzers' results when the caller already has them.
    """
    x = stack_features(inputs, features)
    stats = stats if stats is not None else analyze_features(x, centers, exponents)
    return {STATS_KEY: encode_statistics(stats, tf.shape(x)[0])}


def make_statistics_fn(features, centers=None, exponents=None):
    """A preprocessing_fn that only computes statistics."""
    features = tuple(features)
    centers = None if centers is None else tuple(centers)
    exponents = None if exponents is None else tuple(exponents)

    def preprocessing_fn(inputs):
        return statistics_outputs(inputs, features, centers, exponents=exponents)

    return preprocessing_fn


class AnalyzeStatistics(beam.PTransform):
    """Record batches -> transform_fn written to `transform_dir` (analysis only)."""

    def __init__(self, features, tensor_config, transform_dir, centers=None, exponents=None):
        super().__init__()
        self._features = tuple(features)
        self._centers = centers
        self._exponents = exponents
        self._tensor_config = tensor_config
        self._transform_dir = transform_dir

    def expand(self, batches):
        transform_fn = (batches, self._tensor_config) | "Analyze" >> tft_beam.AnalyzeDataset(
            make_statistics_fn(self._features, self._centers, self._exponents)
        )
        return transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._transform_dir)


def load_transform_graph(transform_dir: str):
    """The transform_fn SavedModel; called with a dict of float64 [batch] tensors."""
    return tf.saved_model.load(f"{transform_dir}/transform_fn")


def read_statistics(transform_dir: str, features, numeric=None) -> dict:
    """Decodes the statistics embedded in a transform graph.

    `numeric` lists every raw input of the graph (defaults to `features`).
    Returns {"num_examples": N, "features": {name: {count, missing, mean, var,
    std, min, max}}} with None where a feature has no present value (and
    var None where it exceeds float64, i.e. std > 1.3e154). Raises
    UserError for a feature whose scaled values overflowed.
    """
    graph = load_transform_graph(transform_dir)
    row = {name: tf.constant([np.nan], tf.float64) for name in (numeric or features)}
    outputs = graph.transform_fn(row)
    matrix = outputs[STATS_KEY].numpy()[0].view(np.float64)
    result, num_examples = {}, 0
    for column, name in enumerate(features):
        stats = dict(zip(FIELDS, (float(v) for v in matrix[:, column])))
        if stats["overflow"]:
            raise UserError(
                f"feature {name!r}: {int(stats['overflow'])} values are too far from the first rows' "
                f"scale (up to {stats['max']:.3g}) for float64 statistics"
            )
        count, missing = int(stats["count"]), int(stats["missing"])
        num_examples = count + missing
        result[name] = {"count": count, "missing": missing, **_unscaled(stats, count)}
    return {"num_examples": num_examples, "features": result}


def _unscaled(stats: dict, count: int) -> dict:
    """mean/var/std/min/max of the raw values, from the scaled analyzers."""
    if not count:
        return dict(mean=None, var=None, std=None, min=None, max=None)
    k = -int(stats["exponent"])
    scaled_var = stats["var"] if stats["var"] > 0 else 0.0
    with np.errstate(over="ignore"):
        var = float(np.ldexp(scaled_var, 2 * k))
    return dict(
        mean=float(np.ldexp(stats["mean"], k)),
        var=var if math.isfinite(var) else None,  # beyond float64 only when std > 1.3e154
        std=float(np.ldexp(math.sqrt(scaled_var), k)),
        min=stats["min"],
        max=stats["max"],
    )
