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
`tft.min`/`tft.max` propagate NaN, so missing values are replaced by +inf/-inf
before they reach them. A feature with no present value reports count 0 and
null mean/var/std/min/max.

A `preprocessing_fn` cannot emit float64 features, so each feature's six
analyzer results are bit-cast to int64 and emitted as one [batch, 6, F] output
named `STATS_KEY`. `read_statistics` runs the saved transform graph on
one row and bit-casts them back: statistics.json and the constants inside the
transform graph are the same numbers.
"""

import math

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

STATS_KEY = "__statistics__"
FIELDS = ("count", "missing", "mean", "var", "min", "max")


def analyze_features(x: tf.Tensor, centers=None) -> dict:
    """tf.Transform analyzers over a float64 [batch, F] matrix, per column.

    One analyzer per statistic for all features (reduce_instance_dims=False)
    keeps the analysis graph small whatever the number of features.

    `centers` (one float per column, e.g. a sample median) are subtracted
    before mean and variance and added back to the mean: tf.reduce_sum of
    values near 1e12 loses ~1e-3 of the mean to rounding, which the variance
    of a spread-1 feature then inherits; centered values keep float64's
    accuracy whatever the offset.
    """
    present = tf.logical_not(tf.math.is_nan(x))
    inf = tf.constant(np.inf, tf.float64)
    center = tf.constant(np.zeros(x.shape[1]) if centers is None else np.asarray(centers, np.float64), tf.float64)
    centered = x - center
    return {
        "count": tft.sum(tf.cast(present, tf.int64), reduce_instance_dims=False),
        "missing": tft.sum(tf.cast(tf.logical_not(present), tf.int64), reduce_instance_dims=False),
        # tft.mean/var skip non-finite values element-wise.
        "mean": tft.mean(centered, reduce_instance_dims=False) + center,
        "var": tft.var(centered, reduce_instance_dims=False),
        "min": tft.min(tf.where(present, x, inf), reduce_instance_dims=False),
        "max": tft.max(tf.where(present, x, -inf), reduce_instance_dims=False),
    }


def stack_features(inputs: dict, features) -> tf.Tensor:
    """The features as one float64 [batch, F] matrix, in `features` order."""
    return tf.stack([tf.cast(inputs[name], tf.float64) for name in features], axis=1)


def encode_statistics(stats: dict, batch_size: tf.Tensor) -> tf.Tensor:
    """The [6, F] statistics, float64 bit-cast to int64, tiled to [batch, 6, F]."""
    matrix = tf.stack([tf.cast(stats[f], tf.float64) for f in FIELDS])
    return tf.tile(tf.bitcast(matrix, tf.int64)[tf.newaxis], [batch_size, 1, 1])


def statistics_outputs(inputs: dict, features, centers=None, stats=None) -> dict:
    """The preprocessing_fn output carrying the statistics of `features`.

    `stats` are the analyzers' results when the caller already has them.
    """
    x = stack_features(inputs, features)
    stats = stats if stats is not None else analyze_features(x, centers)
    return {STATS_KEY: encode_statistics(stats, tf.shape(x)[0])}


def make_statistics_fn(features, centers=None):
    """A preprocessing_fn that only computes statistics."""
    features = tuple(features)
    centers = None if centers is None else tuple(centers)

    def preprocessing_fn(inputs):
        return statistics_outputs(inputs, features, centers)

    return preprocessing_fn


class AnalyzeStatistics(beam.PTransform):
    """Record batches -> transform_fn written to `transform_dir` (analysis only)."""

    def __init__(self, features, tensor_config, transform_dir, centers=None):
        super().__init__()
        self._features = tuple(features)
        self._centers = centers
        self._tensor_config = tensor_config
        self._transform_dir = transform_dir

    def expand(self, batches):
        transform_fn = (batches, self._tensor_config) | "Analyze" >> tft_beam.AnalyzeDataset(
            make_statistics_fn(self._features, self._centers)
        )
        return transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._transform_dir)


def load_transform_graph(transform_dir: str):
    """The transform_fn SavedModel; called with a dict of float64 [batch] tensors."""
    return tf.saved_model.load(f"{transform_dir}/transform_fn")


def read_statistics(transform_dir: str, features, numeric=None) -> dict:
    """Decodes the statistics embedded in a transform graph.

    `numeric` lists every raw input of the graph (defaults to `features`).
    Returns {"num_examples": N, "features": {name: {count, missing, mean, var,
    std, min, max}}} with None where a feature has no present value.
    """
    graph = load_transform_graph(transform_dir)
    row = {name: tf.constant([np.nan], tf.float64) for name in (numeric or features)}
    outputs = graph.transform_fn(row)
    matrix = outputs[STATS_KEY].numpy()[0].view(np.float64)
    result, num_examples = {}, 0
    for column, name in enumerate(features):
        stats = dict(zip(FIELDS, (float(v) for v in matrix[:, column])))
        count, missing = int(stats["count"]), int(stats["missing"])
        num_examples = count + missing
        entry = {"count": count, "missing": missing}
        if count:
            var = stats["var"] if stats["var"] > 0 else 0.0
            entry.update(mean=stats["mean"], var=var, std=math.sqrt(var), min=stats["min"], max=stats["max"])
        else:
            entry.update(mean=None, var=None, std=None, min=None, max=None)
        result[name] = entry
    return {"num_examples": num_examples, "features": result}
