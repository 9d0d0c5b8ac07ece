"""Transform: full-dataset normalization as a tf.Transform graph.

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
The label, if any, passes through as float32 under its raw name.
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

from normpipe.components import exact_float, statistics
from normpipe.components.kernels import OUTPUT_LIMIT, scale_clip_float32

METHODS = ("zscore", "minmax")
SUFFIX = {"zscore": "_z", "minmax": "_01"}
METADATA_FILE = "normpipe_transform.json"


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
      centers: per-feature centering constants for accurate analyzers.
      exponents: per-feature power-of-two scales (see exact_float.py).
    """

    features: Tuple[str, ...]
    method: str = "zscore"
    label: Optional[str] = None
    centers: Optional[Tuple[float, ...]] = None
    exponents: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        if self.method not in METHODS + ("both",):
            raise ValueError(f"method must be one of zscore, minmax, both. Received: {self.method!r}")
        if not self.features:
            raise ValueError("features must not be empty. Received: ()")
        if self.centers is not None and len(self.centers) != len(self.features):
            raise ValueError(f"centers must have one value per feature. Received: {len(self.centers)} centers")
        if self.exponents is not None and len(self.exponents) != len(self.features):
            raise ValueError(f"exponents must have one value per feature. Received: {len(self.exponents)} exponents")

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


def normalize(x, stats, method, exponents=None):
    """float64 [batch, F] raw values -> float32 normalized values.

    `stats` are `statistics.analyze_features` results for the same
    `exponents`: mean and var of x * 2**k, min and max of x. The deviation
    x - mean is computed as (x - center) - centered_mean: the mean itself,
    rounded to float64 near an offset of 1e12, is only good to ~1e-4, which
    a spread-1 feature would show in its z-scores.
    """
    exponents = np.zeros(x.shape[1], np.int64) if exponents is None else exponents
    centered_mean = tf.where(stats["count"] > 0, stats["centered_mean"], tf.zeros_like(stats["centered_mean"]))
    deviation = (exact_float.ldexp(x, exponents) - stats["center"]) - centered_mean
    deviation = tf.where(tf.math.is_nan(x), tf.constant(0.0, tf.float64), deviation)  # imputed with the mean
    if method == "zscore":
        return scale_clip_float32(deviation, _inverse(tf.sqrt(tf.maximum(stats["var"], 0.0))))
    low = exact_float.ldexp(stats["min"][tf.newaxis, :], exponents)[0]
    high = exact_float.ldexp(stats["max"][tf.newaxis, :], exponents)[0]
    return scale_clip_float32(deviation + ((stats["center"] - low) + centered_mean), _inverse(high - low))


def make_preprocessing_fn(options: TransformOptions):
    """The tf.Transform preprocessing_fn: normalized features + statistics."""

    def preprocessing_fn(inputs):
        x = statistics.stack_features(inputs, options.features)
        stats = statistics.analyze_features(x, options.centers, options.exponents)
        outputs = statistics.statistics_outputs(inputs, options.features, stats=stats)
        for method in options.methods:
            normalized = normalize(x, stats, method, options.exponents)
            outputs[matrix_key(method)] = normalized
            # One Unpack rather than a slice per feature: fewer ops per request.
            outputs.update(zip(options.output_names(method), tf.unstack(normalized, axis=1)))
        if options.label:
            outputs[options.label] = tf.cast(inputs[options.label], tf.float32)
        return outputs

    return preprocessing_fn


class _EncodeExamples(beam.DoFn):
    """Transformed record batches -> serialized tf.train.Examples.

    The statistics and matrix columns are dropped: they carry float64
    analyzer results out of the graph and serve a model, not a dataset.
    """

    def setup(self):
        from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel

        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, element):
        batch, _ = element
        keep = [i for i, name in enumerate(batch.schema.names) if not is_internal(name)]
        batch = pa.RecordBatch.from_arrays([batch.column(i) for i in keep], [batch.schema.names[i] for i in keep])
        yield from self._encoder.encode(batch)


class AnalyzeAndTransform(beam.PTransform):
    """Record batches -> transform_fn in `transform_dir` and, optionally,
    gzip TFRecords of transformed tf.train.Examples under `examples_prefix`."""

    def __init__(self, options: TransformOptions, tensor_config, transform_dir, examples_prefix=None):
        super().__init__()
        self._options = options
        self._tensor_config = tensor_config
        self._transform_dir = transform_dir
        self._examples_prefix = examples_prefix

    def expand(self, batches):
        dataset = (batches, self._tensor_config)
        fn = make_preprocessing_fn(self._options)
        if self._examples_prefix is None:
            transform_fn = dataset | "Analyze" >> tft_beam.AnalyzeDataset(fn)
        else:
            (transformed, _), transform_fn = dataset | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                fn, output_record_batches=True
            )
            _ = (
                transformed
                | "EncodeExamples" >> beam.ParDo(_EncodeExamples())
                | "WriteExamples" >> beam.io.WriteToTFRecord(
                    self._examples_prefix, file_name_suffix=".tfrecord.gz"
                )
            )
        return transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._transform_dir)


def write_metadata(transform_dir: str, options: TransformOptions, numeric, renamed=None) -> None:
    """Records what the graph expects and emits, beside transform_fn/.

    `renamed` ({input column name: TensorFlow-safe name}, see column_names.py)
    is kept so that an export can map the input's own names.

    tf.Transform's own raw metadata cannot describe float64 inputs, so the raw
    input names (all float64, shape [batch]) are kept here. The statistics
    and matrix outputs are removed from transformed_metadata: they are not in
    the materialized examples, and a TFX Trainer parses those with
    `TFTransformOutput.transformed_feature_spec()`.
    """
    from tensorflow_transform.tf_metadata import metadata_io  # pylint: disable=import-outside-toplevel
    from tensorflow_transform.tf_metadata.dataset_metadata import DatasetMetadata  # pylint: disable=import-outside-toplevel

    metadata_dir = os.path.join(transform_dir, "transformed_metadata")
    schema = metadata_io.read_metadata(metadata_dir).schema
    kept = [f for f in schema.feature if not is_internal(f.name)]
    del schema.feature[:]
    schema.feature.extend(kept)
    metadata_io.write_metadata(DatasetMetadata(schema), metadata_dir)
    document = {
        "raw_inputs": list(numeric),
        "raw_dtype": "float64",
        "features": list(options.features),
        "label": options.label,
        "methods": list(options.methods),
        "outputs": {m: list(options.output_names(m)) for m in options.methods},
        "matrices": {m: matrix_key(m) for m in options.methods},
        "output_limit": OUTPUT_LIMIT,
        "statistics_key": statistics.STATS_KEY,
        "renamed": dict(renamed or {}),
    }
    with open(os.path.join(transform_dir, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)


def read_metadata(transform_dir: str) -> dict:
    with open(os.path.join(transform_dir, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)


class TransformGraph:
    """The saved transform graph, applied eagerly to float64 numpy columns."""

    def __init__(self, transform_dir: str):
        self.metadata = read_metadata(transform_dir)
        self._graph = statistics.load_transform_graph(transform_dir)

    def __call__(self, columns: dict) -> dict:
        """columns: {raw name: float64 [n]} -> {output name: float32 [n]}."""
        inputs = {n: tf.constant(np.asarray(columns[n], np.float64)) for n in self.metadata["raw_inputs"]}
        outputs = self._graph.transform_fn(inputs)
        return {k: v.numpy() for k, v in outputs.items() if not is_internal(k)}
