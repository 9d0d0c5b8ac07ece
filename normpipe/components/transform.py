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
The label, if any, passes through as float32 under its raw name (missing as
NaN). Raw inputs are what tf.Transform passes, from normpipe's readers or
from TFX (see statistics.as_column); other raw inputs are not passed through.
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

from normpipe.components import labels, statistics
from normpipe.core import exact_float
from normpipe.io import atomic
from normpipe.io.column_names import MATRIX_INPUT
from normpipe.core.kernels import OUTPUT_LIMIT, scale_clip_float32

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
      centers: per-feature centering constants for accurate analyzers
        (None: the midpoint of each feature's min and max, from a first
        analysis pass).
      exponents: per-feature power-of-two scales (see exact_float.py).
      matrix_outputs: also emit each method's features as one matrix
        (`matrix_key`), which normpipe's exports read; such outputs are not
        features, so a TFX pipeline, which materializes every output, goes
        without them.
    """

    features: Tuple[str, ...]
    method: str = "zscore"
    label: Optional[str] = None
    centers: Optional[Tuple[float, ...]] = None
    exponents: Optional[Tuple[int, ...]] = None
    matrix_outputs: bool = True

    def __post_init__(self):
        if self.method not in METHODS + ("both",):
            raise ValueError(f"method must be one of zscore, minmax, both. Received: {self.method!r}")
        if not self.features:
            raise ValueError("features must not be empty. Received: ()")
        if self.centers is not None and len(self.centers) != len(self.features):
            raise ValueError(f"centers must have one value per feature. Received: {len(self.centers)} centers")
        if self.exponents is not None and len(self.exponents) != len(self.features):
            raise ValueError(f"exponents must have one value per feature. Received: {len(self.exponents)} exponents")
        produced = [n for m in self.methods for n in self.output_names(m)]
        if self.label and self.label in set(produced) | set(self.features):
            raise ValueError(f"label must not be a feature or a normalized output name. Received: {self.label!r}")

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


def graph_config(options: TransformOptions) -> dict:
    """What the transform graph records about itself (see statistics.py)."""
    return statistics.graph_config(
        options.features, options.exponents, label=options.label, methods=list(options.methods),
        outputs={m: list(options.output_names(m)) for m in options.methods},
        matrices={m: matrix_key(m) for m in options.methods} if options.matrix_outputs else {},
        output_limit=OUTPUT_LIMIT,
    )


def make_preprocessing_fn(options: TransformOptions):
    """The tf.Transform preprocessing_fn: the normalized features (and the
    label), with the statistics kept in the graph (see statistics.py)."""

    def preprocessing_fn(inputs):
        x = statistics.stack_features(inputs, options.features)
        stats = statistics.analyze_features(x, options.centers, options.exponents)
        computed = [normalize(x, stats, method, options.exponents) for method in options.methods]
        if options.label:
            computed.append(labels.label_output(inputs[options.label], options.label))
        # every output is computed from these, so they keep the statistics in the graph
        computed = statistics.depend_on_graph_constants(computed, stats, graph_config(options))
        outputs = {options.label: computed.pop()} if options.label else {}
        for method, normalized in zip(options.methods, computed):
            if options.matrix_outputs:
                outputs[matrix_key(method)] = normalized
            # One Unpack rather than a slice per feature: fewer ops per request.
            outputs.update(zip(options.output_names(method), tf.unstack(normalized, axis=1)))
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


SAMPLE_FILE = "normpipe_sample.json"


def _write_sample(outputs, rows, path):
    """JSON of the sample's raw rows and the Beam run's transformed values."""
    (batch,) = outputs  # one record batch in, one out, rows in order
    if batch.num_rows != len(rows):
        raise AssertionError(f"sample: {batch.num_rows} transformed rows for {len(rows)} raw rows")
    values = {name: batch.column(i).flatten().to_numpy(zero_copy_only=False).astype(np.float64).tolist()
              for i, name in enumerate(batch.schema.names) if not is_internal(name)}
    document = {"rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows], "transformed": values}
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(document))


class AnalyzeAndTransform(beam.PTransform):
    """Record batches -> transform_fn in `transform_dir` and, optionally,
    gzip TFRecords of transformed tf.train.Examples under `examples_prefix`.

    `sample` (a few raw rows, as ingest.to_feature_matrix gives them to
    tf.Transform) is transformed by
    the same Beam run and written to `sample_path` (SAMPLE_FILE) with its
    raw feature values: what the pipeline computed for those rows, which
    `normpipe verify` compares the served graph with.
    """

    def __init__(self, options: TransformOptions, tensor_config, transform_dir, examples_prefix=None,
                 sample=None, sample_path=None):
        super().__init__()
        self._options = options
        self._tensor_config = tensor_config
        self._transform_dir = transform_dir
        self._examples_prefix = examples_prefix
        self._sample, self._sample_path = sample, sample_path

    def _transform_sample(self, pipeline, transform_fn):
        matrix = self._sample.column(self._sample.schema.names.index(MATRIX_INPUT))
        rows = matrix.flatten().to_numpy(zero_copy_only=False).reshape(self._sample.num_rows, -1)
        sample = pipeline | "SampleRows" >> beam.Create([self._sample])
        (transformed, _) = ((sample, self._tensor_config), transform_fn) | "TransformSample" >> (
            tft_beam.TransformDataset(output_record_batches=True))
        _ = (transformed | "SampleBatches" >> beam.Map(lambda pair: pair[0])
             | "CollectSample" >> beam.combiners.ToList()
             | "WriteSample" >> beam.Map(_write_sample, rows, self._sample_path))

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
        if self._sample is not None:
            self._transform_sample(batches.pipeline, transform_fn)
        return transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self._transform_dir)


FLOAT64_SPEC = {"dtype": "float64", "shape": [None], "sparse": False}


def write_metadata(transform_dir: str, options: TransformOptions, numeric, renamed=None, int64_columns=(),
                   string_label=False) -> None:
    """Records what the graph expects and emits, beside transform_fn/.

    `renamed` ({input column name: TensorFlow-safe name}, see column_names.py)
    is kept so that an export can map the input's own names; `int64_columns`
    are the raw columns a tf.train.Example carries as int64_list (integer
    columns, as TFX's CsvExampleGen writes them), the others float_list.

    The graph's raw inputs are recorded in normpipe_transform.json: the
    features as one float64 [batch, F] matrix (`MATRIX_INPUT`, its spec
    listing the columns in order) and the label as float64 [batch]; the raw data as tf.train.Examples is described
    by tf.Transform's raw metadata (`metadata/`, what
    `TFTransformOutput.raw_feature_spec()` reads): VarLen int64 or float
    features, a missing value being an absent one. The matrix outputs are
    removed from transformed_metadata: they are not in the materialized
    examples, and a TFX Trainer parses those with
    `TFTransformOutput.transformed_feature_spec()`.
    """
    from tensorflow_transform.tf_metadata import metadata_io, schema_utils  # pylint: disable=import-outside-toplevel
    from tensorflow_transform.tf_metadata.dataset_metadata import DatasetMetadata  # pylint: disable=import-outside-toplevel

    example_types = {name: "int64" if name in set(int64_columns) else "float" for name in numeric}
    raw_spec = {name: tf.io.VarLenFeature(tf.int64 if kind == "int64" else tf.float32)
                for name, kind in example_types.items()}
    metadata_io.write_metadata(DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec)),
                               os.path.join(transform_dir, "metadata"))

    metadata_dir = os.path.join(transform_dir, "transformed_metadata")
    schema = metadata_io.read_metadata(metadata_dir).schema
    kept = [f for f in schema.feature if not is_internal(f.name)]
    del schema.feature[:]
    schema.feature.extend(kept)
    metadata_io.write_metadata(DatasetMetadata(schema), metadata_dir)
    specs = {MATRIX_INPUT: {**FLOAT64_SPEC, "shape": [None, len(options.features)],
                            "columns": list(options.features)}}
    if options.label:  # a string label: its text, whose vocabulary gives the class names
        specs[options.label] = {**FLOAT64_SPEC, "dtype": "string"} if string_label else FLOAT64_SPEC
    document = {
        **graph_config(options),
        "raw_inputs": list(specs),
        "raw_dtype": "float64",
        "raw_specs": specs,
        "example_types": example_types,
        "renamed": dict(renamed or {}),
        "classes": labels.read_classes(transform_dir) if string_label else None,
    }
    with tf.io.gfile.GFile(os.path.join(transform_dir, METADATA_FILE), "w") as f:
        json.dump(document, f, indent=2)


def raw_input_specs(transform_fn) -> dict:
    """{raw input name: {"dtype", "shape", "sparse"}} of a loaded transform_fn."""
    args, kwargs = transform_fn.structured_input_signature
    signature = kwargs or (args[0] if args else {})
    specs = {}
    for name, spec in signature.items():
        sparse = isinstance(spec, tf.SparseTensorSpec)
        specs[name] = {"dtype": spec.dtype.name, "shape": spec.shape.as_list(), "sparse": sparse}
    return specs


def read_metadata(transform_dir: str, graph=None) -> dict:
    """What the transform graph takes and emits.

    From `normpipe_transform.json` for a transform output that normpipe
    wrote; for one that TFX's Transform component wrote with
    `normpipe.tfx.preprocessing_fn`, from the description saved inside the
    graph and the graph's input signature (`graph`: the loaded transform_fn
    SavedModel, when the caller has it).
    """
    path = os.path.join(transform_dir, METADATA_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            document = json.load(f)
        document.setdefault("raw_specs", {name: FLOAT64_SPEC for name in document["raw_inputs"]})
        return document
    transform_fn = (graph or statistics.load_transform_graph(transform_dir)).transform_fn
    specs = raw_input_specs(transform_fn)
    return {**statistics.read_graph_config(transform_fn, transform_dir), "raw_inputs": list(specs),
            "raw_specs": specs, "raw_dtype": None, "renamed": {}, "classes": labels.read_classes(transform_dir)}


def graph_inputs(metadata: dict) -> list:
    """The graph inputs that the features feed: the feature matrix, or
    (a TFX graph) the features' own inputs."""
    specs, features = metadata["raw_specs"], set(metadata["features"])
    return [n for n in metadata["raw_inputs"] if n in features or "columns" in specs[n]]


def adapt_inputs(columns: dict, raw_specs: dict, names) -> dict:
    """float64 [batch] tensors (NaN = missing) -> the graph's own raw inputs.

    For each of `names`: a matrix input (a spec with "columns") stacks
    those columns; a float64 [batch] input is taken as it is; a dense one
    ([batch] or [batch, 1], int or float, as TFX gives fixed-length features)
    cast to its type, a missing integer as 0; a sparse one (a VarLen feature)
    holds the present values only. A name absent from `columns` (a label or
    a string column the outputs do not read) gets missing values or "".
    """
    batch = tf.shape(next(iter(columns.values())))[0] if columns else 0
    adapted = {}
    for name in names:
        spec = raw_specs[name]
        dtype = tf.as_dtype(spec["dtype"])
        if "columns" in spec:
            missing = tf.fill([batch], tf.constant(np.nan, tf.float64))
            adapted[name] = tf.stack([columns.get(c, missing) for c in spec["columns"]], axis=1)
            continue
        if dtype == tf.string:
            given = columns.get(name)
            value = given if given is not None and given.dtype == tf.string else tf.fill([batch], "")
        else:
            value = columns[name] if name in columns else tf.fill([batch], tf.constant(np.nan, tf.float64))
        if spec["sparse"]:
            present = tf.where(tf.logical_not(tf.math.is_nan(value)))
            indices = tf.concat([present, tf.zeros_like(present)], axis=1)
            values = tf.cast(tf.gather_nd(value, present), dtype)
            adapted[name] = tf.SparseTensor(indices, values, tf.stack([tf.cast(batch, tf.int64), 1]))
            continue
        if dtype.is_integer:
            value = tf.where(tf.math.is_nan(value), tf.zeros_like(value), value)
        if dtype != value.dtype:
            value = tf.cast(value, dtype)
        adapted[name] = value[:, tf.newaxis] if len(spec["shape"]) == 2 else value
    return adapted


class TransformGraph:
    """The saved transform graph, applied eagerly to float64 numpy columns.

    A transform output on a URI whose publishing copy did not finish
    (atomic.py) is refused.
    """

    def __init__(self, transform_dir: str):
        atomic.check_complete(transform_dir, "transform output")
        self._graph = statistics.load_transform_graph(transform_dir)
        self.metadata = read_metadata(transform_dir, self._graph)
        specs = self.metadata["raw_specs"].values()
        self._read = set(self.metadata["raw_specs"]) | {c for spec in specs for c in spec.get("columns", ())}

    def __call__(self, columns: dict) -> dict:
        """columns: {raw name: float64 [n]} -> {output name: float32 [n]}."""
        tensors = {n: tf.constant(v if np.asarray(v).dtype.kind in "OSU" else np.asarray(v, np.float64))
                   for n, v in columns.items() if n in self._read}
        inputs = adapt_inputs(tensors, self.metadata["raw_specs"], self.metadata["raw_inputs"])
        outputs = self._graph.transform_fn(inputs)
        return {k: v.numpy() for k, v in outputs.items() if not is_internal(k)}
