"""Exact, order-free feature statistics, merged in Beam, without TensorFlow.

For each numeric feature (float64, missing as NaN):

  count    number of present (non-NaN, finite) values
  missing  number of NaN values
  mean     S1 / n, the exact value rounded once to float64
  var      (n S2 - S1**2) / n**2, population variance (ddof=0), rounded once
  std      the correctly rounded square root of that exact variance
  min/max  over present values, exact (-0.0 below +0.0)

with S1 and S2 the exact sums of the values and of their squares, as
integers (core/exact_sums.py). Rounding happens once, at the end, in
CPython's correctly rounded integer division (round half to even), so the
statistics carry the same bits whatever the partitioning, order, batch size,
number of workers, runner or input format of the same float64 values. A
variance beyond float64's range (std > 1.34e154) is reported as such (inf in
the matrix, null in statistics.json) while its std is still given.

`ExactStatistics` is a Beam CombineFn over float64 [F, n] arrays (or record
batches, with `features`); its accumulators merge by integer addition. The
same CombineFn computes the statistics inside the tf.Transform graph
(statistics.py, through tft.experimental.ptransform_analyzer), so
`normpipe stats`, statistics.json written by `transform`, and the graph's
constants are the same numbers.

The result is a FIELDS x F float64 matrix; `summarize` turns it into
statistics.json's figures.
"""

import json
import math
import time
from functools import reduce

import apache_beam as beam
import numpy as np

from normpipe.core import exact_sums
from normpipe.core.errors import UserError

# mean_low: (exact mean - mean) rounded to float64, so that mean + mean_low
# carries the exact mean to ~106 bits for normalizing values near a large
# offset (preprocessing.normalize_matrix). infinite: values left out.
FIELDS = ("count", "missing", "mean", "var", "std", "min", "max", "mean_low", "infinite")
_UNITS = 1074  # S1 is in units of 2**-1074, S2 of 2**-2148


def _scaled_integer(value: float) -> int:
    """value * 2**1074 as an integer (exact for every finite float64)."""
    numerator, denominator = value.as_integer_ratio()
    return numerator * ((1 << _UNITS) // denominator)


def feature_statistics(count: int, s1: int, s2: int):
    """(mean, var, std, mean_low) of `count` values whose exact sums are s1
    (units 2**-1074) and s2 (units 2**-2148); NaN for no value."""
    if count == 0:
        return math.nan, math.nan, math.nan, math.nan
    denominator = count << _UNITS
    mean = exact_sums.divide(s1, denominator)
    mean_low = exact_sums.divide(s1 - count * _scaled_integer(mean), denominator)
    spread = count * s2 - s1 * s1  # n**2 var, in units of 2**-2148; >= 0 exactly
    scale = (count * count) << (2 * _UNITS)
    return mean, exact_sums.divide(spread, scale), exact_sums.sqrt_ratio(spread, scale), mean_low


def statistics_matrix(accumulator: exact_sums.Accumulator) -> np.ndarray:
    """The FIELDS x F float64 matrix of an accumulator."""
    accumulator.flush()
    low, high = exact_sums.from_key(accumulator.keys[:, 0]), exact_sums.from_key(accumulator.keys[:, 1])
    columns = []
    for f in range(accumulator.width):
        count, missing, infinite = (int(v) for v in accumulator.counts[f])
        mean, var, std, mean_low = feature_statistics(count, accumulator.sums[f], accumulator.squares[f])
        lowest, highest = (float(low[f]), float(high[f])) if count else (math.nan, math.nan)
        columns.append([count, missing, mean, var, std, lowest, highest, mean_low, infinite])
    return np.asarray(columns, np.float64).reshape(accumulator.width, len(FIELDS)).T.copy()


def summarize(matrix: np.ndarray, features) -> dict:
    """{"num_examples": N, "features": {name: {count, missing, mean, var, std,
    min, max}}} from a FIELDS x F matrix: None where a feature has no present
    value, var None beyond float64 (std > 1.34e154). Raises UserError for a
    feature holding infinite values."""
    result, num_examples = {}, 0
    for column, name in enumerate(features):
        stats = dict(zip(FIELDS, (float(v) for v in matrix[:, column])))
        count, missing, infinite = int(stats["count"]), int(stats["missing"]), int(stats["infinite"])
        if infinite:
            raise UserError(f"feature {name!r}: {infinite} infinite values; statistics take finite values "
                            "(a missing value is NaN)")
        num_examples = count + missing
        figures = {key: (stats[key] if count else None) for key in ("mean", "var", "std", "min", "max")}
        if count and math.isinf(stats["var"]):
            figures["var"] = None  # beyond float64; std is still given
        result[name] = {"count": count, "missing": missing, **figures}
    return {"num_examples": num_examples, "features": result}


class ExactStatistics(beam.CombineFn):
    """Exact statistics of `width` features: inputs are float64 [F, n] arrays
    (one row per feature, NaN = missing) or, with `features`, record batches
    holding those columns as list<double> of one value per row; the output
    is the FIELDS x F matrix. The time spent adding is the Beam counter
    normpipe/analyze_us (microseconds, all workers)."""

    def __init__(self, width: int, features=None):
        super().__init__()
        self._width = width
        self._features = tuple(features) if features is not None else None
        self._analyze_us = beam.metrics.Metrics.counter("normpipe", "analyze_us")

    def create_accumulator(self):
        return exact_sums.Accumulator(self._width)

    def add_input(self, mutable_accumulator, element):
        start = time.perf_counter()
        if self._features is not None:
            element = record_batch_columns(element, self._features)
        mutable_accumulator.add(element)
        self._analyze_us.inc(int((time.perf_counter() - start) * 1e6))
        return mutable_accumulator

    def merge_accumulators(self, accumulators):
        return reduce(lambda a, b: a.merge(b), accumulators)

    def compact(self, accumulator):
        accumulator.flush()
        return accumulator

    def extract_output(self, accumulator):
        return statistics_matrix(accumulator)


def record_batch_columns(batch, features) -> np.ndarray:
    """The float64 [F, n] array of `features` in a canonical record batch."""
    position = {name: i for i, name in enumerate(batch.schema.names)}
    values = np.empty((len(features), batch.num_rows), np.float64)
    for row, name in enumerate(features):
        values[row] = batch.column(position[name]).flatten().to_numpy(zero_copy_only=False)
    return values


def write_matrix(matrix: np.ndarray, path: str) -> None:
    """Writes a statistics matrix to `path` as JSON (floats round-trip exactly)."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    with FileSystems.create(path) as f:
        f.write(json.dumps(matrix.tolist()).encode("utf-8"))


def read_matrix(path: str) -> np.ndarray:
    """The matrix `write_matrix` wrote."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    with FileSystems.open(path) as f:
        return np.asarray(json.loads(f.read().decode("utf-8")), np.float64)


class ComputeMoments(beam.PTransform):
    """Canonical record batches -> the statistics matrix (FIELDS x F) written
    to `path` as JSON."""

    def __init__(self, features, path: str):
        super().__init__()
        self._features = tuple(features)
        self._path = path

    def expand(self, batches):
        return (
            batches
            | "ExactStatistics" >> beam.CombineGlobally(ExactStatistics(len(self._features), self._features))
            | "WriteMatrix" >> beam.Map(write_matrix, self._path)
        )
