"""Ingest: CSV, TFRecord or Parquet files to canonical Arrow record batches.

The canonical batch, what every later stage reads, holds the numeric columns
only (features and label, under their TensorFlow-safe names), each as
list<double> of length 1 per row, with a missing value (empty cell, NaN,
absent feature) as NaN. tf.Transform receives them reshaped by
`ToFeatureMatrix`: the features as one column of F-value lists (the graph's
float64 [batch, F] input `MATRIX_INPUT`) and the label as its own column,
described by `tensor_adapter_config`. One input for all features keeps the
traced graph, and tf.Transform's analysis of it (which compares every
input with every graph source), the same size at 5 or 5,000 features.

With bad_values="missing" the readers turn a bad value (non-numeric text or
an infinite value) into a missing one and emit a {column: count} dict on a
second output; `ReadRecordBatches` sums those with a CombineGlobally and
writes the total as JSON. The counts travel as data, not as Beam metrics, so
they are exact on every runner, retried bundles included.
"""

import json
from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa

from normpipe.io import csv_reader, parquet_reader, tfrecord_reader
from normpipe.io.column_names import MATRIX_INPUT
from normpipe.io.input_files import expand_input
from normpipe.io.input_spec import (
    TFRECORD_SUFFIXES,
    InputSpec,
    detect_format,
    inspect_csv,
    inspect_input,
    inspect_tfrecord,
)

__all__ = [
    "TFRECORD_SUFFIXES",
    "InputSpec",
    "ReadRecordBatches",
    "ToFeatureMatrix",
    "canonical_schema",
    "detect_format",
    "expand_input",
    "first_rows",
    "inspect_csv",
    "inspect_input",
    "inspect_tfrecord",
    "iter_columns",
    "iter_record_batches",
    "read_bad_value_counts",
    "tensor_adapter_config",
    "to_feature_matrix",
]


class RecordBatchCoder(beam.coders.Coder):
    """Arrow record batches as Arrow IPC streams, sized by `nbytes`.

    Beam samples the encoded size of elements as they pass between
    transforms. With its default (pickling) coder that means serializing a
    multi-megabyte record batch for each sample, up to a third of a worker's
    time on the statistics pass; `nbytes` is the same measure for free.
    """

    def encode(self, value):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, value.schema) as writer:
            writer.write_batch(value)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded):
        return pa.ipc.open_stream(encoded).read_next_batch()

    def estimate_size(self, value):
        return value.nbytes

    def is_deterministic(self):
        return False

    def to_type_hint(self):
        return pa.RecordBatch

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)


def canonical_schema(spec: InputSpec) -> pa.Schema:
    """The readers' record batches: list<double> per numeric column (and
    code), then list<binary> per text column."""
    return _double_lists(spec.read_as_numbers, spec.read_as_text)


def _matrix_schema(spec: InputSpec) -> pa.Schema:
    """The `to_feature_matrix` batches: the features' list column, the
    label's, then each category's text."""
    return _double_lists([MATRIX_INPUT] + ([spec.label] if spec.label and not spec.string_label else []),
                         list(spec.categorical) + _text_label(spec))


def _text_label(spec: InputSpec):
    return [spec.label] if spec.string_label else []


def code_text(values: np.ndarray) -> np.ndarray:
    """float64 codes -> their text as bytes: an integral value as its decimal
    digits (7.0 -> b"7", as an int64 column gives it), any other as Python's
    shortest repr (7.5 -> b"7.5"), missing (NaN) as b""."""
    text = np.empty(len(values), dtype=object)
    present = ~np.isnan(values)
    integral = present & (np.floor(values) == values) & (np.abs(values) < 2.0 ** 63)
    text[~present] = b""
    digits = pa.array(values[integral].astype(np.int64)).cast(pa.string()).cast(pa.binary())
    text[integral] = digits.to_numpy(zero_copy_only=False)
    other = present & ~integral
    text[other] = [repr(float(v)).encode() for v in values[other]]
    return text


def category_columns(batch: pa.RecordBatch, spec: InputSpec) -> dict:
    """{categorical column: its text, list<binary> of one value per row} of a
    canonical batch (codes written as `code_text`)."""
    position = {name: i for i, name in enumerate(batch.schema.names)}
    offsets = pa.array(np.arange(batch.num_rows + 1, dtype=np.int32))
    found = {}
    for name in spec.categorical:
        column = batch.column(position[name])
        if name in set(spec.codes):
            text = pa.array(code_text(column.flatten().to_numpy(zero_copy_only=False)), pa.binary())
            column = pa.ListArray.from_arrays(offsets, text)
        found[name] = column
    return found


def _double_lists(names, text=()) -> pa.Schema:
    """list<double> columns, then list<binary> ones (a string label)."""
    return pa.schema([pa.field(name, pa.list_(pa.float64())) for name in names]
                     + [pa.field(name, pa.list_(pa.binary())) for name in text])


def tensor_adapter_config(spec: InputSpec):
    """What tf.Transform reads from `to_feature_matrix` batches: one float64
    [batch, F] dense tensor `MATRIX_INPUT` and, with a label, one float64
    [batch] tensor under the label's name (a tfx-bsl TensorAdapterConfig;
    tfx-bsl, which imports TensorFlow, is imported here, not by the readers)."""
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
    from tfx_bsl.tfxio import tensor_adapter  # pylint: disable=import-outside-toplevel

    matrix = schema_pb2.TensorRepresentation()
    matrix.dense_tensor.column_name = MATRIX_INPUT
    matrix.dense_tensor.shape.dim.add().size = len(spec.features)
    reps = {MATRIX_INPUT: matrix}
    for name in list(spec.categorical) + ([spec.label] if spec.label else []):
        column = schema_pb2.TensorRepresentation()
        column.dense_tensor.column_name = name
        column.dense_tensor.shape.SetInParent()
        reps[name] = column
    return tensor_adapter.TensorAdapterConfig(_matrix_schema(spec), reps)


def to_feature_matrix(batch: pa.RecordBatch, spec: InputSpec) -> pa.RecordBatch:
    """A canonical record batch -> the batch `tensor_adapter_config` describes.

    The features' values are interleaved row by row (one copy, n x F
    float64) under one list column with F values per row.
    """
    position = {name: i for i, name in enumerate(batch.schema.names)}
    width = len(spec.features)
    values = np.empty((batch.num_rows, width), np.float64)
    for j, name in enumerate(spec.features):
        values[:, j] = batch.column(position[name]).flatten().to_numpy(zero_copy_only=False)
    offsets = pa.array(np.arange(0, batch.num_rows * width + 1, width, dtype=np.int32))
    arrays = [pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))]
    if spec.label and not spec.string_label:
        arrays.append(batch.column(position[spec.label]))
    arrays.extend(category_columns(batch, spec).values())
    if spec.string_label:
        arrays.append(batch.column(position[spec.label]))
    return pa.RecordBatch.from_arrays(arrays, schema=_matrix_schema(spec))


class ToFeatureMatrix(beam.PTransform):
    """Canonical record batches -> `to_feature_matrix` batches."""

    def __init__(self, spec: InputSpec):
        super().__init__()
        self._spec = spec

    def expand(self, batches):
        spec = self._spec
        return batches | "StackFeatures" >> beam.Map(to_feature_matrix, spec).with_output_types(pa.RecordBatch)


def csv_range_reader(spec: InputSpec) -> csv_reader.ReadCsvRange:
    """The CSV DoFn for `spec`; messages name columns as the header does."""
    labels = dict(zip(spec.columns, spec.original_columns))
    block_size = spec.block_size or csv_reader.block_size_for(len(spec.columns))
    return csv_reader.ReadCsvRange(spec.columns, spec.read_as_numbers, block_size, spec.bad_values, labels,
                                   strings=spec.read_as_text)


def parquet_row_group_reader(spec: InputSpec) -> parquet_reader.ReadParquetRowGroup:
    """The Parquet DoFn for `spec`: the file's own column names, read under the canonical ones."""
    return parquet_reader.ReadParquetRowGroup([spec.original_name(n) for n in spec.read_as_numbers],
                                              spec.read_as_numbers, spec.bad_values,
                                              text={n: spec.original_name(n) for n in spec.read_as_text})


def merge_counts(counts) -> dict:
    """Sums {column: count} dicts (associative: a CombineGlobally function)."""
    total = Counter()
    for item in counts:
        total.update(item)
    return dict(total)


def _write_counts(counts: dict, path: str) -> None:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    with FileSystems.create(path) as f:
        f.write(json.dumps(counts, sort_keys=True).encode("utf-8"))


def read_bad_value_counts(path: str) -> dict:
    """{column: bad values read} as written by ReadRecordBatches ({} if none)."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    if not FileSystems.exists(path):
        return {}
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


class ReadRecordBatches(beam.PTransform):
    """Reads the input files as canonical record batches, inside the pipeline.

    With `bad_values_path`, the per-column count of bad values read as
    missing is written there as one JSON object (see the module docstring).
    """

    def __init__(self, spec: InputSpec, split_size: int = csv_reader.DEFAULT_SPLIT_SIZE, bad_values_path=None):
        super().__init__()
        self._spec = spec
        self._split_size = split_size
        self._bad_values_path = bad_values_path

    def expand(self, pbegin):
        files = pbegin | "ListFiles" >> beam.Create(list(self._spec.files))
        tag = csv_reader.BAD_VALUES_TAG
        if self._spec.format == "csv":
            split_size = self._split_size
            outputs = (
                files
                | "PlanByteRanges" >> beam.FlatMap(lambda f: csv_reader.plan_ranges(f, split_size))
                | "SpreadRanges" >> beam.Reshuffle()
                | "ParseCsv" >> beam.ParDo(csv_range_reader(self._spec))
                .with_output_types(pa.RecordBatch).with_outputs(tag, main="batches")
            )
        elif self._spec.format == "parquet":
            outputs = (
                files
                | "PlanRowGroups" >> beam.FlatMap(parquet_reader.plan_row_groups)
                | "SpreadRowGroups" >> beam.Reshuffle()
                | "ReadRowGroups" >> beam.ParDo(parquet_row_group_reader(self._spec))
                .with_output_types(pa.RecordBatch).with_outputs(tag, main="batches")
            )
        else:
            outputs = (
                files
                | "ReadTFRecords" >> beam.FlatMap(tfrecord_reader.read_tfrecord_file)
                | "BatchExamples" >> beam.BatchElements(min_batch_size=1024, max_batch_size=65536)
                | "DecodeExamples" >> beam.ParDo(tfrecord_reader.DecodeExamples(self._spec))
                .with_output_types(pa.RecordBatch).with_outputs(tag, main="batches")
            )
        if self._bad_values_path:
            _ = (
                outputs[tag]
                | "SumBadValues" >> beam.CombineGlobally(merge_counts)
                | "WriteBadValueCounts" >> beam.Map(_write_counts, self._bad_values_path)
            )
        return outputs.batches


def iter_record_batches(spec: InputSpec, rows_per_batch: int = 65536):
    """Canonical record batches in file order, streamed in this process.

    The same readers as `ReadRecordBatches`, for stages that walk the data
    once outside a pipeline (the comparison); memory stays flat.
    """
    if spec.format in ("csv", "parquet"):
        # the pipeline's own split of each file (byte ranges, row groups), read in order
        if spec.format == "csv":
            reader, plan = csv_range_reader(spec), csv_reader.plan_ranges
        else:
            reader, plan = parquet_row_group_reader(spec), parquet_reader.plan_row_groups
        for path in spec.files:
            for element in plan(path):
                yield from (b for b in reader.process(element) if isinstance(b, pa.RecordBatch))
        return
    decoder = tfrecord_reader.DecodeExamples(spec)
    decoder.setup()
    for path in spec.files:
        items = []
        for item in tfrecord_reader.read_tfrecord_file(path):
            items.append(item)
            if len(items) == rows_per_batch:
                yield from (b for b in decoder.process(items) if isinstance(b, pa.RecordBatch))
                items = []
        if items:
            yield from (b for b in decoder.process(items) if isinstance(b, pa.RecordBatch))


def first_rows(spec: InputSpec, limit: int):
    """The first `limit` rows (or fewer) as one canonical record batch, or None."""
    for batch in iter_record_batches(spec, rows_per_batch=limit):
        return batch.slice(0, limit) if batch.num_rows else None
    return None


def iter_columns(spec: InputSpec):
    """`iter_record_batches` as {numeric column: float64 [n] array} dicts
    (NaN = missing), with each categorical column (and a string label) as
    an array of bytes ("" = missing)."""
    for batch in iter_record_batches(spec):
        names = list(spec.read_as_numbers) + list(spec.read_as_text)
        columns = {n: batch.column(i).flatten().to_numpy(zero_copy_only=False) for i, n in enumerate(names)}
        columns.update({n: c.flatten().to_numpy(zero_copy_only=False)
                        for n, c in category_columns(batch, spec).items()})
        yield columns
