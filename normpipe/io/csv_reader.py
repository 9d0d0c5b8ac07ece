"""Fast CSV reading for Beam: byte-range splits parsed by pyarrow.

tfx-bsl's `CsvTFXIO` decodes CSV line by line in Python (~55k rows/s here);
pyarrow parses multi-MB blocks in C++ at millions of rows/s, so the reading
DoFn below is written on pyarrow directly: `read_csv` (every core) for a byte
range of bounded size, the streaming `open_csv` (one thread, bounded memory)
for a whole quoted, compressed or remote file.

A large uncompressed local file is split into byte ranges so that several
workers read it in parallel. A range [start, end) owns every line that starts
at a byte offset p with start <= p < end (a line starts at 0 or right after a
newline), so each line is read exactly once. A file that holds a double quote
anywhere is not split: a quoted field may hold a newline, and a split inside it
would cut a record in two.
"""

import mmap
import os
import re
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from normpipe.core.errors import UserError
from normpipe.io import csv_lines, csv_values
from normpipe.io.csv_lines import is_gzip

# pyarrow parses several blocks at once; each becomes a record batch that
# tf.Transform expands into several float64 copies. 4 MB blocks (about 55k
# rows of 8 features) keep a worker's transient memory near 150 MB at the
# speed of 16 MB blocks (benchmarks/: 20M rows, 1 and 2 workers).
DEFAULT_BLOCK_SIZE = 4 << 20
MAX_BLOCK_SIZE = 256 << 20
# Converting and checking a block costs a few Arrow calls per column, so wide
# rows get larger blocks: 16 kB per column (4 MB up to 256 columns; 5,000
# columns x 1,000 rows in one block rather than 15 of 67 rows each), at most
# a quarter of MAX_BLOCK_SIZE, leaving room to grow for a long row.
BLOCK_BYTES_PER_COLUMN = 16 << 10
DEFAULT_SPLIT_SIZE = 64 << 20
# A byte range up to this size, of a file without quotes, is parsed in one
# `read_csv` call: pyarrow then parses its blocks on all cores at once, where
# the streaming reader (`open_csv`) parses on one thread only. Larger or
# quoted ranges (a whole quoted, compressed or remote file) stream, so memory
# stays bounded by the block size.
WHOLE_RANGE_MAX = 2 * DEFAULT_SPLIT_SIZE
BAD_VALUES_TAG = "bad_values"
BAD_VALUES = ("error", "missing")


def block_size_for(num_columns: int) -> int:
    """The block size for rows of `num_columns` columns."""
    return min(max(DEFAULT_BLOCK_SIZE, num_columns * BLOCK_BYTES_PER_COLUMN), MAX_BLOCK_SIZE // 4)


def line_start_at_or_after(buf, pos: int) -> int:
    """Offset of the first line start >= pos in `buf` (len(buf) if none)."""
    if pos <= 0:
        return 0
    newline = buf.find(b"\n", pos - 1)
    return len(buf) if newline < 0 else newline + 1


def _holds_quote(path: str, window: int = 64 << 20) -> bool:
    """Whether the file holds a double quote, searched one mapped window at a time.

    A window is searched in place (no copy: 3x faster than reading it) and
    unmapped before the next, so the process's resident memory stays below
    one window; a memory map of the whole file would page all of it in at
    once (1.4 GB for a 20M-row file).
    """
    size = os.path.getsize(path)
    window -= window % mmap.ALLOCATIONGRANULARITY
    with open(path, "rb") as f:
        for offset in range(0, size, window):
            with mmap.mmap(f.fileno(), min(window, size - offset), access=mmap.ACCESS_READ, offset=offset) as view:
                if view.find(b'"') >= 0:
                    return True
    return False


def plan_ranges(path: str, split_size: int = DEFAULT_SPLIT_SIZE):
    """Yields (path, start, end, quoted) byte ranges covering the whole file."""
    if not csv_lines.is_local(path) or is_gzip(path):
        yield path, 0, -1, True
        return
    size = os.path.getsize(path)
    if size == 0:
        yield path, 0, 0, False
        return
    quoted = _holds_quote(path)
    if quoted or size <= split_size:
        yield path, 0, size, quoted
        return
    for start in range(0, size, split_size):
        yield path, start, min(start + split_size, size), False


def _open_range(path: str, start: int, end: int):
    """Returns (stream, first_byte) for the lines owned by [start, end)."""
    if end < 0:  # compressed or remote: read it whole, as a stream
        if csv_lines.is_local(path):
            return pa.input_stream(path, compression="gzip" if is_gzip(path) else None), 0
        return pa.PythonFile(csv_lines.open_bytes(path), mode="r"), 0
    if end == 0:
        return None, 0
    source = pa.memory_map(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        first = line_start_at_or_after(buf, start)
        last = line_start_at_or_after(buf, end) if end < len(buf) else len(buf)
    if last <= first:
        return None, first
    source.seek(first)
    return pa.BufferReader(source.read_buffer(last - first)), first


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


def _finite_float_list(column: pa.Array, offsets: pa.Array):
    """The canonical list<double> column of a float64 column without an
    infinite value (nulls become NaN), or None for any other column.

    The common case in numpy: one pass to find an infinite value, no copy
    when nothing is missing; `csv_values.lenient_float` handles the rest.
    """
    if column.type != pa.float64():
        return None
    values = column.to_numpy(zero_copy_only=False)  # a null becomes NaN
    if np.isinf(values).any():
        return None
    return pa.ListArray.from_arrays(offsets, pa.array(values))


def to_text_list_column(values: pa.Array) -> pa.ListArray:
    """Text values as a list<binary> of length 1 per row, missing as b""."""
    values = pc.fill_null(values.cast(pa.binary()), b"")
    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1, dtype=np.int32)), values)


class ReadCsvRange(beam.DoFn):
    """Parses one byte range of a CSV file into canonical record batches.

    Output batches hold the `numeric` columns only, each as list<double> of
    length 1 per row, missing (empty, NaN, NA, ...) as NaN. A bad value (not
    a number, or infinite; see csv_values) is a `UserError` naming file, line,
    column and value; with bad_values="missing" it is missing instead, and
    each batch holding any is followed by a {column: count} dict on the
    output tagged BAD_VALUES_TAG.

    The fast path parses the numeric columns as float64 in C++. Only when a
    block fails to convert is the range re-read with them as bytes (the rows
    already emitted are skipped) and converted by csv_values.lenient_float.
    A row longer than the block size fails too; the range is then re-read
    with 4x larger blocks, up to MAX_BLOCK_SIZE.

    `columns` are the header's names (sanitized); `labels` maps a column to
    the name shown in messages (the header's own).
    """

    def __init__(self, columns, numeric, block_size=DEFAULT_BLOCK_SIZE, bad_values="error", labels=None, strings=()):
        if bad_values not in BAD_VALUES:
            raise ValueError(f"bad_values must be 'error' or 'missing'. Received: {bad_values!r}")
        self._columns = list(columns)
        self._numeric = list(numeric)
        self._strings = list(strings)  # text columns emitted as list<binary> ("" = missing), after the numeric ones
        self._block_size = block_size
        self._bad_values = bad_values
        self._labels = dict(labels or {})
        self._rows = beam.metrics.Metrics.counter("normpipe", "rows_read")
        # Where a stage's time goes (microseconds over all workers): pyarrow's
        # parsing and float conversion, then the checks and canonical batches.
        self._parse_us = beam.metrics.Metrics.counter("normpipe", "parse_us")
        self._convert_us = beam.metrics.Metrics.counter("normpipe", "convert_us")

    def process(self, element):
        path = element[0]
        try:
            yield from self._read_range(*element)
        except (OSError, EOFError) as exc:  # e.g. a truncated or corrupt gzip stream
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{path}: cannot read: {message[:200]}") from None

    def _read_range(self, path, start, end, quoted):
        emitted, as_bytes, block_size = 0, False, self._block_size
        whole = not quoted and 0 < end - start <= WHOLE_RANGE_MAX
        while True:
            stream, first = _open_range(path, start, end)
            if stream is None:  # a range with no line start in it
                return
            try:
                for batch in self._batches(stream, first, quoted, block_size, as_bytes, skip=emitted, whole=whole):
                    started = time.perf_counter()
                    outputs = self._finish(batch, path, first, emitted)
                    self._convert_us.inc(int((time.perf_counter() - started) * 1e6))
                    emitted += batch.num_rows
                    yield from outputs
                return
            except pa.ArrowInvalid as exc:
                header_unread = first == 0 and "Could not skip initial" in str(exc)
                if header_unread and _one_line(path, block_size):
                    return  # a header without a final newline: no rows
                if ("straddling" in str(exc) or header_unread) and block_size < MAX_BLOCK_SIZE:
                    block_size *= 4
                elif self._bad_values == "missing" and not as_bytes:
                    as_bytes = True
                else:
                    raise self._diagnose(path, start, end, quoted, block_size, exc) from None

    def _reader(self, stream, first, quoted, block_size, as_bytes, threads=True, whole=False):
        """open_csv's streaming reader; with `whole`, read_csv's Table of the
        whole stream (parsed on every core), as an iterator of batches."""
        kind = pa.binary() if as_bytes else pa.float64()
        read = pacsv.read_csv if whole else pacsv.open_csv
        result = read(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=self._columns,
                skip_rows=1 if first == 0 else 0,
                block_size=block_size,
                use_threads=threads,
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=quoted),
            convert_options=pacsv.ConvertOptions(
                column_types={**dict.fromkeys(self._numeric, kind), **{n: pa.binary() for n in self._strings}},
                include_columns=self._numeric + self._strings,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        return iter(result.to_batches()) if whole else result

    def _batches(self, stream, first, quoted, block_size, as_bytes, skip=0, whole=False):
        """The range's record batches, without its first `skip` rows."""
        started = time.perf_counter()
        try:
            # parses the first block (with `whole`, every block)
            reader = self._reader(stream, first, quoted, block_size, as_bytes, whole=whole)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):  # header only
                return
            raise
        self._parse_us.inc(int((time.perf_counter() - started) * 1e6))
        batches = iter(reader)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            self._parse_us.inc(int((time.perf_counter() - started) * 1e6))
            if batch is None:
                return
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            yield batch.slice(skip) if skip else batch
            skip = 0

    def _finish(self, batch, path, first, rows_before):
        """Canonical batch (+ bad-value counts) from a parsed batch."""
        columns, counts = [], {}
        offsets = pa.array(np.arange(batch.num_rows + 1, dtype=np.int32))
        for name, column in zip(self._numeric, batch.columns):
            fast = _finite_float_list(column, offsets)
            if fast is not None:
                columns.append(fast)
                continue
            values, bad = csv_values.lenient_float(column)
            if bad.any():
                index = int(np.flatnonzero(bad)[0])
                if self._bad_values == "error":
                    raise self._value_error(path, first, rows_before + index, name, column[index].as_py())
                counts[name] = int(bad.sum())
            columns.append(to_dense_list_column(values))
        for column in batch.columns[len(self._numeric):]:
            columns.append(to_text_list_column(column.combine_chunks() if hasattr(column, "combine_chunks") else column))
        self._rows.inc(batch.num_rows)
        outputs = [pa.RecordBatch.from_arrays(columns, self._numeric + self._strings)]
        if counts:
            outputs.append(beam.pvalue.TaggedOutput(BAD_VALUES_TAG, counts))
        return outputs

    def _value_error(self, path, first, row, name, value) -> UserError:
        line = csv_lines.record_line(path, first, row + (1 if first == 0 else 0))
        where = f"{path} line {line} column {self._labels.get(name, name)!r}"
        hint = "use --bad-values=missing to treat such values as missing"
        if isinstance(value, float) or csv_values.is_number_text(value):
            return UserError(f"{where}: infinite value {csv_values.show(value)} (use a finite number, "
                             f"or leave the cell empty for missing; or {hint})")
        return UserError(f"{where}: non-numeric value {csv_values.show(value)} in a numeric column ({hint})")

    def _diagnose(self, path, start, end, quoted, block_size, exc) -> UserError:
        """Re-reads the range slowly to name the exact line of a parse error."""
        stream, first = _open_range(path, start, end)
        try:
            rows_before = 0
            for batch in self._reader(stream, first, quoted, block_size, True, threads=False):
                for name, column in zip(self._numeric, batch.columns):
                    index = csv_values.first_bad(column) if self._bad_values == "error" else None
                    if index is not None:
                        return self._value_error(path, first, rows_before + index, name, column[index].as_py())
                rows_before += batch.num_rows
        except pa.ArrowInvalid as again:
            exc = again
        return parse_error(path, first, exc, len(self._columns))


def _one_line(path: str, limit: int) -> bool:
    """The (decompressed) file is at most `limit` bytes with no line break."""
    with csv_lines.open_bytes(path) as f:
        data = f.read(limit + 1)
    return len(data) <= limit and b"\n" not in data and b"\r" not in data


def parse_error(path: str, first: int, exc: Exception, expected=None) -> UserError:
    """The UserError for a pyarrow parse failure of the text from byte `first`.

    A row with the wrong number of fields is located with the csv module
    (pyarrow's own invalid-row callback fails on text that is not UTF-8).
    """
    message = (str(exc).strip().splitlines() or ["invalid CSV"])[0]
    if re.search(r"Expected \d+ columns, got \d+", message):
        found = csv_lines.find_ragged(path, first, expected)
        if found:
            line, want, got, text = found
            return UserError(f"{path} line {line}: expected {want} fields, got {got}: {csv_values.show(text, 80)}")
    if "straddling" in message:
        return UserError(f"{path}: a row is longer than {MAX_BLOCK_SIZE / (1 << 20):g} MB, or a quote is never closed")
    return UserError(f"{path}: cannot parse CSV: {message[:200]}")
