"""Transform: the Beam run of full-dataset normalization and the files it
leaves, and the saved graph applied again.

The graph itself (what is computed, the math, TransformOptions and the
preprocessing_fn) is in preprocessing.py. Here:

  AnalyzeAndTransform  Beam: record batches -> transform_fn/, optionally
                       the transformed tf.train.Examples and a sample
  write_metadata       what normpipe records beside transform_fn/ (raw
                       metadata, normpipe_transform.json)
  read_metadata        what a transform graph takes and emits, for one that
                       normpipe or TFX's Transform component wrote
  adapt_inputs, TransformGraph
                       float64 columns given to a saved graph in its own
                       input types
"""

import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

from normpipe.components import categories, labels, statistics
from normpipe.components.preprocessing import TransformOptions, graph_config, is_internal, make_preprocessing_fn
from normpipe.io import atomic
from normpipe.io.column_names import MATRIX_INPUT

METADATA_FILE = "normpipe_transform.json"


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


def _write_sample(outputs, rows, path, texts=None):
    """JSON of the sample's raw rows (and categorical texts) and the Beam run's transformed values."""
    (batch,) = outputs  # one record batch in, one out, rows in order
    if batch.num_rows != len(rows):
        raise AssertionError(f"sample: {batch.num_rows} transformed rows for {len(rows)} raw rows")
    values = {name: batch.column(i).flatten().to_numpy(zero_copy_only=False).astype(np.float64).tolist()
              for i, name in enumerate(batch.schema.names) if not is_internal(name)}
    document = {"rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows], "transformed": values,
                "categorical": texts or {}}
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
        texts = {name: [v.decode("utf-8", "replace") for v in
                        self._sample.column(self._sample.schema.names.index(name)).flatten().to_pylist()]
                 for name in self._options.categorical}
        sample = pipeline | "SampleRows" >> beam.Create([self._sample])
        (transformed, _) = ((sample, self._tensor_config), transform_fn) | "TransformSample" >> (
            tft_beam.TransformDataset(output_record_batches=True))
        _ = (transformed | "SampleBatches" >> beam.Map(lambda pair: pair[0])
             | "CollectSample" >> beam.combiners.ToList()
             | "WriteSample" >> beam.Map(_write_sample, rows, self._sample_path, texts))

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
                   string_label=False, codes=()) -> None:
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
    # a categorical column: an integer code as int64_list (float_list for another number), text as bytes_list
    example_types.update({name: ("int64" if name in set(int64_columns) else "float") if name in set(codes)
                          else "bytes" for name in options.categorical})
    tf_types = {"int64": tf.int64, "float": tf.float32, "bytes": tf.string}
    raw_spec = {name: tf.io.VarLenFeature(tf_types[kind]) for name, kind in example_types.items()}
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
    specs.update({name: {**FLOAT64_SPEC, "dtype": "string"} for name in options.categorical})
    document = {
        **graph_config(options),
        "raw_inputs": list(specs),
        "raw_dtype": "float64",
        "raw_specs": specs,
        "example_types": example_types,
        "renamed": dict(renamed or {}),
        "classes": labels.read_classes(transform_dir) if string_label else None,
        "category_sizes": categories.sizes(transform_dir, options.categorical, options.vocabulary.as_dict()),
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
        document.setdefault("raw_specs", dict.fromkeys(document["raw_inputs"], FLOAT64_SPEC))
        document.setdefault("categorical", [])
        document.setdefault("category_sizes", {})
        return document
    transform_fn = (graph or statistics.load_transform_graph(transform_dir)).transform_fn
    specs = raw_input_specs(transform_fn)
    config = statistics.read_graph_config(transform_fn, transform_dir)
    return {**config, "raw_inputs": list(specs), "raw_specs": specs, "raw_dtype": None, "renamed": {},
            "classes": labels.read_classes(transform_dir),
            "category_sizes": categories.sizes(transform_dir, config.get("categorical", ()),
                                               config.get("vocabulary") or {"oov_buckets": 1})}


def graph_inputs(metadata: dict) -> list:
    """The graph inputs that the features feed: the feature matrix, or
    (a TFX graph) the features' own inputs; then the categorical columns'."""
    specs, features = metadata["raw_specs"], set(metadata["features"])
    found = [n for n in metadata["raw_inputs"] if n in features or "columns" in specs[n]]
    return found + [n for n in metadata.get("categorical") or () if n not in found]


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
        if dtype.is_integer and name in columns and columns[name].dtype == tf.string:
            value = columns[name]  # an integer code given as its text ("" = missing)
            absent = tf.equal(value, "")
            value = tf.strings.to_number(tf.where(absent, "0", value), tf.int64)
            if spec["sparse"]:
                present = tf.where(tf.logical_not(absent))
                adapted[name] = tf.SparseTensor(tf.concat([present, tf.zeros_like(present)], axis=1),
                                                tf.cast(tf.gather_nd(value, present), dtype),
                                                tf.stack([tf.cast(batch, tf.int64), 1]))
            else:
                value = tf.cast(value, dtype)
                adapted[name] = value[:, tf.newaxis] if len(spec["shape"]) == 2 else value
            continue
        if dtype == tf.string:
            given = columns.get(name)
            if given is None or given.dtype != tf.string:  # a string column the outputs do not read: "", or absent
                adapted[name] = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.string), tf.stack([tf.cast(
                    batch, tf.int64), 1])) if spec["sparse"] else tf.fill([batch] + [1] * (len(spec["shape"]) - 1), "")
                continue
            value = given
        else:
            value = columns[name] if name in columns else tf.fill([batch], tf.constant(np.nan, tf.float64))
        if spec["sparse"]:
            absent = tf.equal(value, "") if dtype == tf.string else tf.math.is_nan(value)
            present = tf.where(tf.logical_not(absent))
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
