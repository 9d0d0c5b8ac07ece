"""Line numbers for CSV error messages.

pyarrow counts records, not lines: it skips blank lines and a quoted field
may hold newlines. An error message names the physical line (1-based, the
header is line 1), found by re-reading the text with Python's csv module.
That is slow, so it happens only once an error is certain.
"""

import csv
import gzip
import io
import mmap
import sys

from normpipe.core.errors import UserError


def is_gzip(path: str) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def is_local(path: str) -> bool:
    return "://" not in path


def lines_before(path: str, offset: int) -> int:
    """Newlines in the bytes before `offset` of an uncompressed local file."""
    if offset <= 0:
        return 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return buf[:offset].count(b"\n")


def open_bytes(path: str, first: int = 0):
    """A binary file object positioned at byte `first` of the (decompressed) data.

    A local file starting with the gzip magic bytes goes through Python's
    gzip, which fails on a stream cut short or a bad CRC (Beam's reader stops
    silently); a remote file is decompressed by Beam, chosen by its extension.
    """
    if not is_local(path):
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

        return FileSystems.open(path)
    f = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    f.seek(first)
    return f


def _records(path: str, first: int):
    """Yields (physical line, fields) for each non-blank CSV record from byte `first`.

    Undecodable bytes are replaced (delimiters are ASCII, so the structure
    is unchanged). Stops quietly where the csv module or the file gives up.
    """
    base = lines_before(path, first) if is_local(path) else 0
    previous_limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        with open_bytes(path, first) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            reader, line = csv.reader(text), 0
            for row in reader:
                if row:
                    yield base + line + 1, row
                line = reader.line_num
    except (csv.Error, OSError, EOFError, UserError):
        return
    finally:
        csv.field_size_limit(previous_limit)


def record_line(path: str, first: int, record: int) -> int:
    """Physical line of the `record`-th (0-based) CSV record from byte `first`.

    Records are counted as pyarrow counts them: blank lines are skipped, and
    when `first` is 0 the header is record 0.
    """
    for index, (line, _) in enumerate(_records(path, first)):
        if index == record:
            return line
    return (lines_before(path, first) if is_local(path) else 0) + record + 1  # best effort


def find_ragged(path: str, first: int, expected=None):
    """(line, expected, got, text) of the first record from byte `first` whose
    field count differs from `expected` (default: the first record's), or None."""
    for line, row in _records(path, first):
        if expected is None:
            expected = len(row)
        elif len(row) != expected:
            return line, expected, len(row), ",".join(row)
    return None
