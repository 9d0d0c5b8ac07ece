"""Seeded synthetic CSVs for the throughput benchmark, with float64 references.

Eight float features on deliberately mixed scales:

  offset_1e6     1e6 + N(0, 1)             large offset, small spread
  timestamp      1.4e9 + U{0, 1e8}          timestamp-like integers
  normal_a       N(0, 1)
  normal_b       N(0, 1), 1% missing
  tiny_1e3       1e-3 * N(0, 1), 1% missing
  lognormal      lognormal(0, 2), 1% missing  heavy right tail
  uniform_100    U(-100, 100)
  poisson_count  Poisson(3)                 small integers

Values are rounded before writing and written with pyarrow's shortest
round-trip float formatting, so the parsed CSV holds exactly the float64
values that the reference statistics (numpy, float64, ddof=0, missing
skipped) were computed on. A reference file made by an older version of this
module is regenerated (`REFERENCE_VERSION`). A missing value is an empty cell. The header is
written without quotes: normpipe does not split a file that holds a quote.

Files are keyed by size and seed and reused when present:
`<data_dir>/synthetic_<rows>_s<seed>.csv` plus `.ref.json` beside it.
"""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

FEATURES = (
    "offset_1e6",
    "timestamp",
    "normal_a",
    "normal_b",
    "tiny_1e3",
    "lognormal",
    "uniform_100",
    "poisson_count",
)
OFFSET_FEATURE = "offset_1e6"
MISSING_FRACTION = 0.01
REFERENCE_VERSION = 2
_CHUNK_ROWS = 1_000_000


def csv_path(data_dir: str, rows: int, seed: int) -> str:
    return os.path.join(data_dir, f"synthetic_{rows}_s{seed}.csv")


def _chunk(rng: np.random.Generator, n: int) -> dict:
    """One chunk of the columns, float64, missing as NaN."""
    columns = {
        "offset_1e6": np.round(1e6 + rng.normal(0.0, 1.0, n), 6),
        "timestamp": 1.4e9 + rng.integers(0, 100_000_000, n).astype(np.float64),
        "normal_a": np.round(rng.normal(0.0, 1.0, n), 6),
        "normal_b": np.round(rng.normal(0.0, 1.0, n), 6),
        "tiny_1e3": np.round(1e-3 * rng.normal(0.0, 1.0, n), 9),
        "lognormal": np.round(rng.lognormal(0.0, 2.0, n), 4),
        "uniform_100": np.round(rng.uniform(-100.0, 100.0, n), 3),
        "poisson_count": rng.poisson(3.0, n).astype(np.float64),
    }
    for name in ("normal_b", "tiny_1e3", "lognormal"):
        columns[name][rng.random(n) < MISSING_FRACTION] = np.nan
    return columns


class _Moments:
    """float64 count, mean, population variance, min and max, chunk by chunk.

    Values are shifted by the column's first present value before the
    per-chunk (count, mean, M2) triples are merged (Chan et al.): merging the
    means of a 1e6-offset column directly would lose ~1e-13 of the variance
    to rounding, more than the error of the methods under test.
    """

    def __init__(self):
        self.shift = None
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max, self.missing = np.inf, -np.inf, 0

    def add(self, values: np.ndarray) -> None:
        present = values[~np.isnan(values)]
        self.missing += len(values) - len(present)
        if not len(present):
            return
        if self.shift is None:
            self.shift = float(present[0])
        shifted = present - self.shift
        n, mean = len(shifted), float(np.mean(shifted))
        m2 = float(np.sum((shifted - mean) ** 2))
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min, self.max = min(self.min, float(present.min())), max(self.max, float(present.max()))

    def as_dict(self) -> dict:
        var = self.m2 / self.count
        return {
            "count": self.count,
            "missing": self.missing,
            "mean": self.shift + self.mean,
            "var": var,
            "std": float(np.sqrt(var)),
            "min": self.min,
            "max": self.max,
        }


def _to_table(columns: dict) -> pa.Table:
    return pa.table({name: pa.array(columns[name], from_pandas=True) for name in FEATURES})


def ensure_csv(data_dir: str, rows: int, seed: int) -> str:
    """Path of the CSV for (rows, seed), generated first if absent."""
    path = csv_path(data_dir, rows, seed)
    if os.path.exists(path) and _reference_version(path) == REFERENCE_VERSION:
        return path
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    moments = {name: _Moments() for name in FEATURES}
    tmp = path + ".tmp"
    options = pacsv.WriteOptions(include_header=False, batch_size=65536)
    with open(tmp, "wb") as f:
        f.write((",".join(FEATURES) + "\n").encode())
        for start in range(0, rows, _CHUNK_ROWS):
            columns = _chunk(rng, min(_CHUNK_ROWS, rows - start))
            for name in FEATURES:
                moments[name].add(columns[name])
            pacsv.write_csv(_to_table(columns), f, options)
    reference = {
        "version": REFERENCE_VERSION, "rows": rows, "seed": seed,
        "features": {n: m.as_dict() for n, m in moments.items()},
    }
    with open(path + ".ref.json", "w", encoding="utf-8") as f:
        json.dump(reference, f, indent=2)
    os.replace(tmp, path)
    return path


def ensure_parquet(csv: str) -> str:
    """The CSV's rows as a Parquet file beside it (pyarrow's default row
    groups of up to 1Mi rows), written first if absent; the CSV's reference
    statistics hold for it."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    path = csv[: -len(".csv")] + ".parquet"
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(csv):
        return path
    reader = pacsv.open_csv(csv)
    tmp = path + ".tmp"
    with pq.ParquetWriter(tmp, reader.schema) as writer:
        pending, rows = [], 0
        for batch in reader:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= _CHUNK_ROWS:
                writer.write_table(pa.Table.from_batches(pending))
                pending, rows = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending))
    os.replace(tmp, path)
    return path


def _reference_version(path: str):
    try:
        return load_reference(path).get("version")
    except (OSError, ValueError):
        return None


def load_reference(path: str) -> dict:
    with open(path + ".ref.json", encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------ with a label

LABEL = "label"


def labelled_csv_path(data_dir: str, rows: int, seed: int) -> str:
    return os.path.join(data_dir, f"synthetic_labelled_{rows}_s{seed}.csv")


def label_of(columns: dict, rng: np.random.Generator) -> np.ndarray:
    """A label the features predict (R^2 about 0.97), from five of the eight
    features on their own scales, missing values counted as the feature's
    mean; noise N(0, 0.2)."""
    def filled(name, mean):
        return np.where(np.isnan(columns[name]), mean, columns[name])

    y = (2.0 * columns["normal_a"] - filled("normal_b", 0.0) + 1.5 * np.sin(columns["uniform_100"] / 30.0)
         + 0.5 * np.log1p(filled("lognormal", 7.0)) + 0.5 * (columns["offset_1e6"] - 1e6)
         + rng.normal(0.0, 0.2, len(columns["normal_a"])))
    return np.round(y, 6)


def ensure_labelled_csv(data_dir: str, rows: int, seed: int) -> str:
    """The FEATURES of `ensure_csv` plus a LABEL column; generated if absent.
    Same seeds, different file (no reference statistics)."""
    path = labelled_csv_path(data_dir, rows, seed)
    if os.path.exists(path):
        return path
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    options = pacsv.WriteOptions(include_header=False, batch_size=65536)
    with open(tmp, "wb") as f:
        f.write((",".join(FEATURES + (LABEL,)) + "\n").encode())
        for start in range(0, rows, _CHUNK_ROWS):
            columns = _chunk(rng, min(_CHUNK_ROWS, rows - start))
            table = _to_table(columns).append_column(LABEL, pa.array(label_of(columns, rng)))
            pacsv.write_csv(table, f, options)
    os.replace(tmp, path)
    return path
