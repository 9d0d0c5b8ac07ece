"""Shared test helpers: data generation and independent numpy references."""

import csv
import decimal
import os
import socket
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

# The test process imports Beam, hence gRPC, and starts subprocesses: gRPC's
# fork support off, as normpipe's command line sets it (see
# normpipe/pipeline/cli.py and tests/test_fork_stress.py).
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"

# Comma-separated test id prefixes that must not be skipped (CI sets it where
# TFX and chromium are installed): a skip of one of them is reported as a failure.
NO_SKIP = tuple(p for p in os.environ.get("NORMPIPE_NO_SKIP", "").split(",") if p)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and item.nodeid.startswith(NO_SKIP):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but NORMPIPE_NO_SKIP requires it to run: {reason}"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_CSV = os.path.join(ROOT, "data", "chicago_taxi_15k.csv")


def write_csv(path, columns: dict, newline="\n"):
    """Writes float columns (NaN as an empty cell) with full float64 precision."""
    names = list(columns)
    n = len(next(iter(columns.values())))
    with open(path, "w", newline="") as f:
        f.write(",".join(names) + newline)
        for i in range(n):
            cells = []
            for name in names:
                v = columns[name][i]
                if isinstance(v, str):
                    cells.append(v)
                elif v is None or (isinstance(v, float) and np.isnan(v)):
                    cells.append("")
                else:
                    cells.append(repr(float(v)))
            f.write(",".join(cells) + newline)
    return path


def read_csv_float64(path, names):
    """Independent reference parse (Python csv module), float64, NaN = missing."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    out = {}
    for name in names:
        out[name] = np.array([float(r[name]) if r[name] not in ("", None) else np.nan for r in rows], np.float64)
    return out


def numpy_stats(values: np.ndarray) -> dict:
    present = values[~np.isnan(values)]
    stats = {"count": int(present.size), "missing": int(values.size - present.size)}
    if present.size:
        stats.update(
            mean=float(np.mean(present)),
            var=float(np.var(present)),
            std=float(np.std(present)),
            min=float(np.min(present)),
            max=float(np.max(present)),
        )
    return stats


def exact_stats(values: np.ndarray) -> dict:
    """Reference statistics in exact rational arithmetic (fractions), each
    rounded once to float64: mean, population variance (inf beyond float64)
    and std, the square root of the exact variance taken to 1,200 digits
    with decimal and then rounded (numpy's own float64 mean of 300 values
    near 1e12 is off by ~1e-3, which spoils a spread-1 variance)."""
    present = [Fraction(float(v)) for v in values if not np.isnan(v)]
    stats = {"count": len(present), "missing": len(values) - len(present)}
    if present:
        n = len(present)
        mean = sum(present) / n
        var = sum((v - mean) ** 2 for v in present) / n
        try:
            var_float = float(var)
        except OverflowError:
            var_float = float("inf")
        with decimal.localcontext(decimal.Context(prec=1200, Emin=-999999, Emax=999999)):
            std = float((decimal.Decimal(var.numerator) / decimal.Decimal(var.denominator)).sqrt())
        stats.update(mean=float(mean), var=var_float, std=std, min=float(min(present)), max=float(max(present)))
    return stats


def exact_normalize(values: np.ndarray, method: str) -> np.ndarray:
    """The project's normalization in exact rational arithmetic, rounded once:
    missing imputed with the mean, zscore (x - mean) / std, minmax (x - min) /
    (max - min), 0.0 when the scale is 0 or nothing is present."""
    present = [Fraction(float(v)) for v in values if not np.isnan(v)]
    if not present:
        return np.zeros_like(values)
    mean = sum(present) / len(present)
    if method == "zscore":
        offset, scale = mean, Fraction(exact_stats(values)["std"])
    else:
        offset, scale = min(present), max(present) - min(present)
    if scale == 0:
        return np.zeros_like(values)
    return np.array([float(((mean if np.isnan(v) else Fraction(float(v))) - offset) / scale) for v in values])


def assert_stats_close(actual: dict, expected: dict, rel=1e-9, std_rel=1e-7):
    assert actual["count"] == expected["count"]
    assert actual["missing"] == expected["missing"]
    if not expected["count"]:
        assert all(actual[k] is None for k in ("mean", "var", "std", "min", "max"))
        return
    for key in ("mean", "min", "max"):
        assert actual[key] == pytest.approx(expected[key], rel=rel, abs=1e-300), key
    scale = max(abs(expected["mean"]), expected["std"])
    # A variance of exactly 0 must come out as 0; otherwise compare relatively.
    for key, tol in (("var", rel), ("std", std_rel)):
        if expected[key] == 0:
            assert actual[key] <= 1e-15 * scale, key
        else:
            assert actual[key] == pytest.approx(expected[key], rel=tol), key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def assert_user_error(result, expected: str) -> None:
    """Exit 2 with exactly one `normpipe: error:` line, holding `expected`, and no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("normpipe: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def run_cli(args, timeout=600, env=None):
    """Runs the installed console script as a user would; returns CompletedProcess."""
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def mixed_data():
    """Eight features of mixed scales with missing cells, seeded."""
    rng = np.random.default_rng(7)
    n = 5000
    cols = {
        "offset_1e6": 1e6 + rng.normal(0, 1e-2, n),
        "timestamp": np.round(1.4e9 + rng.uniform(0, 1.3e8, n)),
        "normal": rng.normal(0, 1, n),
        "small": rng.normal(0, 1e-3, n),
        "lognormal": rng.lognormal(0, 2, n),
        "ints": rng.integers(-50, 50, n).astype(np.float64),
        "negative": -rng.uniform(1e3, 1e4, n),
        "sparse": np.where(rng.random(n) < 0.8, np.nan, rng.normal(5, 2, n)),
    }
    for name in ("normal", "lognormal", "ints"):
        cols[name][rng.random(n) < 0.05] = np.nan
    return cols
