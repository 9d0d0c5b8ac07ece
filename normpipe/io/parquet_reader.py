"""Parquet input: row groups read with pyarrow's dataset API.

A Parquet file is planned as one element per row group, so a runner spreads
a file's row groups across its workers; each is read as record batches of
the numeric columns only and turned into the canonical batches the CSV
reader produces (list<double> of length 1 per row, missing as NaN).

Numeric means an integer, floating-point or decimal column (or one that is
all null); integers beyond 2**53 round to the nearest float64, as in CSV.
A null or NaN is missing; an infinite value is a bad value (an error, or
missing and counted with bad_values="missing"), as in CSV.

A local path is opened by Arrow directly; a URI (`gs://...`) through Beam's
FileSystems, as a seekable file.
"""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from normpipe.core.errors import UserError
from normpipe.io import csv_values
from normpipe.io.csv_reader import BAD_VALUES, BAD_VALUES_TAG, to_dense_list_column, to_text_list_column

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
BATCH_ROWS = 131072
SAMPLE_ROWS = 65536


def _source(path: str):
    if "://" not in path:
        return path
    from apache_beam.io.filesystems import CompressionTypes, FileSystems  # pylint: disable=import-outside-toplevel

    return pa.PythonFile(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="r")


def _cannot_read(path: str, exc: BaseException) -> UserError:
    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UserError(f"{path}: cannot read as Parquet: {message[:200]}")


def fragment(path: str, row_groups=None) -> ds.ParquetFileFragment:
    """The file (or some of its row groups) as a dataset fragment."""
    local = "://" not in path
    try:
        return ds.ParquetFileFormat().make_fragment(
            _source(path), filesystem=pafs.LocalFileSystem() if local else None, row_groups=row_groups
        )
    except (pa.ArrowException, OSError) as exc:
        raise _cannot_read(path, exc) from None


def file_schema(path: str) -> pa.Schema:
    try:
        return fragment(path).physical_schema
    except (pa.ArrowException, OSError) as exc:
        raise _cannot_read(path, exc) from None


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)


def plan_row_groups(path: str):
    """Yields (path, row group index, rows before it in the file)."""
    try:
        metadata = fragment(path).metadata
    except (pa.ArrowException, OSError) as exc:
        raise _cannot_read(path, exc) from None
    first = 0
    for index in range(metadata.num_row_groups):
        yield path, index, first
        first += metadata.row_group(index).num_rows


def sample_values(path: str, sources, rows: int = SAMPLE_ROWS) -> dict:
    """{column: float64 values} of the first `rows` rows of a file, for typing and scales."""
    try:
        table = fragment(path).head(rows, columns=list(sources))
    except (pa.ArrowException, OSError) as exc:
        raise _cannot_read(path, exc) from None
    return {name: table.column(name).to_numpy().astype(np.float64) for name in sources}


class ReadParquetRowGroup(beam.DoFn):
    """One (path, row group, first row) element to canonical record batches.

    `sources` are the Parquet column names, `numeric` the canonical
    (TensorFlow-safe) names in the same order; `text` ({canonical name:
    Parquet column}) the text columns (string, binary or dictionary-encoded),
    emitted after the numeric ones as list<binary>, null as b"".
    """

    def __init__(self, sources, numeric, bad_values="error", batch_rows=BATCH_ROWS, text=None):
        if bad_values not in BAD_VALUES:
            raise ValueError(f"bad_values must be 'error' or 'missing'. Received: {bad_values!r}")
        self._sources = list(sources)
        self._numeric = list(numeric)
        self._text = dict(text or {})
        self._bad_values = bad_values
        self._batch_rows = batch_rows
        self._rows = beam.metrics.Metrics.counter("normpipe", "rows_read")

    def process(self, element):
        path, index, first = element
        try:
            columns = self._sources + [c for c in self._text.values() if c not in set(self._sources)]
            batches = fragment(path, [index]).to_batches(columns=columns, batch_size=self._batch_rows)
            for batch in batches:
                yield from self._finish(batch, path, first)
                first += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _cannot_read(path, exc) from None

    def _finish(self, batch, path, first):
        columns, counts = [], {}
        for source, name in zip(self._sources, self._numeric):
            column = batch.column(source)
            if pa.types.is_null(column.type):
                column = column.cast(pa.float64())
            values, bad = csv_values.lenient_float(column)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                if self._bad_values == "error":
                    raise UserError(
                        f"{path} row {first + row + 1} column {source!r}: infinite value {column[row].as_py()} "
                        "(use --bad-values=missing to treat such values as missing)"
                    )
                counts[name] = int(bad.sum())
            columns.append(to_dense_list_column(values))
        for source in self._text.values():
            column = batch.column(source)
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            columns.append(to_text_list_column(column))
        self._rows.inc(batch.num_rows)
        yield pa.RecordBatch.from_arrays(columns, self._numeric + list(self._text))
        if counts:
            yield beam.pvalue.TaggedOutput(BAD_VALUES_TAG, counts)
