"""What counts as a number in a CSV cell, and the lenient conversion.

pyarrow's typed CSV reader is the fast path. When a block of a numeric
column fails to convert, the range is re-read with those columns as raw
bytes and converted here, value by value, with the same rules:

  number   optional spaces/tabs, sign, digits with an optional point and
           exponent (`1`, `-.5`, `1e5`, `+2.`), or inf/infinity/nan in any
           case; `NUMBER` matches exactly what pyarrow's float parser takes
  missing  an empty cell and pyarrow's null spellings (`nan`, `NA`, `NULL`,
           `N/A`, ...), read as null by both paths
  bad      anything else (`abc`, `1,5`, `$3`, `1_000`, bytes that are not
           UTF-8) and any infinite value (`inf`, `1e400`)
"""

import re
from typing import Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NUMBER_BODY = r"[ \t]*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))[ \t]*"
NUMBER = "^" + _NUMBER_BODY + "$"


def lenient_float(column: pa.Array) -> Tuple[pa.Array, np.ndarray]:
    """Bytes or strings -> (float64 values, bad mask); bad values become null.

    Only cells matching `NUMBER` are cast (they are ASCII, hence valid UTF-8),
    so no cell can make the conversion itself fail.
    """
    if not (pa.types.is_binary(column.type) or pa.types.is_string(column.type)):
        return _drop_infinite(column.cast(pa.float64(), safe=False))  # ints beyond 2**53 round
    numeric = pc.fill_null(pc.match_substring_regex(column, NUMBER), True)
    candidates = pc.if_else(numeric, column, pa.scalar(None, column.type))
    text = pc.utf8_trim(pc.cast(candidates, pa.string()), " \t")
    values, infinite = _drop_infinite(pc.cast(text, pa.float64()))
    bad = np.logical_not(numeric.to_numpy(zero_copy_only=False)) | infinite
    return values, bad


def _drop_infinite(values: pa.Array) -> Tuple[pa.Array, np.ndarray]:
    """float64 values with +-inf replaced by null, and the mask of those."""
    infinite = pc.fill_null(pc.is_inf(values), False)
    mask = infinite.to_numpy(zero_copy_only=False)
    if mask.any():
        values = pc.if_else(infinite, pa.scalar(None, pa.float64()), values)
    return values, mask


def first_bad(column: pa.Array):
    """Index of the first bad value of a column (see `lenient_float`), or None."""
    _, bad = lenient_float(column)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def is_number_text(value) -> bool:
    """True when a cell's text matches `NUMBER` (a bad one is then infinite)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return isinstance(value, str) and re.fullmatch(_NUMBER_BODY, value) is not None


def show(value, limit: int = 60) -> str:
    """A cell value for an error message: quoted, escaped, shortened."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    if not isinstance(value, str):
        return repr(value)
    return repr(value if len(value) <= limit else value[:limit] + "...")
