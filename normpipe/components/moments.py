"""Exact float64 feature statistics in numpy, merged in Beam, without TensorFlow.

`normpipe stats` computes, for each feature (float64, missing as NaN):

  count    number of present (non-NaN) values
  missing  number of NaN values
  mean     sum(x) / count over present values
  var      population variance, ddof=0: sum((x - mean)^2) / count
  min/max  over present values

Each record batch gives, per feature, with c the feature's center (its
sample median, `InputSpec.centers`) and k its power-of-two exponent
(`exact_float.choose_exponent`):

  d = x * 2**k - c                  (np.ldexp: exact for a normal result)
  n, mean_d = sum(d) / n, M2 = sum((d - mean_d)**2)

with numpy's pairwise summation (rounding error ~log2(n) ulp, not n).
Batches are merged with Chan, Golub and LeVeque's update

  n = na + nb, delta = mb - ma, mean = ma + delta * nb / n,
  M2 = M2a + M2b + delta**2 * na * nb / n

in a Beam CombineFn, so the merge runs on any runner and in any order.
Centered values are near 0, so neither the sums nor delta lose digits to a
large offset (values near 1e6 with spread 1 keep ~1e-16 relative accuracy
in std). numpy does not flush subnormal floats to zero, unlike TensorFlow's
kernels (see exact_float.py), and min and max are taken on the raw values.

The result has the layout of the tf.Transform analysis
(`statistics.FIELDS`, one column per feature) and `summarize` turns it into
statistics.json's figures, so `normpipe stats` and the transform graph report
the same quantities the same way.
"""

import json
import math
import time
from functools import reduce
from typing import NamedTuple, Sequence

import apache_beam as beam
import numpy as np

from normpipe.core.errors import UserError

# mean and var are of x * 2**exponent; min and max of x itself.
FIELDS = ("count", "missing", "mean", "var", "min", "max", "exponent", "overflow")


class Moments(NamedTuple):
    """Per-feature partial statistics of some rows (numpy arrays of length F).

    `mean` and `m2` are of the centered scaled values d = x * 2**k - c.
    """

    count: np.ndarray
    missing: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray
    overflow: np.ndarray


def empty(width: int) -> Moments:
    """The moments of no rows."""
    zeros = np.zeros(width, np.int64)
    return Moments(zeros, zeros.copy(), np.zeros(width), np.zeros(width), np.full(width, np.inf),
                   np.full(width, -np.inf), zeros.copy())


def column_moments(values: np.ndarray, center: float, exponent: int):
    """(count, missing, mean_d, M2, min, max, overflow) of one float64 column."""
    present = ~np.isnan(values)
    count = int(np.count_nonzero(present))
    missing = values.size - count
    if count < values.size:
        values = values[present]
    if not count:
        return 0, missing, 0.0, 0.0, np.inf, -np.inf, 0
    with np.errstate(over="ignore", invalid="ignore"):
        d = (np.ldexp(values, exponent) if exponent else values) - center
        mean = float(np.sum(d)) / count
        r = d - mean
        m2 = float(np.sum(r * r))
    overflow = 0
    if not math.isfinite(m2):
        with np.errstate(over="ignore", invalid="ignore"):
            overflow = int(np.count_nonzero(np.isfinite(values) & ~np.isfinite(d * d)))
    return count, missing, mean, m2, float(np.min(values)), float(np.max(values)), overflow


def batch_moments(columns: Sequence[np.ndarray], centers, exponents) -> Moments:
    """The Moments of one batch: one float64 array per feature, missing as NaN."""
    scaled_centers = np.ldexp(np.asarray(centers, np.float64), np.asarray(exponents, np.int64))
    rows = [column_moments(v, c, int(k)) for v, c, k in zip(columns, scaled_centers, exponents)]
    fields = list(zip(*rows))
    ints = (np.int64, np.int64, np.float64, np.float64, np.float64, np.float64, np.int64)
    return Moments(*(np.asarray(f, t) for f, t in zip(fields, ints)))


def merge(a: Moments, b: Moments) -> Moments:
    """The Moments of the rows of `a` and `b` together (Chan et al.)."""
    n = a.count + b.count
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        share = np.where(n > 0, b.count / np.maximum(n, 1), 0.0)
        delta = b.mean - a.mean
        mean = np.where(b.count == n, b.mean, a.mean + delta * share)
        m2 = a.m2 + b.m2 + delta * delta * (a.count * share)
    return Moments(n, a.missing + b.missing, mean, m2, np.fmin(a.low, b.low), np.fmax(a.high, b.high),
                   a.overflow + b.overflow)


def statistics_matrix(moments: Moments, centers, exponents) -> np.ndarray:
    """The FIELDS x F float64 matrix, as the tf.Transform analysis lays it out."""
    exponents = np.asarray(exponents, np.int64)
    center = np.ldexp(np.asarray(centers, np.float64), exponents)
    count = moments.count
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(count > 0, moments.m2 / np.maximum(count, 1), 0.0)
    mean = np.where(count > 0, center + moments.mean, 0.0)
    return np.stack([count.astype(np.float64), moments.missing.astype(np.float64), mean, var, moments.low,
                     moments.high, exponents.astype(np.float64), moments.overflow.astype(np.float64)])


def summarize(matrix: np.ndarray, features) -> dict:
    """{"num_examples": N, "features": {name: {count, missing, mean, var, std,
    min, max}}} from a FIELDS x F matrix: population variance (ddof=0), None
    where a feature has no present value (var None beyond float64, std >
    1.3e154). Raises UserError for a feature whose scaled values overflowed."""
    result, num_examples = {}, 0
    for column, name in enumerate(features):
        stats = dict(zip(FIELDS, (float(v) for v in matrix[:, column])))
        if stats["overflow"]:
            raise UserError(
                f"feature {name!r}: {int(stats['overflow'])} values are too far from the first rows' "
                f"scale (up to {stats['max']:.3g}) for float64 statistics"
            )
        count, missing = int(stats["count"]), int(stats["missing"])
        num_examples = count + missing
        result[name] = {"count": count, "missing": missing, **unscaled(stats, count)}
    return {"num_examples": num_examples, "features": result}


def unscaled(stats: dict, count: int) -> dict:
    """mean/var/std/min/max of the raw values, from statistics of x * 2**k."""
    if not count:
        return {"mean": None, "var": None, "std": None, "min": None, "max": None}
    k = -int(stats["exponent"])
    scaled_var = stats["var"] if stats["var"] > 0 else 0.0
    with np.errstate(over="ignore"):
        var = float(np.ldexp(scaled_var, 2 * k))
    return {
        "mean": float(np.ldexp(stats["mean"], k)),
        "var": var if math.isfinite(var) else None,  # beyond float64 only when std > 1.3e154
        "std": float(np.ldexp(math.sqrt(scaled_var), k)),
        "min": stats["min"],
        "max": stats["max"],
    }


class MergeMoments(beam.CombineFn):
    """Merges per-batch Moments of `width` features into one (empty input: no rows)."""

    def __init__(self, width: int):
        super().__init__()
        self._width = width

    def create_accumulator(self):
        return empty(self._width)

    def add_input(self, mutable_accumulator, element):
        return merge(mutable_accumulator, element)

    def merge_accumulators(self, accumulators):
        return reduce(merge, accumulators)

    def extract_output(self, accumulator):
        return accumulator


class BatchMoments(beam.DoFn):
    """Canonical record batch -> its Moments over `features`; the time spent
    is the Beam counter normpipe/analyze_us (microseconds, all workers)."""

    def __init__(self, features, centers, exponents):
        super().__init__()
        self._features = tuple(features)
        self._centers = tuple(centers) if centers else (0.0,) * len(self._features)
        self._exponents = tuple(exponents) if exponents else (0,) * len(self._features)
        self._analyze_us = beam.metrics.Metrics.counter("normpipe", "analyze_us")

    def process(self, batch):
        start = time.perf_counter()
        position = {name: i for i, name in enumerate(batch.schema.names)}
        columns = [batch.column(position[n]).flatten().to_numpy(zero_copy_only=False) for n in self._features]
        yield batch_moments(columns, self._centers, self._exponents)
        self._analyze_us.inc(int((time.perf_counter() - start) * 1e6))


def write_matrix(moments: Moments, path: str, centers, exponents) -> None:
    """Writes the statistics matrix of `moments` to `path` as JSON (floats round-trip exactly)."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    matrix = statistics_matrix(moments, centers, exponents)
    with FileSystems.create(path) as f:
        f.write(json.dumps(matrix.tolist()).encode("utf-8"))


def read_matrix(path: str) -> np.ndarray:
    """The matrix `write_matrix` wrote."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    with FileSystems.open(path) as f:
        return np.asarray(json.loads(f.read().decode("utf-8")), np.float64)


class ComputeMoments(beam.PTransform):
    """Canonical record batches -> the statistics matrix (FIELDS x F) written
    to `path` as JSON: per-batch moments in numpy, merged by a CombineFn."""

    def __init__(self, features, path: str, centers=None, exponents=None):
        super().__init__()
        self._features = tuple(features)
        width = len(self._features)
        self._centers = tuple(centers) if centers else (0.0,) * width
        self._exponents = tuple(int(k) for k in exponents) if exponents else (0,) * width
        self._path = path

    def expand(self, batches):
        return (
            batches
            | "BatchMoments" >> beam.ParDo(BatchMoments(self._features, self._centers, self._exponents))
            | "MergeMoments" >> beam.CombineGlobally(MergeMoments(len(self._features)))
            | "WriteMatrix" >> beam.Map(write_matrix, self._path, self._centers, self._exponents)
        )
