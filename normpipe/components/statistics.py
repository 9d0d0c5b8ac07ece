"""Full-dataset feature statistics inside the tf.Transform graph.

For each numeric feature x (float64, missing as NaN): count, missing, mean,
population variance (ddof=0), std, min and max, computed exactly and rounded
once by moments.ExactStatistics, the CombineFn of `normpipe stats`, run as
a tf.Transform analyzer (`tft.experimental.ptransform_analyzer`): the
statistics inside a transform graph are the bits of `normpipe stats` on the
same values, on any runner and partitioning (see moments.py and
docs/what-is-computed.md). A feature with no present value reports count 0
and null mean/var/std/min/max.

Inputs are what tf.Transform gives a preprocessing_fn. normpipe's readers
give one float64 [batch, F] matrix (`MATRIX_INPUT`, see ingest.py): the
size of the traced graph, and tf.Transform's work on it, then does not grow
with the number of features. From TFX come one input per feature: dense
[batch] or [batch, 1] tensors of any numeric type (int64 exact up to 2**53,
float32 widened exactly), or `tf.SparseTensor` for a VarLen feature (a row
without a value is missing).

The analyzer results stay in the saved transform graph as one named float64
[len(FIELDS), F] tensor (`STATISTICS_NODE`) beside a JSON description of the graph
(`CONFIG_NODE`), both tied to every output by control dependencies so that
tf.Transform keeps them; they are not outputs, so neither the materialized
examples nor a TFX transformed schema carry them. `read_statistics` reads
them from any transform output, one written by normpipe or by TFX's
Transform component (see graph_constants.py): statistics.json and the
constants inside the transform graph are the same numbers.
"""

import json

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from normpipe.components import moments
from normpipe.core import graph_constants
from normpipe.core.errors import UserError
from normpipe.io.column_names import MATRIX_INPUT

STATS_KEY = "__statistics__"
# 2: the exact statistics of moments.FIELDS (1: Chan et al.'s float64 moments)
GRAPH_VERSION = 2
STATISTICS_NODE = "normpipe_statistics"
CONFIG_NODE = "normpipe_config"
FIELDS = moments.FIELDS


def analyze_features(x: tf.Tensor) -> dict:
    """The exact statistics of a float64 [batch, F] matrix, per column.

    One tf.Transform analyzer for all features
    (`tft.experimental.ptransform_analyzer`) runs moments.ExactStatistics,
    the CombineFn of `normpipe stats`, over the analyzed batches; its
    FIELDS x F result becomes a constant of the graph. Returns {field:
    float64 [F]} for every name of FIELDS, and "matrix" (the whole
    constant). The statistics are of the raw values: the powers of two that
    normalize_matrix scales by change none of them.
    """
    width = x.shape[1]
    (matrix,) = tft.experimental.ptransform_analyzer(
        [x], _ExactStatisticsAnalyzer(width), output_dtypes=[tf.float64], output_shapes=[[len(FIELDS), width]],
        name="exact_statistics")
    stats = {name: matrix[i] for i, name in enumerate(FIELDS)}
    stats["matrix"] = matrix
    return stats


class _ExactStatisticsAnalyzer(beam.PTransform):
    """What tf.Transform runs over the analyzed batches of one [batch, F]
    input (each element a list holding that batch as a numpy array): the
    FIELDS x F statistics matrix, as one element."""

    def __init__(self, width: int):
        super().__init__()
        self._width = width

    def expand(self, batches):
        return (
            batches
            | "Columns" >> beam.Map(lambda batch: np.asarray(batch[0], np.float64).T)
            | "Combine" >> beam.CombineGlobally(moments.ExactStatistics(self._width))
        )


def as_column(value, name="feature") -> tf.Tensor:
    """One raw input as a float64 [batch] vector, missing as NaN.

    Takes what tf.Transform passes a preprocessing_fn: a dense [batch] or
    [batch, 1] tensor of any integer or float type, or a tf.SparseTensor of
    a VarLen feature, whose rows hold at most one value (a row without one
    is missing; a row with several is an error, not a silent choice).
    """
    if isinstance(value, tf.SparseTensor):
        batch = value.dense_shape[0]
        width = value.dense_shape[1] if value.shape.rank == 2 else tf.constant(1, tf.int64)
        check = tf.debugging.assert_less_equal(
            width, tf.constant(1, tf.int64), message=f"feature {name!r}: a row holds more than one value"
        )
        with tf.control_dependencies([check]):
            rows = value.indices[:, 0]
        values = tf.cast(value.values, tf.float64)
        return tf.tensor_scatter_nd_update(
            tf.fill(tf.reshape(batch, [1]), tf.constant(np.nan, tf.float64)), rows[:, tf.newaxis], values
        )
    if value.shape.rank == 2:
        if value.shape[1] != 1:
            raise ValueError(f"feature {name!r} must have one value per row. Received: shape {value.shape}")
        value = tf.squeeze(value, axis=1)
    elif value.shape.rank != 1:
        raise ValueError(f"feature {name!r} must be [batch] or [batch, 1]. Received: shape {value.shape}")
    if value.dtype == tf.float64:
        return value
    if not (value.dtype.is_integer or value.dtype.is_floating):
        raise ValueError(f"feature {name!r} must be numeric. Received: dtype {value.dtype.name}")
    return tf.cast(value, tf.float64)


def stack_features(inputs: dict, features) -> tf.Tensor:
    """The features as one float64 [batch, F] matrix, in `features` order:
    the `MATRIX_INPUT` itself when the inputs hold it, else one column per
    feature input."""
    if MATRIX_INPUT in inputs:
        x = inputs[MATRIX_INPUT]
        if x.dtype != tf.float64 or x.shape.rank != 2 or x.shape[1] != len(features):
            raise ValueError(f"{MATRIX_INPUT} must be float64 [batch, {len(features)}]. "
                             f"Received: {x.dtype.name} {x.shape}")
        return x
    return tf.stack([as_column(inputs[name], name) for name in features], axis=1)


def with_graph_constants(outputs: dict, stats: dict, config: dict) -> dict:
    """`outputs`, each made to depend on the named statistics and config.

    tf.Transform saves only what its outputs depend on; a control dependency
    keeps the two named tensors in the saved graph without making them
    outputs. Grappler folds them away when serving.
    """
    return dict(zip(outputs, depend_on_graph_constants(list(outputs.values()), stats, config)))


def depend_on_graph_constants(tensors, stats: dict, config: dict):
    """`tensors`, made to depend on the named statistics and config, like
    `with_graph_constants`; applied to the few tensors every output is
    computed from (the normalized matrices, the label), it keeps the graph
    the same size whatever the number of outputs.

    The two are named at the top of the graph whatever name scope the
    caller is in (`read_statistics` looks them up by name); a graph holds
    them once, so a second call in one preprocessing_fn is a ValueError.
    """
    graph = tf.compat.v1.get_default_graph()
    if _holds_op(graph, STATISTICS_NODE):
        raise ValueError("normpipe's statistics are built once per transform graph: normalize every feature in one "
                         f"call. Received: a second call (the graph already holds {STATISTICS_NODE!r})")
    with graph.name_scope(None):
        constants = [
            tf.identity(stats["matrix"], name=STATISTICS_NODE),
            tf.constant(json.dumps(config, sort_keys=True), name=CONFIG_NODE),
        ]
    with tf.control_dependencies(constants):
        return [tf.identity(t) for t in tensors]


def _holds_op(graph, name: str) -> bool:
    try:
        graph.get_operation_by_name(name)
    except KeyError:
        return False
    return True


def graph_config(features, exponents=None, **extra) -> dict:
    """What the saved graph records about itself (CONFIG_NODE)."""
    exponents = [0] * len(features) if exponents is None else [int(k) for k in exponents]
    return {"normpipe_graph": GRAPH_VERSION, "features": list(features), "exponents": exponents, **extra}


def make_statistics_fn(features, exponents=None):
    """A preprocessing_fn that only computes statistics (for AnalyzeDataset;
    its one output, a per-row count of present values, is never written)."""
    features = tuple(features)
    exponents = None if exponents is None else tuple(exponents)

    def preprocessing_fn(inputs):
        x = stack_features(inputs, features)
        stats = analyze_features(x)
        present = tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_nan(x)), tf.int64), axis=1)
        return with_graph_constants({STATS_KEY: present}, stats, graph_config(features, exponents))

    return preprocessing_fn


class AnalyzeStatistics(beam.PTransform):
    """Record batches -> transform_fn written to `transform_dir` (analysis only)."""

    def __init__(self, features, tensor_config, transform_dir, exponents=None):
        super().__init__()
        self._features = tuple(features)
        self._exponents = exponents
        self._tensor_config = tensor_config
        self._transform_dir = transform_dir

    def expand(self, batches):
        transform_fn = (batches, self._tensor_config) | "Analyze" >> tft_beam.AnalyzeDataset(
            make_statistics_fn(self._features, self._exponents)
        )
        return transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._transform_dir)


def load_transform_graph(transform_dir: str):
    """The transform_fn SavedModel; `.transform_fn` takes the raw inputs."""
    path = f"{transform_dir}/transform_fn"
    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise UserError(f"{path}: not a readable tf.Transform transform_fn ({exc})") from None


def read_graph_config(transform_fn, source="the transform graph") -> dict:
    """The JSON description that normpipe's preprocessing_fn saved in a
    loaded transform_fn."""
    value = graph_constants.read(transform_fn, [CONFIG_NODE], source)[CONFIG_NODE]
    return json.loads(value.decode("utf-8"))


def read_statistics(transform_dir: str) -> dict:
    """The float64 statistics inside a transform graph.

    Works on any transform output of normpipe's preprocessing_fn: one written
    by `normpipe stats`/`transform`, or the transform_graph of a TFX Transform
    component given `normpipe.tfx.preprocessing_fn`.

    Returns {"num_examples": N, "features": {name: {count, missing, mean, var,
    std, min, max}}}: population variance (ddof=0), over present values, None
    where a feature has no present value (and var None where it exceeds
    float64, i.e. std > 1.3e154). Raises UserError for a feature whose scaled
    values overflowed.
    """
    transform_fn = load_transform_graph(transform_dir).transform_fn
    found = graph_constants.read(transform_fn, [STATISTICS_NODE, CONFIG_NODE], transform_dir)
    config = json.loads(found[CONFIG_NODE].decode("utf-8"))
    if config.get("normpipe_graph") != GRAPH_VERSION:
        raise UserError(f"{transform_dir}: a transform graph of an earlier normpipe (its statistics are laid out "
                        "differently); run `normpipe transform` (or the Transform component) again")
    matrix = np.asarray(found[STATISTICS_NODE], np.float64)
    return moments.summarize(matrix, config["features"])
