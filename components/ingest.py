"""Ingest: CSV or TFRecord files to canonical Arrow record batches.

The canonical batch, what every later stage reads, holds the numeric columns
only (features and label), each as list<double> of length 1 per row, with a
missing value (empty cell, NaN, absent feature) as NaN. tf.Transform receives
these batches through a `TensorAdapterConfig`: one float64 dense tensor of
shape [batch] per column.
"""

import dataclasses
import glob
import os
from typing import Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.tfxio import tensor_adapter

from components import csv_reader
from components.errors import UserError

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".tfr")
_INFER_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What to read: files, their format, and which columns are numeric.

    `numeric` lists the columns parsed as float64 (features, then the label if
    any); `strings` lists the other columns, which are reported and left alone.
    """

    files: Tuple[str, ...]
    format: str
    columns: Tuple[str, ...]
    features: Tuple[str, ...]
    strings: Tuple[str, ...] = ()
    label: Optional[str] = None
    block_size: int = csv_reader.DEFAULT_BLOCK_SIZE
    int64_columns: Tuple[str, ...] = ()  # tf.train.Example features held as int64_list
    centers: Tuple[float, ...] = ()  # per feature: median of the sample (see statistics.py)

    def __post_init__(self):
        if self.format not in ("csv", "tfrecord"):
            raise ValueError(f"format must be 'csv' or 'tfrecord'. Received: {self.format!r}")
        if not self.files:
            raise ValueError("files must not be empty. Received: ()")

    @property
    def numeric(self) -> Tuple[str, ...]:
        return self.features + ((self.label,) if self.label else ())


def expand_input(path: str) -> Tuple[str, ...]:
    """A file, a directory (its visible files) or a glob, as sorted file paths."""
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

        pattern = path.rstrip("/") + "/*" if path.endswith("/") else path
        files = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    elif os.path.isdir(path):
        files = [os.path.join(path, n) for n in os.listdir(path) if not n.startswith((".", "_"))]
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise UserError(f"{path}: directory holds no input files")
    elif any(c in path for c in "*?["):
        files = [f for f in glob.glob(path) if os.path.isfile(f)]
        if not files:
            raise UserError(f"{path}: pattern matches no files")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise UserError(f"{path}: no such file or directory")
    for f in files:
        if "://" not in f and not os.access(f, os.R_OK):
            raise UserError(f"{f}: file is not readable")
    return tuple(sorted(files))


def detect_format(files, requested: Optional[str] = None) -> str:
    if requested:
        return requested
    if all(f.lower().endswith(TFRECORD_SUFFIXES) for f in files):
        return "tfrecord"
    return "csv"


def _check_header(path, names):
    for i, name in enumerate(names):
        if not name.strip():
            raise UserError(f"{path}: header column {i + 1} has an empty name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: header has duplicate column names: {', '.join(dupes)}")


def _csv_sample(path: str) -> pa.Table:
    """The first few MB of a CSV, parsed with pyarrow's type inference."""
    try:
        if os.path.getsize(path) == 0:
            raise UserError(f"{path}: file is empty (expected a header row)")
        stream = pa.input_stream(path, compression="gzip" if csv_reader.is_gzip(path) else None)
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=_INFER_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return reader.schema.empty_table()
        return pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        message = str(exc).splitlines()[0]
        if "Empty CSV file" in message:
            raise UserError(f"{path}: file is empty (expected a header row)") from None
        raise UserError(f"{path}: cannot read CSV header and first rows: {message}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _is_numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def inspect_csv(files, features=None, label=None) -> InputSpec:
    """Reads the header and a sample of the first file to type the columns.

    A column is numeric when pyarrow infers an integer, float or all-null type
    for the sample; `features` overrides the inference (a non-numeric value in
    a listed column is then an error naming its line when the data is read).
    """
    sample = _csv_sample(files[0])
    columns = tuple(sample.column_names)
    _check_header(files[0], list(columns))
    for other in files[1:]:
        other_columns = tuple(_csv_sample(other).column_names)
        if other_columns != columns:
            raise UserError(f"{other}: header differs from {files[0]}'s: {','.join(other_columns)}")
    types = {name: sample.schema.field(name).type for name in columns}
    inferred = [n for n in columns if _is_numeric_type(types[n])]
    spec = _make_spec(files, "csv", columns, inferred, features, label, types)
    return dataclasses.replace(spec, centers=tuple(_median(sample.column(n)) for n in spec.features))


def _median(column) -> float:
    """Median of the values that parse as finite numbers (0.0 if none)."""
    try:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return 0.0
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else 0.0


def _make_spec(files, fmt, columns, inferred, features, label, types) -> InputSpec:
    strings = tuple(n for n in columns if n not in inferred)
    if label is not None:
        if label not in columns:
            raise UserError(f"--label {label!r}: no such column (columns: {', '.join(columns)})")
        if label in strings:
            raise UserError(f"--label {label!r}: column is not numeric (type {types[label]})")
    if features:
        for name in features:
            if name not in columns:
                raise UserError(f"--features: no column {name!r} (columns: {', '.join(columns)})")
            if name in strings and types.get(name) is not None and not pa.types.is_string(types[name]):
                raise UserError(f"--features: column {name!r} is not numeric (type {types[name]})")
        chosen = tuple(n for n in features if n != label)
        strings = tuple(n for n in strings if n not in chosen)
    else:
        chosen = tuple(n for n in inferred if n != label)
    if not chosen:
        raise UserError(f"{files[0]}: no numeric feature columns found (string columns: {', '.join(strings)})")
    return InputSpec(tuple(files), fmt, tuple(columns), chosen, strings, label)


def inspect_tfrecord(files, features=None, label=None, sample_size=1000) -> InputSpec:
    """Types the features of a sample of tf.train.Examples from the first file."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    kinds, samples = {}, {}
    compression = "GZIP" if csv_reader.is_gzip(files[0]) else ""
    try:
        for record in tf.data.TFRecordDataset(files[0], compression_type=compression).take(sample_size):
            example = tf.train.Example.FromString(record.numpy())
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                if kind and kinds.get(name) in (None, kind):
                    kinds[name] = kind
                if kind in ("float_list", "int64_list") and len(getattr(feature, kind).value) == 1:
                    samples.setdefault(name, []).append(getattr(feature, kind).value[0])
    except (tf.errors.OpError, Exception) as exc:  # corrupt data or not a TFRecord file
        raise UserError(f"{files[0]}: not a readable TFRecord of tf.train.Example ({str(exc).splitlines()[0][:160]})") from None
    if not kinds:
        raise UserError(f"{files[0]}: no examples found")
    columns = tuple(sorted(kinds))
    inferred = [n for n in columns if kinds[n] in ("float_list", "int64_list")]
    types = {n: (pa.float64() if n in inferred else pa.binary()) for n in columns}
    spec = _make_spec(files, "tfrecord", columns, inferred, features, label, types)
    ints = tuple(n for n in spec.numeric if kinds[n] == "int64_list")
    centers = tuple(_median(pa.array(samples.get(n, []), pa.float64())) for n in spec.features)
    return dataclasses.replace(spec, int64_columns=ints, centers=centers)


def inspect_input(path: str, fmt=None, features=None, label=None) -> InputSpec:
    files = expand_input(path)
    fmt = detect_format(files, fmt)
    if fmt == "csv":
        return inspect_csv(files, features, label)
    return inspect_tfrecord(files, features, label)


def tensor_adapter_config(spec: InputSpec) -> tensor_adapter.TensorAdapterConfig:
    """One float64 dense tensor of shape [batch] per numeric column."""
    fields, reps = [], {}
    for name in spec.numeric:
        fields.append(pa.field(name, pa.list_(pa.float64())))
        rep = schema_pb2.TensorRepresentation()
        rep.dense_tensor.column_name = name
        rep.dense_tensor.shape.SetInParent()
        reps[name] = rep
    return tensor_adapter.TensorAdapterConfig(pa.schema(fields), reps)


def _tf_example_schema(spec: InputSpec) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    for name in spec.numeric:
        kind = schema_pb2.INT if name in spec.int64_columns else schema_pb2.FLOAT
        schema.feature.add(name=name, type=kind)
    return schema


class DecodeExamples(beam.DoFn):
    """Serialized tf.train.Examples to canonical record batches."""

    def __init__(self, spec: InputSpec):
        self._spec = spec
        self._rows = beam.metrics.Metrics.counter("normpipe", "rows_read")

    def setup(self):
        from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel

        self._decoder = example_coder.ExamplesToRecordBatchDecoder(
            _tf_example_schema(self._spec).SerializeToString()
        )

    def process(self, records):
        try:
            batch = self._decoder.DecodeBatch(records)
        except RuntimeError as exc:  # e.g. a feature whose type changes between examples
            files = ", ".join(self._spec.files[:3])
            raise UserError(f"{files}: cannot decode tf.train.Example: {str(exc).splitlines()[0][:200]}") from None
        columns = []
        for name in self._spec.numeric:
            column = batch.column(batch.schema.get_field_index(name))
            lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
            if (lengths > 1).any():
                raise UserError(f"{self._spec.files[0]}: feature {name!r} has {lengths.max()} values in one example; only scalar features are supported")
            dense = np.full(len(lengths), np.nan)
            dense[lengths == 1] = pc.list_flatten(column).to_numpy(zero_copy_only=False)
            columns.append(csv_reader.to_dense_list_column(pa.array(dense)))
        self._rows.inc(batch.num_rows)
        yield pa.RecordBatch.from_arrays(columns, list(self._spec.numeric))


class ReadRecordBatches(beam.PTransform):
    """Reads the input files as canonical record batches, inside the pipeline."""

    def __init__(self, spec: InputSpec, split_size: int = csv_reader.DEFAULT_SPLIT_SIZE):
        super().__init__()
        self._spec = spec
        self._split_size = split_size

    def expand(self, pbegin):
        files = pbegin | "ListFiles" >> beam.Create(list(self._spec.files))
        if self._spec.format == "csv":
            split_size = self._split_size
            return (
                files
                | "PlanByteRanges" >> beam.FlatMap(lambda f: csv_reader.plan_ranges(f, split_size))
                | "SpreadRanges" >> beam.Reshuffle()
                | "ParseCsv" >> beam.ParDo(csv_reader.ReadCsvRange(self._spec.columns, self._spec.numeric, self._spec.block_size))
            )
        return (
            files
            | "ReadTFRecords" >> beam.FlatMap(_read_tfrecord_file)
            | "BatchExamples" >> beam.BatchElements(min_batch_size=1024, max_batch_size=65536)
            | "DecodeExamples" >> beam.ParDo(DecodeExamples(self._spec))
        )


def _read_tfrecord_file(path: str):
    """Yields the records of one TFRecord file (plain or gzip, by content)."""
    from apache_beam.io import tfrecordio  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel

    compression = CompressionTypes.GZIP if csv_reader.is_gzip(path) else CompressionTypes.UNCOMPRESSED
    source = tfrecordio._TFRecordSource(path, beam.coders.BytesCoder(), compression, validate=False)  # pylint: disable=protected-access
    try:
        for record in source.read(source.get_range_tracker(None, None)):
            yield record
    except Exception as exc:  # bad CRC, truncated record, bad gzip stream
        raise UserError(f"{path}: corrupt TFRecord data ({str(exc).splitlines()[0][:160]})") from None


def iter_record_batches(spec: InputSpec, rows_per_batch: int = 65536):
    """Canonical record batches in file order, streamed in this process.

    The same readers as `ReadRecordBatches`, for stages that walk the data
    once outside a pipeline (the comparison); memory stays flat.
    """
    if spec.format == "csv":
        reader = csv_reader.ReadCsvRange(spec.columns, spec.numeric, spec.block_size)
        for path in spec.files:
            for element in csv_reader.plan_ranges(path):
                yield from reader.process(element)
        return
    decoder = DecodeExamples(spec)
    decoder.setup()
    for path in spec.files:
        records = []
        for record in _read_tfrecord_file(path):
            records.append(record)
            if len(records) == rows_per_batch:
                yield from decoder.process(records)
                records = []
        if records:
            yield from decoder.process(records)
