"""Compare: the recipe's per-batch normalization against the full dataset's.

The dataset streams through tf.data in file order and in a seeded shuffle.
For each batch size b, consecutive runs of b rows form the batches the recipe
would see (the last one may be shorter, as with drop_remainder=False); the
per-batch Keras layers (`BatchZScore`, `BatchMinMax`) normalize each batch,
and every value is compared with the full-dataset normalization of the same
row, computed by the tf.Transform graph. Missing values are imputed with the
full-dataset mean before the per-batch layers, so the errors measure the
batch statistics alone.

Per feature, method, order and batch size:
  mean / p99 / max absolute error    over finite per-batch outputs
  nonfinite_fraction                 NaN or inf outputs (0/0 in min-max)
  batch_{mean,std,min,max}_spread    std across batches of the batch's
                                     statistic relative to the full dataset's:
                                     (mean_b - mean)/std, std_b/std - 1,
                                     (min_b - min)/(max - min), (max_b - max)/(max - min)
p99 comes from a log-spaced histogram (100 bins per decade, 1e-12 to 1e7),
so memory stays flat whatever the dataset size; it is exact to ~2.3%.
"""

import dataclasses
import math
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from normpipe.components import layers
from normpipe.components.preprocessing import SUFFIX

ORDERS = ("file", "shuffled")
LAYERS = {"zscore": layers.BatchZScore, "minmax": layers.BatchMinMax}
_DECADES, _PER_DECADE, _LOW = 19, 100, -12


@dataclasses.dataclass(frozen=True)
class CompareOptions:
    """How the comparison runs.

    max_rows: the comparison reads the first max_rows rows (None: all). The
      per-batch error is an average over rows and batches; 131,072 rows
      hold 16 batches of the largest default size and over a hundred
      thousand values per feature, while the cost of reading more grows
      with the data.
      With max_rows <= shuffle_buffer the shuffled order is a uniform
      permutation of the rows compared.
    probe_draws: batches drawn per batch size for the probe row, fewer
      where probe_draws x batch size x features would exceed probe_cells
      (at least min_probe_draws): the probe's work grows with the number
      of features, not of rows, and its records say how many were drawn.
    """

    batch_sizes: Tuple[int, ...] = (1, 2, 8, 32, 128, 1024, 8192)
    seed: int = 0
    chunk_rows: int = 65536
    shuffle_buffer: int = 262144
    probe_draws: int = 100
    probe_cells: int = 2**27
    min_probe_draws: int = 10
    max_rows: Optional[int] = 131072

    def __post_init__(self):
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive integers. Received: {self.batch_sizes}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be a positive integer or None. Received: {self.max_rows}")


class ErrorAccumulator:
    """Streaming error figures for one (method, order, batch size), per feature."""

    def __init__(self, num_features):
        f = num_features
        self.values = np.zeros(f, np.int64)
        self.nonfinite = np.zeros(f, np.int64)
        self.sum = np.zeros(f)
        self.max = np.zeros(f)
        self.hist = np.zeros((f, _DECADES * _PER_DECADE + 1), np.int64)
        self.batches = 0
        self.spread_sum = np.zeros((4, f))
        self.spread_sq = np.zeros((4, f))

    def add_values(self, out, ref):
        finite = np.isfinite(out)
        err = np.where(finite, np.abs(out - ref), 0.0)
        self.values += out.shape[0]
        self.nonfinite += (~finite).sum(axis=0)
        self.sum += err.sum(axis=0)
        self.max = np.maximum(self.max, err.max(axis=0, initial=0.0))
        with np.errstate(divide="ignore"):
            bins = np.floor((np.log10(err) - _LOW) * _PER_DECADE) + 1
        width = self.hist.shape[1]
        bins = np.clip(np.nan_to_num(bins, neginf=0), 0, width - 1).astype(np.int64)
        # one bincount for every feature: feature j's bins are offset by j * width
        cells = (bins + np.arange(out.shape[1]) * width)[finite]
        self.hist += np.bincount(cells, minlength=self.hist.size).reshape(self.hist.shape)

    def add_batch_stats(self, relative):
        """relative: [4, batches, F] batch statistics relative to the full ones."""
        self.batches += relative.shape[1]
        with np.errstate(over="ignore", invalid="ignore"):
            self.spread_sum += relative.sum(axis=1)
            self.spread_sq += np.square(relative).sum(axis=1)

    def p99(self):
        """Per feature: the 99th percentile of the error from the histogram
        (None for a feature without a finite value)."""
        totals = self.hist.sum(axis=1)
        first = np.argmax(np.cumsum(self.hist, axis=1) >= 0.99 * totals[:, None], axis=1)
        return [None if not total else 0.0 if index == 0 else 10 ** (_LOW + index / _PER_DECADE)
                for index, total in zip(first.tolist(), totals.tolist())]

    def records(self):
        """One JSON record per feature; a figure that is not finite (a
        feature with no value, or one whose batch statistics overflow
        float64) is None. Computed for all features at once: a wide
        dataset has thousands per accumulator."""
        finite = self.values - self.nonfinite
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean_sq = self.spread_sq / max(self.batches, 1)
            mean = self.spread_sum / max(self.batches, 1)
            spread = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
            mean_abs = np.where(finite > 0, self.sum / np.maximum(finite, 1), np.nan)
            nonfinite_fraction = np.where(self.values > 0, self.nonfinite / np.maximum(self.values, 1), 0.0)
        max_abs = np.where(finite > 0, self.max, np.nan)
        columns = zip(self.values.tolist(), _or_none(mean_abs), self.p99(), _or_none(max_abs),
                      nonfinite_fraction.tolist(), *(_or_none(row) for row in spread))
        return [{
            "num_values": int(values), "mean_abs_error": mean_abs_error, "p99_abs_error": p99,
            "max_abs_error": max_abs_error, "nonfinite_fraction": float(fraction), "num_batches": int(self.batches),
            "batch_mean_spread": s_mean, "batch_std_spread": s_std, "batch_min_spread": s_min, "batch_max_spread": s_max,
        } for values, mean_abs_error, p99, max_abs_error, fraction, s_mean, s_std, s_min, s_max in columns]


def _or_none(values):
    """float64 values -> Python floats, None where not finite."""
    return [v if math.isfinite(v) else None for v in np.asarray(values, np.float64).tolist()]


def apply_per_batch(layer, x, b):
    """Applies `layer` to each run of b rows of x [k*b, F] in one call.

    The layer reduces over axis 0; laid out as [b, k*F], axis 0 holds exactly
    one batch per column, so one call normalizes all k batches.
    """
    k, f = x.shape[0] // b, x.shape[1]
    wide = np.transpose(x.reshape(k, b, f), (1, 0, 2)).reshape(b, k * f)
    out = keras.ops.convert_to_numpy(layer(tf.constant(wide)))
    return np.transpose(out.reshape(b, k, f), (1, 0, 2)).reshape(k * b, f)


def batch_statistics(x, b, full):
    """[4, k, F] per-batch mean, std, min, max relative to the full dataset's."""
    k, f = x.shape[0] // b, x.shape[1]
    batches = x.reshape(k, b, f)
    with np.errstate(over="ignore", invalid="ignore"):
        return _relative_statistics(batches, full)


def _relative_statistics(batches, full):
    std = np.where(full["std"] > 0, full["std"], 1.0)
    span = np.where(full["max"] > full["min"], full["max"] - full["min"], 1.0)
    return np.stack([
        (batches.mean(axis=1) - full["mean"]) / std,
        batches.std(axis=1) / std - 1.0,
        (batches.min(axis=1) - full["min"]) / span,
        (batches.max(axis=1) - full["max"]) / span,
    ])


class BatchSizeComparison:
    """Feeds chunks to one (method, order, batch size), carrying partial batches."""

    def __init__(self, method, b, num_features, full):
        self.layer = LAYERS[method]()
        self.b = b
        self.full = full
        self.acc = ErrorAccumulator(num_features)
        self.carry = None

    def feed(self, raw, ref, final=False):
        if self.carry is not None:
            raw, ref = np.concatenate([self.carry[0], raw]), np.concatenate([self.carry[1], ref])
        b = self.b if not final else max(len(raw), 1)
        usable = (len(raw) // b) * b
        if usable:
            out = apply_per_batch(self.layer, raw[:usable], b)
            self.acc.add_values(out, ref[:usable])
            self.acc.add_batch_stats(batch_statistics(raw[:usable], b, self.full))
        self.carry = (raw[usable:], ref[usable:]) if usable < len(raw) else None

    def finish(self):
        if self.carry is not None and len(self.carry[0]):
            raw, ref = self.carry
            self.carry = None
            self.feed(raw, ref, final=True)
        return self.acc


def impute(raw, full):
    """Missing values -> the full-dataset mean (what the transform graph does)."""
    return np.where(np.isnan(raw), full["mean"], raw)


def full_statistics(stats_document, features):
    """Full-dataset statistics as float64 vectors in feature order."""
    out = {}
    for key in ("mean", "std", "min", "max"):
        out[key] = np.array(
            [np.nan if stats_document["features"][n][key] is None else stats_document["features"][n][key] for n in features]
        )
    out["mean"] = np.nan_to_num(out["mean"])
    return out


def chunk_dataset(batches_fn, order, options, first):
    """tf.data over (raw float64, reference float32 per method) row chunks;
    `first`: the first chunk, which gives the shapes and dtypes."""
    signature = tuple(tf.TensorSpec([None, a.shape[1]], tf.as_dtype(a.dtype)) for a in first)
    dataset = tf.data.Dataset.from_generator(batches_fn, output_signature=signature).unbatch()
    if order == "shuffled":
        dataset = dataset.shuffle(options.shuffle_buffer, seed=options.seed, reshuffle_each_iteration=False)
    return dataset.batch(options.chunk_rows).prefetch(2)


def compare_order(batches_fn, order, methods, features, full, options, first):
    """Streams one order through every (method, batch size); returns accumulators."""
    runs = {(m, b): BatchSizeComparison(m, b, len(features), full) for m in methods for b in options.batch_sizes}
    for chunk in chunk_dataset(batches_fn, order, options, first):
        raw = impute(chunk[0].numpy(), full)
        for i, method in enumerate(methods):
            ref = chunk[1 + i].numpy()
            for b in options.batch_sizes:
                runs[(method, b)].feed(raw, ref)
    return {key: run.finish() for key, run in runs.items()}


# Rows x features of the batches given to one call of _probe_outputs: 2 MB
# of float64 per copy it makes.
PROBE_CALL_CELLS = 1 << 18


def _probe_outputs(layer, raw, batches):
    """The layer's output for the first row of each batch of `raw`'s rows
    (`batches`: [draws, b] row indices): [draws, F].

    The recipe's layers normalize each column on its own, so draws set side
    by side as the columns of one [b, draws x F] batch get each draw's own
    values from one call per PROBE_CALL_CELLS values; one eager call per draw
    cost about a second per run for the hundred draws of seven batch sizes.
    """
    draws, b = batches.shape
    per_call = max(1, PROBE_CALL_CELLS // (b * raw.shape[1]))
    outputs = []
    for start in range(0, draws, per_call):
        group = raw[batches[start:start + per_call]]  # [n, b, F]
        columns = np.ascontiguousarray(group.transpose(1, 0, 2)).reshape(b, -1)
        first = keras.ops.convert_to_numpy(layer(tf.constant(columns)))[0]
        outputs.append(first.reshape(len(group), raw.shape[1]))
    return np.concatenate(outputs)


def probe_row(raw, refs, methods, features, options, row=0):
    """The values one row gets with random batch-mates, per batch size.

    raw/refs: the first chunk in file order (row `row` is the probe).
    """
    rng = np.random.default_rng(options.seed)
    others = np.delete(np.arange(len(raw)), row)
    results = []
    for m_index, method in enumerate(methods):
        layer = LAYERS[method]()
        for b in options.batch_sizes:
            if b - 1 > len(others):
                continue
            draws = min(options.probe_draws,
                        max(options.min_probe_draws, options.probe_cells // (b * max(len(features), 1))))
            batches = [np.concatenate([[row], rng.choice(others, b - 1, replace=False)]) for _ in range(draws)]
            values = _probe_outputs(layer, raw, np.stack(batches))
            finite = np.isfinite(values)
            counts = finite.sum(axis=0)
            lows = _or_none(np.where(finite, values, np.inf).min(axis=0))
            highs = _or_none(np.where(finite, values, -np.inf).max(axis=0))
            raws, fulls = _or_none(raw[row]), _or_none(refs[m_index][row])
            for j, name in enumerate(features):
                results.append({
                    "feature": name, "method": method, "batch_size": b, "row": row,
                    "raw_value": raws[j], "full_dataset_value": fulls[j],
                    "min": lows[j] if counts[j] else None, "max": highs[j] if counts[j] else None,
                    "nonfinite_draws": int(values.shape[0] - counts[j]), "draws": int(values.shape[0]),
                })
    return results


def run_comparison(batches_fn, methods, features, full, options):
    """All records (feature x method x order x batch size) and the probe rows.

    batches_fn() yields (raw [n, F] float64, NaN for missing, then one [n, F] float32 reference per method) in file order.
    """
    records = []
    first = next(iter(batches_fn()))
    for order in ORDERS:
        accumulators = compare_order(batches_fn, order, methods, features, full, options, first)
        for (method, b), acc in accumulators.items():
            for name, record in zip(features, acc.records()):
                records.append({"feature": name, "method": method, "order": order, "batch_size": b, **record})
    # The probe: the first row with the fewest missing values.
    row = int(np.argmin(np.isnan(first[0]).sum(axis=1)))
    probes = probe_row(impute(first[0], full), first[1:], methods, features, options, row=row)
    return records, probes


def output_names(features, method):
    return [name + SUFFIX[method] for name in features]
