"""Raw rows for the raw-input variants, streamed from a spool on disk.

One pass over the input readers (`ingest.iter_columns`) splits the rows the
way `input_fn` splits the transformed TFRecords (`train.eval_mask` over the
transform graph's normalized float32 values and the label), drops rows whose
label is missing, and writes each split as float64 `.npy` chunks (features,
then the label) in a scratch directory. Training and evaluation then read the
chunks back through tf.data, several epochs and several variants over one
read of the input: memory is bounded by the chunk and window sizes, not by
the data, and features stay float64 (Keras would cast numpy float64 inputs
to float32 and round a timestamp to 128 s).

The same pass keeps what needs a fixed size: the first `sample_rows`
evaluation rows in input order (raw and normalized), on which every variant
is evaluated at batch size 1, and the training labels' mean and class counts
for the predict-the-mean (regression) or majority-class (classification)
baseline.
"""

import dataclasses
import os
from typing import List, Optional

import numpy as np
import tensorflow as tf

from normpipe.components import ingest
from normpipe.components.train import eval_mask

SAMPLE_ROWS = 1000
_WINDOW_CHUNKS = 4


@dataclasses.dataclass
class Spool:
    """What one pass over the input wrote and kept (see the module docstring)."""

    directory: str
    num_features: int
    train_chunks: List[str] = dataclasses.field(default_factory=list)
    eval_chunks: List[str] = dataclasses.field(default_factory=list)
    train_rows: int = 0
    eval_rows: int = 0
    label_sum: float = 0.0
    label_ones: int = 0
    binary_labels: bool = True
    sample_raw: Optional[np.ndarray] = None
    sample_normalized: Optional[np.ndarray] = None
    sample_y: Optional[np.ndarray] = None

    @property
    def task(self) -> str:
        return "classification" if self.binary_labels else "regression"

    def _write(self, split: str, rows: np.ndarray) -> None:
        chunks = self.train_chunks if split == "train" else self.eval_chunks
        path = os.path.join(self.directory, f"{split}-{len(chunks):06d}.npy")
        np.save(path, rows)
        chunks.append(path)

    def add(self, raw, normalized, y, sample_rows) -> None:
        keep = ~np.isnan(y)
        raw, normalized, y = raw[keep], normalized[keep], y[keep]
        held_out = eval_mask(normalized, y)
        rows = np.concatenate([raw, y.astype(np.float64)[:, None]], axis=1)
        train_y = y[~held_out]
        self.train_rows += len(train_y)
        self.eval_rows += int(held_out.sum())
        self.label_sum += float(train_y.astype(np.float64).sum())
        self.label_ones += int((train_y == 1).sum())
        self.binary_labels = self.binary_labels and bool(np.isin(y, (0.0, 1.0)).all())
        if len(train_y):
            self._write("train", rows[~held_out])
        if held_out.any():
            self._write("eval", rows[held_out])
            taken = 0 if self.sample_y is None else len(self.sample_y)
            if taken < sample_rows:
                more = slice(0, sample_rows - taken)
                parts = [(raw[held_out][more], normalized[held_out][more], y[held_out][more])]
                if self.sample_y is not None:
                    parts.insert(0, (self.sample_raw, self.sample_normalized, self.sample_y))
                self.sample_raw, self.sample_normalized, self.sample_y = (np.concatenate(p) for p in zip(*parts))


def spool_splits(spec, graph, names, directory, sample_rows=SAMPLE_ROWS) -> Spool:
    """Reads the input once; writes the train and eval chunks under `directory`."""
    os.makedirs(directory, exist_ok=True)
    spool = Spool(directory, len(spec.features))
    for columns in ingest.iter_columns(spec):
        outputs = graph(columns)
        raw = np.stack([columns[n] for n in spec.features], axis=1)
        normalized = np.stack([outputs[n] for n in names], axis=1)
        spool.add(raw, normalized, columns[spec.label].astype(np.float32), sample_rows)
    return spool


def _batches(paths, batch_size, shuffle, rng, fill):
    """(x float64, y float32) batches from the chunks; with `shuffle`, chunks
    in random order and rows permuted within windows of a few chunks."""
    order = rng.permutation(len(paths)) if shuffle else np.arange(len(paths))
    carry = None
    for start in range(0, len(order), _WINDOW_CHUNKS):
        window = [np.load(paths[i]) for i in order[start:start + _WINDOW_CHUNKS]]
        rows = np.concatenate(([carry] if carry is not None else []) + window)
        if shuffle:
            rows = rows[rng.permutation(len(rows))]
        usable = len(rows) if start + _WINDOW_CHUNKS >= len(order) else (len(rows) // batch_size) * batch_size
        for i in range(0, usable, batch_size):
            x = rows[i:i + batch_size, :-1]
            yield (fill(x) if fill else x), rows[i:i + batch_size, -1].astype(np.float32)
        carry = rows[usable:] if usable < len(rows) else None


def chunk_dataset(paths, num_features, batch_size, shuffle=False, seed=0, fill_missing=None) -> tf.data.Dataset:
    """tf.data over spooled chunks: (x float64 [b, F], y float32 [b]).

    Every iteration (every Keras epoch) reshuffles with a new seed.
    `fill_missing`: float64 [F] values that replace NaN (the recipe's
    per-batch layers have no notion of a missing value).
    """
    fill = None
    if fill_missing is not None:
        values = np.asarray(fill_missing, np.float64)
        fill = lambda x: np.where(np.isnan(x), values, x)  # noqa: E731
    epochs = iter(range(1 << 30))

    def generate():
        rng = np.random.default_rng([seed, next(epochs)])
        yield from _batches(list(paths), batch_size, shuffle, rng, fill)

    signature = (tf.TensorSpec([None, num_features], tf.float64), tf.TensorSpec([None], tf.float32))
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def raw_datasets(spool: Spool, seed=0, fill_missing=None):
    """(train, eval) factories: batch size -> tf.data.Dataset over the spool."""
    f = spool.num_features
    return (lambda b: chunk_dataset(spool.train_chunks, f, b, True, seed, fill_missing),
            lambda b: chunk_dataset(spool.eval_chunks, f, b, False, seed, fill_missing))


def sample_dataset(x, y, fill_missing=None):
    """batch size -> tf.data.Dataset over the fixed evaluation sample."""
    if fill_missing is not None:
        x = np.where(np.isnan(x), np.asarray(fill_missing, np.float64), x)
    return lambda b: tf.data.Dataset.from_tensor_slices((x, y)).batch(b)


def baseline(spool: Spool, large_batch_key: str) -> dict:
    """The metric of a model that ignores its inputs, on the same rows.

    Regression: predict the training labels' mean, reported as MAE.
    Classification: predict the training majority class, as accuracy.
    """
    if spool.train_rows == 0:
        return {}
    if spool.task == "regression":
        constant = spool.label_sum / spool.train_rows
        metric, score = "mae", lambda y: float(np.abs(y.astype(np.float64) - constant).sum())
        what = f"predict the training mean ({constant:.6g})"
    else:
        constant = float(spool.label_ones * 2 >= spool.train_rows)
        metric, score = "accuracy", lambda y: float((y == constant).sum())
        what = f"predict the training majority class ({constant:g})"
    total = sum(score(np.load(p)[:, -1]) for p in spool.eval_chunks)
    return {"what": what, "prediction": constant, "metric": metric,
            "batch_1": {metric: score(spool.sample_y) / len(spool.sample_y), "rows": int(len(spool.sample_y))},
            large_batch_key: {metric: total / spool.eval_rows, "rows": int(spool.eval_rows)}}
