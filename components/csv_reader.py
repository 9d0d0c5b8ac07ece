"""Fast CSV reading for Beam: byte-range splits parsed by pyarrow.

tfx-bsl's `CsvTFXIO` decodes CSV line by line in Python (~55k rows/s here);
pyarrow's multithreaded streaming reader parses multi-MB blocks in C++ at
millions of rows/s, so the reading DoFn below is written on pyarrow directly.

A large uncompressed local file is split into byte ranges so that several
workers read it in parallel. A range [start, end) owns every line that starts
at a byte offset p with start <= p < end (a line starts at 0 or right after a
newline), so each line is read exactly once. A file that holds a double quote
anywhere is not split: a quoted field may hold a newline, and a split inside it
would cut a record in two.
"""

import mmap
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from components.errors import UserError

DEFAULT_BLOCK_SIZE = 16 << 20
DEFAULT_SPLIT_SIZE = 64 << 20


def is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _is_local(path: str) -> bool:
    return "://" not in path


def line_start_at_or_after(buf, pos: int) -> int:
    """Offset of the first line start >= pos in `buf` (len(buf) if none)."""
    if pos <= 0:
        return 0
    newline = buf.find(b"\n", pos - 1)
    return len(buf) if newline < 0 else newline + 1


def plan_ranges(path: str, split_size: int = DEFAULT_SPLIT_SIZE):
    """Yields (path, start, end, quoted) byte ranges covering the whole file."""
    if not _is_local(path) or is_gzip(path):
        yield path, 0, -1, True
        return
    size = os.path.getsize(path)
    if size == 0:
        yield path, 0, 0, False
        return
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        quoted = buf.find(b'"') >= 0
    if quoted or size <= split_size:
        yield path, 0, size, quoted
        return
    for start in range(0, size, split_size):
        yield path, start, min(start + split_size, size), False


def _open_range(path: str, start: int, end: int):
    """Returns (stream, first_byte) for the lines owned by [start, end)."""
    if end < 0:  # compressed or remote: read it whole, as a stream
        if _is_local(path):
            return pa.input_stream(path, compression="gzip" if is_gzip(path) else None), 0
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

        return pa.PythonFile(FileSystems.open(path), mode="r"), 0
    source = pa.memory_map(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        first = line_start_at_or_after(buf, start)
        last = line_start_at_or_after(buf, end) if end < len(buf) else len(buf)
    if last <= first:
        return None, first
    source.seek(first)
    return pa.BufferReader(source.read_buffer(last - first)), first


def _lines_before(path: str, offset: int) -> int:
    if offset <= 0:
        return 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return buf[:offset].count(b"\n")


def to_dense_list_column(values: pa.Array) -> pa.ListArray:
    """float64 values, missing as NaN, as a list<double> of length 1 per row.

    tfx-bsl's dense tensor adapter reads only list columns; the offsets are
    0..n, the values buffer is shared with `values`.
    """
    if values.type != pa.float64():
        values = values.cast(pa.float64())
    if values.null_count:
        values = pc.fill_null(values, np.nan)
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


class ReadCsvRange(beam.DoFn):
    """Parses one byte range of a CSV file into canonical record batches.

    Output batches hold the `numeric` columns only, each as list<double> of
    length 1 per row, missing (empty, NaN) as NaN. An infinite value or a
    value that is not a number is a `UserError` naming file, line, column and
    value.
    """

    def __init__(self, columns, numeric, block_size=DEFAULT_BLOCK_SIZE):
        self._columns = list(columns)
        self._numeric = list(numeric)
        self._block_size = block_size
        self._rows = beam.metrics.Metrics.counter("normpipe", "rows_read")

    def _reader(self, stream, first, quoted, threads=True, handler=None, as_string=False):
        kind = pa.string() if as_string else pa.float64()
        return pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=self._columns,
                skip_rows=1 if first == 0 else 0,
                block_size=self._block_size,
                use_threads=threads,
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=quoted, invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(
                column_types={name: kind for name in self._numeric},
                include_columns=self._numeric,
                quoted_strings_can_be_null=True,
            ),
        )

    def process(self, element):
        path, start, end, quoted = element
        stream, first = _open_range(path, start, end)
        if stream is None:  # a range with no line start in it
            return
        rows_seen = 0
        try:
            try:
                reader = self._reader(stream, first, quoted)
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):  # header only
                    return
                raise
            for batch in reader:
                self._check_finite(batch, path, first, rows_seen)
                rows_seen += batch.num_rows
                self._rows.inc(batch.num_rows)
                yield pa.RecordBatch.from_arrays(
                    [to_dense_list_column(batch.column(i)) for i in range(batch.num_columns)],
                    self._numeric,
                )
        except pa.ArrowInvalid as exc:
            raise self._diagnose(path, start, end, quoted, exc) from None

    def _line_of(self, path, first, row_index):
        header = 1 if first == 0 else 0
        return _lines_before(path, first) + header + row_index + 1

    def _check_finite(self, batch, path, first, rows_before):
        for name, column in zip(self._numeric, batch.columns):
            if column.null_count == len(column):
                continue
            bad = pc.is_inf(column)
            if pc.any(bad).as_py():
                index = pc.index(bad, True).as_py()
                raise UserError(
                    f"{path} line {self._line_of(path, first, rows_before + index)} column "
                    f"'{name}': infinite value {column[index].as_py()} (use a finite number, "
                    "or leave the cell empty for missing)"
                )

    def _diagnose(self, path, start, end, quoted, exc) -> UserError:
        """Re-reads the range slowly to name the exact line of a parse error."""
        ragged = []

        def record(row):
            ragged.append(row)
            return "error"

        stream, first = _open_range(path, start, end)
        try:
            rows_before = 0
            for batch in self._reader(stream, first, quoted, threads=False, handler=record, as_string=True):
                for name, column in zip(self._numeric, batch.columns):
                    index = _first_non_numeric(column)
                    if index is not None:
                        line = self._line_of(path, first, rows_before + index)
                        return UserError(
                            f"{path} line {line} column '{name}': non-numeric value "
                            f"{column[index].as_py()!r} in a numeric column"
                        )
                rows_before += batch.num_rows
        except pa.ArrowInvalid:
            if ragged:
                row = ragged[0]
                line = _lines_before(path, first) + (row.number or 0) + (0 if first == 0 else 1)
                return UserError(
                    f"{path} line {line}: expected {row.expected_columns} fields, got "
                    f"{row.actual_columns}: {row.text[:80]!r}"
                )
        return UserError(f"{path}: cannot parse CSV: {str(exc).splitlines()[0][:200]}")


def _first_non_numeric(column: pa.Array):
    """Index of the first non-null string that does not parse as a float."""
    values = column.to_pylist()
    for index, text in enumerate(values):
        if text is None:
            continue
        try:
            float(text)
        except ValueError:
            return index
    return None
