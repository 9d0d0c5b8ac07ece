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

from components.errors import UserError


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
    """A binary file object positioned at byte `first` of the (decompressed) data."""
    if not is_local(path):
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

        return FileSystems.open(path)
    f = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")
    f.seek(first)
    return f


def record_line(path: str, first: int, record: int) -> int:
    """Physical line of the `record`-th (0-based) CSV record from byte `first`.

    Records are counted as pyarrow counts them: blank lines are skipped, and
    when `first` is 0 the header is record 0.
    """
    base = lines_before(path, first) if is_local(path) else 0
    previous_limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        with open_bytes(path, first) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
            reader, seen, line = csv.reader(text), 0, 0
            for row in reader:
                if row:
                    if seen == record:
                        return base + line + 1
                    seen += 1
                line = reader.line_num
    except (csv.Error, OSError, EOFError, UserError):
        pass
    finally:
        csv.field_size_limit(previous_limit)
    return base + record + 1  # best effort: one record per line
