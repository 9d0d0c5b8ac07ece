"""Property-based: on random tables, statistics and transform equal numpy float64.

Tables: 1..300 rows, 1..5 columns, each with an offset up to 1e12, a scale,
missing cells (none, some, most or all) and sometimes a constant value.
Each example runs a Beam pipeline, so the example counts are small.

The reference is computed from the same parsed values in exact rational
arithmetic and rounded once (tests/conftest.py exact_stats); the statistics
must equal it bit for bit, as every split of the rows gives the same bits
(plain numpy float64 would not do as a judge: its mean of 300 values near
1e12 is off by up to ~4e-4 std).
Transform outputs (float32) vs the normalization in exact rational
arithmetic: 2e-6 relative and absolute, as in test_transform.py.
"""

import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normpipe.components import preprocessing
from normpipe.io import ingest
from tests.components.test_statistics import analyze_numpy, analyze_tft
from tests.components.test_transform import read_transformed, run_transform
from tests.conftest import exact_normalize, exact_stats, read_csv_float64, write_csv

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def columns(draw, rows):
    offset = draw(st.sampled_from([0.0, -1.0, 1e3, 1e6, 1.4e9, -1e12, 1e12]) | st.floats(-1e12, 1e12))
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 1e3]))  # 0.0: a constant column
    base = draw(st.lists(st.floats(-1e3, 1e3), min_size=rows, max_size=rows))
    missing_rate = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    missing = draw(st.lists(st.floats(0, 1), min_size=rows, max_size=rows))
    values = offset + scale * np.array(base)
    values[np.array(missing) < missing_rate] = np.nan
    return values


@st.composite
def tables(draw):
    rows = draw(st.integers(1, 300))
    width = draw(st.integers(1, 5))
    return {f"c{j}": draw(columns(rows)) for j in range(width)}


def assert_close_to_reference(actual, values):
    expected = exact_stats(values)
    assert (actual["count"], actual["missing"]) == (expected["count"], expected["missing"])
    if not expected["count"]:
        assert all(actual[k] is None for k in ("mean", "var", "std", "min", "max"))
        return
    for key in ("mean", "var", "std", "min", "max"):
        assert actual[key] == expected[key], key


@pytest.mark.slow
@pytest.mark.parametrize("analyze", [analyze_tft, analyze_numpy], ids=["tft", "numpy"])
@SETTINGS
@given(table=tables())
def test_statistics_match_the_exact_reference_on_random_tables(analyze, table):
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        path = write_csv(tmp_path / "d.csv", table)
        spec = ingest.inspect_input(str(path), features=tuple(table))
        stats = analyze(tmp_path, spec, split_size=2000)  # several byte ranges when long
        reference = read_csv_float64(path, list(table))
        assert stats["num_examples"] == len(reference["c0"])
        for name in table:
            assert_close_to_reference(stats["features"][name], reference[name])


@pytest.mark.slow
@SETTINGS
@given(table=tables())
def test_transform_matches_the_reference_normalization_on_random_tables(table):
    table = {"row": np.arange(len(table["c0"]), dtype=np.float64), **table}  # aligns rows
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        path = write_csv(tmp_path / "d.csv", table)
        spec = ingest.inspect_input(str(path), features=tuple(table))
        transform_dir, _ = run_transform(tmp_path, spec)
        actual = read_transformed(tmp_path, transform_dir)
        raw = read_csv_float64(path, list(table))
        order = np.argsort(actual["row_01"], kind="stable")
        for name in table:
            for method in ("zscore", "minmax"):
                got = actual[name + preprocessing.SUFFIX[method]][order]
                expected = exact_normalize(raw[name], method).astype(np.float32)
                np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6, err_msg=f"{name} {method}")
