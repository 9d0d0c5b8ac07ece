"""The numpy moments of `normpipe stats`: merges, edge cases and exactness
against exact rational arithmetic (Python's statistics module)."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from normpipe.components import moments
from normpipe.core import exact_float
from normpipe.core.errors import UserError
from tests.conftest import ROOT, TAXI_CSV, exact_stats, read_csv_float64


def summarize_batches(batches, centers, exponents=None):
    """Moments of each batch (a list of columns), merged left to right."""
    exponents = exponents or [0] * len(centers)
    total = moments.empty(len(centers))
    for columns in batches:
        total = moments.merge(total, moments.batch_moments(columns, centers, exponents))
    matrix = moments.statistics_matrix(total, centers, exponents)
    return moments.summarize(matrix, [f"f{i}" for i in range(len(centers))])


def check_exact(actual, values, rel):
    expected = exact_stats(values)
    assert (actual["count"], actual["missing"]) == (expected["count"], expected["missing"])
    assert actual["min"] == expected["min"] and actual["max"] == expected["max"]
    for key in ("mean", "std", "var"):
        assert actual[key] == pytest.approx(expected[key], rel=rel, abs=0), key


def test_large_offset_std_within_1e_15_of_exact():
    """The benchmark's offset column, 1e6 + N(0, 1), in uneven batches."""
    rng = np.random.default_rng(0)
    values = np.round(1e6 + rng.normal(0.0, 1.0, 200_000), 6)
    cuts = [0, 1, 7000, 65536, 150_001, values.size]
    batches = [[values[a:b]] for a, b in itertools.pairwise(cuts)]
    stats = summarize_batches(batches, [float(np.median(values[:1000]))])["features"]["f0"]
    check_exact(stats, values, rel=1e-15)


def test_merge_order_does_not_change_the_result_beyond_an_ulp():
    rng = np.random.default_rng(1)
    values = 1.4e9 + rng.integers(0, 100_000_000, 30_000).astype(np.float64)
    parts = np.array_split(values, 5)
    results = []
    for order in itertools.islice(itertools.permutations(range(5)), 8):
        results.append(summarize_batches([[parts[i]] for i in order], [1.45e9])["features"]["f0"])
    for r in results:
        check_exact(r, values, rel=1e-15)


@pytest.mark.parametrize(
    "name, values",
    [
        ("zero_variance", np.full(1000, 1.4e9)),
        ("single_row", np.array([-7.5])),
        ("batch_of_one", np.array([3.0, np.nan, 5.0, 9.0])),
        ("with_missing", np.array([np.nan, 1.0, 2.0, np.nan, 4.0])),
        ("subnormal", np.array([1e-310, 3e-310, 2e-310, 5e-324, np.nan])),
    ],
)
def test_edge_cases_match_exact_statistics(name, values):
    batches = [[values[i:i + 1]] for i in range(values.size)] if name == "batch_of_one" else [[values]]
    finite = values[np.isfinite(values)]
    center = float(np.median(finite))
    exponent = exact_float.choose_exponent(finite, center)  # as inspect_input chooses it
    assert (exponent != 0) == (name == "subnormal")
    stats = summarize_batches(batches, [center], [exponent])["features"]["f0"]
    check_exact(stats, values, rel=1e-15)
    if name == "zero_variance":
        assert stats["var"] == 0.0 and stats["std"] == 0.0


def test_all_missing_and_no_rows():
    stats = summarize_batches([[np.full(3, np.nan)]], [0.0])
    assert stats["num_examples"] == 3
    assert stats["features"]["f0"] == {"count": 0, "missing": 3, "mean": None, "var": None, "std": None,
                                       "min": None, "max": None}
    assert summarize_batches([], [0.0])["num_examples"] == 0


def test_overflowing_scaled_values_are_a_user_error():
    values = np.array([1e-310, 3e-310, 1.0])
    with pytest.raises(UserError, match=r"feature 'f0': 1 values are too far from the first rows' scale"):
        summarize_batches([[values]], [0.0], [1100])


@pytest.mark.slow
def test_stats_command_does_not_import_tensorflow(tmp_path):
    """`normpipe stats` computes in numpy: a whole run imports neither
    TensorFlow nor tf.Transform (seconds of start-up), and is still right."""
    code = (
        "import json, sys\n"
        "from normpipe.pipeline import cli\n"
        f"code = cli.main(['stats', '--input', {TAXI_CSV!r}, '--output-dir', {str(tmp_path)!r}])\n"
        "loaded = [m for m in ('tensorflow', 'tensorflow_transform', 'tfx_bsl', 'keras') if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'loaded': loaded}), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stderr.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}, out.stderr[-2000:]
    document = json.loads((tmp_path / "statistics.json").read_text())
    reference = read_csv_float64(TAXI_CSV, ["fare"])["fare"]
    check_exact(document["features"]["fare"], reference, rel=1e-12)
    assert "time: parse" in out.stderr and "analyze" in out.stderr
