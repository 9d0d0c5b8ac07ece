"""csv_values: the lenient conversion agrees with pyarrow's typed CSV reader."""

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from normpipe.io import csv_values

_ALPHABET = "0123456789+-.eE \tinfatyINFATYx_$,\x0b"


def typed_read(cell: str):
    """What pyarrow's fast typed path makes of one cell: a float, None (null) or 'bad'."""
    data = b"a\n" + cell.encode("utf-8") + b"\n"
    try:
        table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(column_types={"a": pa.float64()}))
    except pa.ArrowInvalid:
        return "bad"
    return table.column(0)[0].as_py() if table.num_rows else None


def lenient_read(cell: str):
    values, bad = csv_values.lenient_float(pa.array([cell.encode("utf-8")], pa.binary()))
    value = values[0].as_py()
    return "bad" if bad[0] else value


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, min_size=1, max_size=7).filter(lambda c: "," not in c and c.strip(" \t\x0b")))
@example("1e5")
@example(" -.5 ")
@example("Infinity")
@example("+nan")
@example("1_000")
@example("5.")
@example("1e400")
def test_lenient_path_agrees_with_the_typed_path(cell):
    typed, lenient = typed_read(cell), lenient_read(cell)
    if typed is None:  # a null spelling: both paths read it as missing before conversion
        return
    if typed == "bad" or (isinstance(typed, float) and math.isinf(typed)):
        assert lenient == "bad", cell
    elif math.isnan(typed):
        assert lenient is not None and math.isnan(lenient), cell
    else:
        assert lenient == typed, cell


def test_bad_values_become_null_and_are_flagged():
    column = pa.array([b"1.5", b"abc", None, b"1,5", b"$3", b"-inf", b"\xff\xfe", b" 2 ", b"nan"], pa.binary())
    values, bad = csv_values.lenient_float(column)
    np.testing.assert_array_equal(bad, [False, True, False, True, True, True, True, False, False])
    out = values.to_pylist()
    assert out[0] == 1.5 and out[7] == 2.0 and math.isnan(out[8])
    assert all(out[i] is None for i in (1, 2, 3, 4, 5, 6))
    assert csv_values.first_bad(column) == 1


def test_float_columns_only_drop_infinite_values():
    values, bad = csv_values.lenient_float(pa.array([1.0, np.inf, None, -np.inf]))
    np.testing.assert_array_equal(bad, [False, True, False, True])
    assert values.to_pylist() == [1.0, None, None, None]


@pytest.mark.parametrize("value, shown", [(b"\xffa", "'\\\\xffa'"), ("x" * 100, "'" + "x" * 60 + "...'"), (float("inf"), "inf")])
def test_show(value, shown):
    assert csv_values.show(value) == shown
