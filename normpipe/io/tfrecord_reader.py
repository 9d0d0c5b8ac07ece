"""TFRecord files of tf.train.Example to canonical record batches.

Records travel as (path, index, serialized Example) so that an error names
the file and the record (1-based). Gzip is detected by content.
"""

import itertools
import struct
import zlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.tfrecordio import _TFRecordUtil  # the framing checksums
from tensorflow_metadata.proto.v0 import schema_pb2

from normpipe.core.errors import UserError
from normpipe.io import csv_lines
from normpipe.io.csv_reader import BAD_VALUES_TAG, to_dense_list_column, to_text_list_column


def sample_examples(path: str, sample_size: int = 1000):
    """Feature kinds and scalar sample values of the first examples of a file.

    Returns ({name: "float_list" | "int64_list" | "bytes_list"},
    {name: [values]}). Read with `read_tfrecord_file`, not tf.data, whose
    reader crashes the process on a record claiming a huge length; corrupt
    data is a UserError naming the file.
    """
    from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel

    kinds, samples = {}, {}
    for _, index, record in itertools.islice(read_tfrecord_file(path), sample_size):
        try:
            example = example_pb2.Example.FromString(record)
        except DecodeError:
            raise UserError(f"{path} record {index + 1}: not a tf.train.Example") from None
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            if kind and kinds.get(name) in (None, kind):
                kinds[name] = kind
            if kind in ("float_list", "int64_list") and len(getattr(feature, kind).value) == 1:
                samples.setdefault(name, []).append(getattr(feature, kind).value[0])
    if not kinds:
        raise UserError(f"{path}: no examples found")
    return kinds, samples


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


MAX_RECORD_BYTES = 1 << 31  # protobuf's limit; a larger length is corruption


def _read_record(f):
    """The next record of a TFRecord stream, None at its end; ValueError if corrupt."""
    header = f.read(12)
    if not header:
        return None
    if len(header) != 12:
        raise ValueError("truncated record header")
    length, length_crc = struct.unpack("<QI", header)
    if _TFRecordUtil._masked_crc32c(header[:8]) != length_crc:  # pylint: disable=protected-access
        raise ValueError("bad length checksum (not a TFRecord file?)")
    if length > MAX_RECORD_BYTES:
        raise ValueError(f"record length {length} is implausible")
    body = f.read(length + 4)
    if len(body) != length + 4:
        raise ValueError("truncated record")
    if _TFRecordUtil._masked_crc32c(body[:length]) != struct.unpack("<I", body[length:])[0]:  # pylint: disable=protected-access
        raise ValueError("bad data checksum")
    return body[:length]


def read_tfrecord_file(path: str):
    """Yields (path, index, record) for the records of one TFRecord file.

    A bad checksum, a truncated record or a broken or truncated gzip stream is
    a UserError naming the file.
    """
    index = 0
    try:
        with csv_lines.open_bytes(path) as f:
            while True:
                record = _read_record(f)
                if record is None:
                    return
                yield path, index, record
                index += 1
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # bad CRC, truncated record, bad gzip
        raise UserError(f"{path}: corrupt TFRecord data after record {index} ({_first_line(exc)})") from None


def example_schema(sources, int64_sources, bytes_sources=()) -> schema_pb2.Schema:
    """The tf.train.Example features to decode, by their names in the files."""
    schema = schema_pb2.Schema()
    for name in sources:
        kind = schema_pb2.INT if name in int64_sources else schema_pb2.FLOAT
        schema.feature.add(name=name, type=kind)
    for name in bytes_sources:
        schema.feature.add(name=name, type=schema_pb2.BYTES)
    return schema


class DecodeExamples(beam.DoFn):
    """Lists of (path, index, serialized Example) -> canonical record batches.

    `spec` is the ingest.InputSpec. A feature holding +-inf is a UserError
    naming file, record and feature, or with spec.bad_values == "missing" a
    missing value counted on the output tagged BAD_VALUES_TAG. A record that
    does not decode, or a feature with several values, is a UserError.
    """

    def __init__(self, spec):
        self._spec = spec
        self._sources = [spec.original_name(n) for n in spec.read_as_numbers]
        self._text = [spec.original_name(n) for n in spec.read_as_text]  # bytes_list features
        self._rows = beam.metrics.Metrics.counter("normpipe", "rows_read")

    def setup(self):
        from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel

        ints = [self._spec.original_name(n) for n in self._spec.int64_columns]
        self._decoder = example_coder.ExamplesToRecordBatchDecoder(
            example_schema(self._sources, ints, self._text).SerializeToString()
        )

    def process(self, items):
        try:
            batch = self._decoder.DecodeBatch([record for _, _, record in items])
        except RuntimeError:  # e.g. a feature whose type differs from the schema
            raise self._undecodable(items) from None
        columns, counts = [], {}
        for name, source in zip(self._spec.read_as_numbers, self._sources):
            dense = self._dense(batch.column(batch.schema.get_field_index(source)), source, items)
            infinite = np.isinf(dense)
            if infinite.any():
                path, index, _ = items[int(np.flatnonzero(infinite)[0])]
                if self._spec.bad_values == "error":
                    raise UserError(f"{path} record {index + 1} feature {source!r}: infinite value "
                                    "(use --bad-values=missing to treat such values as missing)")
                counts[name] = int(infinite.sum())
                dense[infinite] = np.nan
            columns.append(to_dense_list_column(pa.array(dense)))
        for source in self._text:
            columns.append(to_text_list_column(self._text_values(batch.column(batch.schema.get_field_index(source)),
                                                                 source, items)))
        self._rows.inc(batch.num_rows)
        yield pa.RecordBatch.from_arrays(columns, list(self._spec.read_as_numbers) + list(self._spec.read_as_text))
        if counts:
            yield beam.pvalue.TaggedOutput(BAD_VALUES_TAG, counts)

    @staticmethod
    def _scalar_lengths(column, source, items) -> np.ndarray:
        """The number of values (0 or 1) of each row of a list column; more is a UserError."""
        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        if (lengths > 1).any():
            path, index, _ = items[int(np.flatnonzero(lengths > 1)[0])]
            raise UserError(f"{path} record {index + 1} feature {source!r}: {lengths.max()} values in one "
                            "example; only scalar features are supported")
        return lengths

    @staticmethod
    def _text_values(column, source, items) -> pa.Array:
        """A list<binary> column of 0 or 1 values per row as binary, null when absent."""
        lengths = DecodeExamples._scalar_lengths(column, source, items)
        position = np.cumsum(lengths) - 1
        return pc.take(pc.list_flatten(column), pa.array(position, mask=lengths == 0))

    @staticmethod
    def _dense(column, source, items) -> np.ndarray:
        """A list column of 0 or 1 values per row as float64, NaN when absent."""
        lengths = DecodeExamples._scalar_lengths(column, source, items)
        dense = np.full(len(lengths), np.nan)
        dense[lengths == 1] = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        return dense

    def _undecodable(self, items) -> UserError:
        """Names the first record and feature that fail.

        The records are parsed as protos and each feature's kind is compared
        with the schema's: a decoder that has failed once is left in a state
        that fails on every later record, so it cannot be asked again.
        """
        from google.protobuf.message import DecodeError  # pylint: disable=import-outside-toplevel
        from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel

        ints = {self._spec.original_name(n) for n in self._spec.int64_columns}
        expected = {source: "int64_list" if source in ints else "float_list" for source in self._sources}
        expected.update(dict.fromkeys(self._text, "bytes_list"))
        for path, index, record in items:
            try:
                features = example_pb2.Example.FromString(record).features.feature
            except DecodeError:
                return UserError(f"{path} record {index + 1}: not a tf.train.Example")
            for source, kind in expected.items():
                actual = features[source].WhichOneof("kind") if source in features else None
                if actual not in (None, kind):
                    return UserError(f"{path} record {index + 1} feature {source!r}: {actual} where the earlier "
                                     f"records hold {kind}; cannot decode tf.train.Example")
        return UserError(f"{items[0][0]}: cannot decode tf.train.Example")
