"""Comparison stage: per-batch errors against independent numpy computations."""

import numpy as np
import pytest

from normpipe.components import compare


def numpy_full(raw, method):
    if method == "zscore":
        return (raw - raw.mean(axis=0)) / raw.std(axis=0)
    return (raw - raw.min(axis=0)) / (raw.max(axis=0) - raw.min(axis=0))


def numpy_per_batch(raw, method, b):
    """The recipe's formulas, batch by batch, in float64 numpy."""
    out = []
    for start in range(0, len(raw), b):
        x = raw[start:start + b]
        with np.errstate(invalid="ignore", divide="ignore"):
            if method == "zscore":
                out.append((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-7))
            else:
                out.append((x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0)))
    return np.concatenate(out)


def make_source(raw, methods, chunk=97):
    refs = [numpy_full(raw, m).astype(np.float32) for m in methods]

    def batches():
        for start in range(0, len(raw), chunk):  # chunks not aligned to batches
            yield (raw[start:start + chunk], *(r[start:start + chunk] for r in refs))

    return batches


def full_of(raw):
    return {"mean": raw.mean(axis=0), "std": raw.std(axis=0), "min": raw.min(axis=0), "max": raw.max(axis=0)}


@pytest.fixture
def raw():
    rng = np.random.default_rng(3)
    n = 1000
    return np.stack([rng.normal(10, 3, n), 1.4e9 + rng.uniform(0, 1e8, n), rng.lognormal(0, 1, n)], axis=1)


@pytest.mark.parametrize("method", ["zscore", "minmax"])
@pytest.mark.parametrize("b", [1, 3, 8])
def test_vectorized_layer_call_equals_batch_by_batch(raw, method, b):
    x = raw[: (len(raw) // b) * b]
    got = compare.apply_per_batch(compare.LAYERS[method](), x, b)
    np.testing.assert_allclose(got, numpy_per_batch(x, method, b), rtol=1e-12, atol=1e-12, equal_nan=True)


def run(raw, methods=("zscore", "minmax"), sizes=(1, 2, 8, 32, 128, 1024)):
    options = compare.CompareOptions(batch_sizes=sizes, seed=5, chunk_rows=64, shuffle_buffer=4096, probe_draws=10)
    records, probes = compare.run_comparison(
        make_source(raw, list(methods)), list(methods), ["a", "b", "c"], full_of(raw), options
    )
    return {(r["feature"], r["method"], r["order"], r["batch_size"]): r for r in records}, probes


def test_batch_of_one_gives_nan_for_minmax_and_zero_for_zscore(raw):
    table, _ = run(raw, sizes=(1,))
    for j, name in enumerate("abc"):
        for order in compare.ORDERS:
            assert table[(name, "minmax", order, 1)]["nonfinite_fraction"] == 1.0
            z = table[(name, "zscore", order, 1)]
            assert z["nonfinite_fraction"] == 0.0
            # every per-batch z-score is 0, so the error is |full-dataset z|
            expected = np.abs(numpy_full(raw, "zscore")[:, j].astype(np.float32)).mean()
            assert z["mean_abs_error"] == pytest.approx(expected, rel=1e-6)


def test_errors_shrink_with_batch_size_and_vanish_for_one_batch(raw):
    table, _ = run(raw)
    for name in "abc":
        for method in ("zscore", "minmax"):
            errors = [table[(name, method, "shuffled", b)]["mean_abs_error"] for b in (2, 32, 1024)]
            assert errors[0] > errors[1] > errors[2], (name, method, errors)
            assert errors[2] < 1e-5  # 1024 >= 1000 rows: one batch is the whole dataset


def test_file_order_errors_equal_numpy_recipe(raw):
    table, _ = run(raw, sizes=(8, 32))
    for method in ("zscore", "minmax"):
        full = numpy_full(raw, method).astype(np.float32)
        for b in (8, 32):
            per_batch = numpy_per_batch(raw, method, b)
            err = np.abs(per_batch - full)
            for j, name in enumerate("abc"):
                record = table[(name, method, "file", b)]
                finite = np.isfinite(err[:, j])
                assert record["mean_abs_error"] == pytest.approx(err[finite, j].mean(), rel=1e-9)
                assert record["max_abs_error"] == pytest.approx(err[finite, j].max(), rel=1e-9)
                p99 = np.quantile(err[finite, j], 0.99)
                assert record["p99_abs_error"] == pytest.approx(p99, rel=0.05)
                assert record["num_values"] == len(raw)
                assert record["num_batches"] == -(-len(raw) // b)


def test_batch_statistics_spread(raw):
    table, _ = run(raw, methods=("zscore",), sizes=(1, 1000))
    one = table[("a", "zscore", "file", 1)]
    # a batch of one's mean is the row itself: spread of (x - mean)/std is 1
    assert one["batch_mean_spread"] == pytest.approx(1.0, rel=1e-9)
    whole = table[("a", "zscore", "file", 1000)]
    assert whole["batch_mean_spread"] == pytest.approx(0.0, abs=1e-9)


def test_probe_row_values_depend_on_batch_mates(raw):
    _, probes = run(raw, sizes=(1, 8))
    by_key = {(p["feature"], p["method"], p["batch_size"]): p for p in probes}
    z8 = by_key[("a", "zscore", 8)]
    assert z8["max"] - z8["min"] > 0.1  # different batch-mates, different values
    assert by_key[("a", "zscore", 1)]["min"] == by_key[("a", "zscore", 1)]["max"] == 0.0
    assert by_key[("a", "minmax", 1)]["nonfinite_draws"] == by_key[("a", "minmax", 1)]["draws"]


def _strict_json(document):
    """JSON as a strict parser reads it: NaN and Infinity are not JSON."""
    import json  # pylint: disable=import-outside-toplevel

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(json.dumps(document, allow_nan=True), parse_constant=refuse)


def test_all_missing_and_huge_columns_give_json_records():
    # all_missing: no present value (full statistics NaN, as compare.full_statistics
    # builds them from null); huge: +-1e308, whose std overflows float64.
    n = 40
    raw = np.stack([np.linspace(0.0, 1.0, n), np.full(n, np.nan), np.where(np.arange(n) % 2, 1e308, -1e308)], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        full = {"mean": np.array([raw[:, 0].mean(), 0.0, 0.0]), "std": np.array([raw[:, 0].std(), np.nan, np.nan]),
                "min": np.array([0.0, np.nan, -1e308]), "max": np.array([1.0, np.nan, 1e308])}
    refs = np.zeros_like(raw, dtype=np.float32)
    refs[:, 0] = ((raw[:, 0] - full["mean"][0]) / full["std"][0]).astype(np.float32)

    def batches():
        yield (raw, refs)

    options = compare.CompareOptions(batch_sizes=(1, 4, 64), seed=1, chunk_rows=16, shuffle_buffer=64, probe_draws=3)
    records, probes = compare.run_comparison(batches, ["zscore"], ["a", "empty", "huge"], full, options)
    parsed = _strict_json({"records": records, "probe": probes})
    for record in parsed["records"]:
        for key, value in record.items():
            assert value is None or not isinstance(value, float) or np.isfinite(value), (record["feature"], key)
    # the finite column's figures survive: batch of 64 >= 40 rows is the full dataset
    whole = [r for r in parsed["records"] if r["feature"] == "a" and r["batch_size"] == 64 and r["order"] == "file"]
    assert whole[0]["mean_abs_error"] < 1e-6


def test_probe_draws_are_capped_by_cells(raw):
    # 3 features: 100 draws of 1 row are 300 values, of 8 rows 2,400; a cap
    # of 240 values allows 80 and 10 draws; one of 48 allows 2 at batch size
    # 8, raised to the minimum, 3
    refs = [numpy_full(raw, "zscore").astype(np.float32)]
    options = compare.CompareOptions((1, 8), probe_cells=240, min_probe_draws=3)
    probes = compare.probe_row(raw, refs, ["zscore"], ["a", "b", "c"], options)
    assert {(p["batch_size"], p["draws"]) for p in probes} == {(1, 80), (8, 10)}
    options = compare.CompareOptions((8,), probe_cells=48, min_probe_draws=3)
    probes = compare.probe_row(raw, refs, ["zscore"], ["a", "b", "c"], options)
    assert {p["draws"] for p in probes} == {3}
    for p in probes:  # the range of what was drawn, around the full-dataset value
        assert p["nonfinite_draws"] == 0 and p["min"] < p["max"]
    assert compare.CompareOptions().probe_draws == 100


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_probe_outputs_are_the_recipe_on_each_batch(raw, method, monkeypatch):
    """The probe's vectorized layer calls give, for every draw, the first
    row of the recipe's formula on that batch alone (numpy float64), split
    over several calls when the draws exceed PROBE_CALL_CELLS."""
    rng = np.random.default_rng(3)
    for b in (1, 2, 8):
        batches = np.stack([rng.choice(len(raw), b, replace=False) for _ in range(7)])
        expected = np.stack([numpy_per_batch(raw[batch], method, b)[0] for batch in batches])
        for cells in (1 << 22, 2 * b * raw.shape[1]):  # one call; calls of two draws
            monkeypatch.setattr(compare, "PROBE_CALL_CELLS", cells)
            got = compare._probe_outputs(compare.LAYERS[method](), raw, batches)
            assert got.shape == (7, raw.shape[1])
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
            if method == "minmax" and b == 1:
                assert np.isnan(got).all()  # 0/0: the recipe's failure, kept
