"""The exact statistics of `normpipe stats` and of the transform graph
(components/moments.py, core/exact_sums.py): the same bits however the rows
are split, ordered and merged, equal to a reference computed in exact
rational arithmetic (fractions) and rounded once."""

import itertools
import json
import math
import pickle
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normpipe.components import moments
from normpipe.core import exact_sums
from normpipe.core.errors import UserError
from tests.conftest import ROOT, TAXI_CSV, exact_stats, read_csv_float64

MAX = np.finfo(np.float64).max
TINY = 5e-324


def matrix_of(parts, width=None):
    """The statistics matrix of float64 [F, n] parts, each added to its own
    accumulator, pickled (as a runner's shuffle would) and merged in order."""
    width = width or parts[0].shape[0]
    total = exact_sums.Accumulator(width)
    for part in parts:
        total.merge(pickle.loads(pickle.dumps(exact_sums.Accumulator(width).add(part))))
    return moments.statistics_matrix(total)


def summary(matrix, width):
    return moments.summarize(matrix, [f"f{i}" for i in range(width)])


def expected_figures(values):
    """exact_stats in statistics.json's form: var None beyond float64."""
    expected = exact_stats(values)
    if expected["count"] and math.isinf(expected["var"]):
        expected["var"] = None
    if not expected["count"]:
        expected.update(dict.fromkeys(("mean", "var", "std", "min", "max")))
    return expected


def assert_same_bits(a, b):
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64))


@st.composite
def adversarial_columns(draw):
    """One float64 column: large offsets, catastrophic cancellation,
    subnormals, +-max float, mixed signs and exponents, missing values."""
    rows = draw(st.integers(0, 400))
    kind = draw(st.sampled_from(["any", "offset", "cancel", "subnormal", "extreme", "magnitudes", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "any":
        values = np.array(draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=rows,
                                        max_size=rows)), np.float64)
    elif kind == "offset":
        offset = draw(st.sampled_from([1e6, -1e12, 1.4e9, 2.0**60, 1e300]))
        values = offset + rng.normal(0, 1, rows) * offset * 2.0**-40
    elif kind == "cancel":
        values = rng.integers(-9, 10, rows).astype(np.float64)
        values[rng.random(rows) < 0.1] = 1e16
        values[rng.random(rows) < 0.1] = -1e16
    elif kind == "subnormal":
        values = rng.integers(-2**40, 2**40, rows).astype(np.float64) * TINY
    elif kind == "extreme":
        values = rng.choice([MAX, -MAX, 1.7e308, -1.7e308, 0.0, -0.0], rows)
    elif kind == "magnitudes":
        values = np.exp(rng.uniform(-700, 700, rows)) * rng.choice([-1.0, 1.0], rows)
    else:
        values = np.full(rows, draw(st.floats(allow_nan=False, allow_infinity=False)))
    values[rng.random(rows) < draw(st.sampled_from([0.0, 0.2, 1.0]))] = np.nan
    return values


@st.composite
def splits(draw, rows):
    """Random cut points of `rows` rows (empty parts allowed)."""
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=8)))
    return [0, *cuts, rows]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(columns=st.lists(adversarial_columns(), min_size=1, max_size=3), data=st.data())
def test_any_split_and_merge_tree_gives_the_exact_bits(columns, data):
    rows = min(len(c) for c in columns)
    values = np.stack([c[:rows] for c in columns]) if rows else np.empty((len(columns), 0))
    width = values.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on any of these values
        whole = matrix_of([values])
        cuts = data.draw(splits(rows))
        parts = [values[:, a:b] for a, b in itertools.pairwise(cuts)]
        # a random merge tree: partial accumulators (files, workers), merged in a random order
        accumulators = []
        for part in parts:
            if accumulators and data.draw(st.booleans()):
                accumulators[-1].add(part)  # several batches into one accumulator
            else:
                accumulators.append(exact_sums.Accumulator(width).add(part))
        seed = data.draw(st.integers(0, 1000))
        random.Random(seed).shuffle(accumulators)
        while len(accumulators) > 1:
            i = random.Random(seed + len(accumulators)).randrange(len(accumulators) - 1)
            merged = pickle.loads(pickle.dumps(accumulators.pop(i))).merge(accumulators.pop(i))
            accumulators.insert(i, merged)
        split = moments.statistics_matrix(accumulators[0] if accumulators else exact_sums.Accumulator(width))
        figures = summary(whole, width)["features"]
    assert_same_bits(split, whole)
    for f in range(width):
        assert figures[f"f{f}"] == expected_figures(values[f]), f


def test_max_float_column_gives_mean_and_std():
    values = np.array([[1.7e308, -1.7e308, 1.7e308, 1.7e308, np.nan]])
    figures = summary(matrix_of([values]), 1)["features"]["f0"]
    assert figures == expected_figures(values[0])
    assert figures["var"] is None and figures["std"] == pytest.approx(1.7e308 / 2 * math.sqrt(3), rel=1e-15)
    assert figures["mean"] == 1.7e308 / 2


def test_large_offset_is_exact():
    """The benchmark's offset column, 1e6 + N(0, 1), in uneven parts."""
    rng = np.random.default_rng(0)
    values = np.round(1e6 + rng.normal(0.0, 1.0, 200_000), 6)[np.newaxis, :]
    cuts = [0, 1, 7000, 65536, 150_001, values.shape[1]]
    matrix = matrix_of([values[:, a:b] for a, b in itertools.pairwise(cuts)])
    assert summary(matrix, 1)["features"]["f0"] == expected_figures(values[0])


def test_negative_zero_sorts_below_zero_in_any_order():
    for values in ([0.0, -0.0], [-0.0, 0.0]):
        figures = summary(matrix_of([np.array([values])]), 1)["features"]["f0"]
        assert math.copysign(1, figures["min"]) == -1 and math.copysign(1, figures["max"]) == 1


def test_all_missing_and_no_rows():
    figures = summary(matrix_of([np.full((1, 3), np.nan)]), 1)
    assert figures == {"num_examples": 3, "features": {"f0": {"count": 0, "missing": 3, "mean": None, "var": None,
                                                              "std": None, "min": None, "max": None}}}
    assert summary(moments.statistics_matrix(exact_sums.Accumulator(1)), 1)["num_examples"] == 0


def test_infinite_values_are_a_user_error():
    with pytest.raises(UserError, match=r"feature 'f0': 2 infinite values"):
        summary(matrix_of([np.array([[1.0, np.inf, -np.inf]])]), 1)


def test_bins_fold_into_integers_before_they_could_overflow(monkeypatch):
    """A small FLUSH_EVERY folds the bins between adds: the same bits."""
    rng = np.random.default_rng(5)
    values = np.stack([rng.normal(0, 1, 5000) * (MAX / 8), rng.normal(1e6, 1, 5000)])
    expected = matrix_of([values])
    monkeypatch.setattr(exact_sums, "FLUSH_EVERY", 7)
    accumulator = exact_sums.Accumulator(2)
    for start in range(0, 5000, 3):
        accumulator.add(values[:, start:start + 3])
    assert_same_bits(moments.statistics_matrix(accumulator), expected)


def test_a_pickled_accumulator_is_small():
    """What crosses a runner's shuffle: the folded integers, not the bins."""
    accumulator = exact_sums.Accumulator(10).add(np.random.default_rng(0).normal(0, 1, (10, 2000)))
    assert len(pickle.dumps(accumulator)) < 10 * 1500


def test_sqrt_ratio_is_correctly_rounded_near_halfway():
    """Squares of 53-bit integers and their neighbours: exact roots exactly,
    others rounded to nearest, against decimal at 100 digits."""
    import decimal

    rng = np.random.default_rng(9)
    with decimal.localcontext(decimal.Context(prec=100)):
        for m in rng.integers(2**52, 2**53, 200).tolist():
            for numerator in (m * m, m * m + 1, m * m - 1, m * m + m, 4 * m * m + 4 * m + 1):
                expected = float(decimal.Decimal(numerator).sqrt())
                assert exact_sums.sqrt_ratio(numerator, 1) == expected, numerator
                assert exact_sums.sqrt_ratio(numerator, 4) == expected / 2, numerator


@pytest.mark.slow
def test_stats_command_does_not_import_tensorflow(tmp_path):
    """`normpipe stats` computes without TensorFlow: a whole run imports
    neither TensorFlow nor tf.Transform (seconds of start-up), and is exact."""
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
    fare = {k: v for k, v in document["features"]["fare"].items() if k != "bad_values"}
    assert fare == expected_figures(reference)
    assert "time: parse" in out.stderr and "analyze" in out.stderr
