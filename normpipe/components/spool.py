"""Training rows for every variant, streamed from a spool on disk.

One pass over the input readers (`ingest.iter_columns`) applies the
transform graph, splits the rows the way `input_fn` splits the transformed
TFRecords (`train.eval_mask` over the normalized float32 values and the
label), drops rows whose label is missing, and writes each split as `.npy`
chunks in a scratch directory: the raw features as float64 (what the
`constant`, `learned` and `batch` variants take) and the graph's normalized
float32 features with the label (what the `tft` variant takes; the values
the transformed TFRecords hold). Training and evaluation read the chunks back
through tf.data, every epoch of every variant from one read of the input:
memory is bounded by the chunk and window sizes, not by the data, and raw
features stay float64 (Keras would cast numpy float64 inputs to float32 and
round a timestamp to 128 s). Reading a chunk back is a memory copy, where
parsing the gzip TFRecords row by row through `input_fn` took about 20x
longer per epoch.

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

from normpipe.components import categories, labels
from normpipe.components.train import IDS, eval_mask
from normpipe.io import ingest

SAMPLE_ROWS = 1000
_WINDOW_CHUNKS = 4


class _PythonWriter:
    """A file numpy does not recognize as one, so np.lib.format writes through
    Python's `write` (which raises OSError with its errno) rather than C's
    fwrite (whose short write numpy reports as "N requested and M written")."""

    def __init__(self, f):
        self.write = f.write


def save_npy(path: str, array: np.ndarray) -> None:
    """np.save whose failure names the file and its cause (a full disk: ENOSPC)."""
    try:
        with open(path, "wb") as f:
            np.lib.format.write_array(_PythonWriter(f), array, allow_pickle=False)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), path) from None


@dataclasses.dataclass
class Spool:
    """What one pass over the input wrote and kept (see the module docstring)."""

    directory: str
    num_features: int
    num_categories: int = 0  # categorical columns: their ids are spooled as int64 [n, C] (`.ids.npy`)
    train_chunks: List[str] = dataclasses.field(default_factory=list)
    eval_chunks: List[str] = dataclasses.field(default_factory=list)
    train_chunk_rows: List[int] = dataclasses.field(default_factory=list)
    train_rows: int = 0
    eval_rows: int = 0
    label_sum: float = 0.0
    label_ones: int = 0
    all_labels: labels.LabelCounts = dataclasses.field(default_factory=labels.LabelCounts)  # every labelled row
    train_labels: labels.LabelCounts = dataclasses.field(default_factory=labels.LabelCounts)
    label_task: Optional[labels.LabelTask] = None  # set by the caller (labels.resolve_task); None: inferred
    sample_raw: Optional[np.ndarray] = None
    sample_normalized: Optional[np.ndarray] = None
    sample_y: Optional[np.ndarray] = None
    sample_ids: Optional[np.ndarray] = None

    @property
    def task(self) -> str:
        return (self.label_task or labels.resolve_task(self.all_labels)).task

    @property
    def multiclass(self) -> bool:
        return (self.label_task or labels.resolve_task(self.all_labels)).multiclass

    def _write(self, split: str, raw: np.ndarray, labelled: np.ndarray, ids: np.ndarray) -> None:
        chunks = self.train_chunks if split == "train" else self.eval_chunks
        prefix = os.path.join(self.directory, f"{split}-{len(chunks):06d}")
        save_npy(prefix + ".raw.npy", raw)
        save_npy(prefix + ".normalized.npy", labelled)
        if self.num_categories:
            save_npy(prefix + ".ids.npy", ids)
        chunks.append(prefix)
        if split == "train":
            self.train_chunk_rows.append(len(raw))

    def add(self, raw, normalized, y, sample_rows, ids=None) -> None:
        """Spools one chunk of rows; `ids`: their categorical ids, int64 [n, C]."""
        ids = np.zeros((len(y), 0), np.int64) if ids is None else ids
        keep = ~np.isnan(y)
        raw, normalized, y, ids = raw[keep], normalized[keep], y[keep], ids[keep]
        held_out = eval_mask(normalized, y)
        labelled = np.concatenate([normalized, y[:, None]], axis=1)
        train_y = y[~held_out]
        self.train_rows += len(train_y)
        self.eval_rows += int(held_out.sum())
        self.label_sum += float(train_y.astype(np.float64).sum())
        self.label_ones += int((train_y == 1).sum())
        self.all_labels.add(y)
        self.train_labels.add(train_y)
        if len(train_y):
            self._write("train", raw[~held_out], labelled[~held_out], ids[~held_out])
        if held_out.any():
            self._write("eval", raw[held_out], labelled[held_out], ids[held_out])
            taken = 0 if self.sample_y is None else len(self.sample_y)
            if taken < sample_rows:
                more = slice(0, sample_rows - taken)
                parts = [(raw[held_out][more], normalized[held_out][more], y[held_out][more], ids[held_out][more])]
                if self.sample_y is not None:
                    parts.insert(0, (self.sample_raw, self.sample_normalized, self.sample_y, self.sample_ids))
                (self.sample_raw, self.sample_normalized, self.sample_y,
                 self.sample_ids) = (np.concatenate(p) for p in zip(*parts))


def spool_splits(spec, graph, names, directory, sample_rows=SAMPLE_ROWS) -> Spool:
    """Reads the input once; writes the train and eval chunks under `directory`."""
    os.makedirs(directory, exist_ok=True)
    spool = Spool(directory, len(spec.features), len(spec.categorical))
    for columns in ingest.iter_columns(spec):
        outputs = graph(columns)
        raw = np.stack([columns[n] for n in spec.features], axis=1)
        normalized = np.stack([outputs[n] for n in names], axis=1)
        ids = np.stack([outputs[categories.id_name(c)] for c in spec.categorical], axis=1).astype(np.int64) \
            if spec.categorical else None
        # a string label's value is its class index, which only the graph knows
        y = outputs[spec.label] if spec.string_label else columns[spec.label].astype(np.float32)
        spool.add(raw, normalized, y, sample_rows, ids)
    return spool


def _windows(prefixes, batch_size, shuffle, rng, load):
    """Batches of the arrays `load(prefix)` gives for each chunk (a tuple,
    rows first); with `shuffle`, chunks in random order and rows permuted
    within windows of a few chunks."""
    order = rng.permutation(len(prefixes)) if shuffle else np.arange(len(prefixes))
    carry = None
    for start in range(0, len(order), _WINDOW_CHUNKS):
        window = [load(prefixes[i]) for i in order[start:start + _WINDOW_CHUNKS]]
        if carry is not None:
            window.insert(0, carry)
        arrays = [np.concatenate(parts) for parts in zip(*window)]
        rows = len(arrays[0])
        if shuffle:
            permutation = rng.permutation(rows)
            arrays = [a[permutation] for a in arrays]
        usable = rows if start + _WINDOW_CHUNKS >= len(order) else (rows // batch_size) * batch_size
        for i in range(0, usable, batch_size):
            yield tuple(a[i:i + batch_size] for a in arrays)
        carry = tuple(a[usable:] for a in arrays) if usable < rows else None


# What each variant's model takes (see train.py): the graph's normalized
# float32 features, the raw float64 features, or the raw ones with missing
# values filled (the recipe's per-batch layers have no notion of missing);
# and every variant the categorical ids (IDS), when there are any.
INPUTS = {"tft": "normalized", "constant": "raw", "learned": "raw", "batch": "filled"}


def _inputs(normalized, raw, fill, keys, ids=None):
    found = {"normalized": normalized, "raw": raw}
    if "filled" in keys:
        found["filled"] = np.where(np.isnan(raw), fill, raw)
    found = {k: found[k] for k in keys}
    if ids is not None and ids.shape[1]:
        found[IDS] = ids
    return found


def _input_signature(num_features, keys, num_categories=0):
    dtypes = {"normalized": tf.float32, "raw": tf.float64, "filled": tf.float64}
    signature = {k: tf.TensorSpec([None, num_features], dtypes[k]) for k in keys}
    if num_categories:
        signature[IDS] = tf.TensorSpec([None, num_categories], tf.int64)
    return signature


def first_rows(spool: Spool, limit: Optional[int]):
    """(train chunk prefixes, {prefix: rows to keep of it}, rows): the chunks
    that hold the first `limit` training rows in input order, the last of
    them cut (None: every row)."""
    if limit is None or limit >= spool.train_rows:
        return list(spool.train_chunks), {}, spool.train_rows
    prefixes, cut, taken = [], {}, 0
    for prefix, rows in zip(spool.train_chunks, spool.train_chunk_rows):
        prefixes.append(prefix)
        if taken + rows >= limit:
            cut[prefix] = limit - taken
            break
        taken += rows
    return prefixes, cut, limit


def variant_datasets(spool: Spool, variants, seed=0, fill_missing=None, train_limit=None):
    """(train, eval, batch-size-1 sample) factories, batch size ->
    tf.data.Dataset of ({input: [b, F]}, {variant: y float32}) for a model
    that trains `variants` side by side (train.joint_model): every variant
    sees the same rows in the same order, each through its own input
    (INPUTS: the normalized float32 features, the raw float64 ones, or the
    raw ones with NaN replaced by `fill_missing`), read from one pass over
    the chunks.

    Every batch but the last holds the batch size's rows, and the train and
    eval datasets declare their number of batches (Keras then knows an
    epoch's length, and tf.data checks it). The train dataset reshuffles
    with a new seed on every iteration (every Keras epoch); eval and the
    sample keep input order. `train_limit`: the train dataset holds the
    first that many training rows only (`first_rows`), reshuffled per epoch.
    """
    keys = sorted({INPUTS[v] for v in variants})
    fill = np.asarray(fill_missing if fill_missing is not None else np.zeros(spool.num_features), np.float64)
    by_variant = lambda x, y: (x, dict.fromkeys(variants, y))  # noqa: E731

    train_prefixes, cut, train_rows = first_rows(spool, train_limit)

    def load(prefix):
        keep = slice(0, cut.get(prefix))
        labelled = np.load(prefix + ".normalized.npy")[keep]
        raw = np.load(prefix + ".raw.npy")[keep] if keys != ["normalized"] else labelled[:, :0]
        ids = np.load(prefix + ".ids.npy")[keep] if spool.num_categories else np.zeros((len(labelled), 0), np.int64)
        return labelled[:, :-1], raw, labelled[:, -1], ids

    def factory(prefixes, shuffle, rows):
        epochs = iter(range(1 << 30))  # every iteration (Keras epoch) reshuffles with a new seed

        def make(b):
            def generate():
                rng = np.random.default_rng([seed, next(epochs)])
                for normalized, raw, y, ids in _windows(list(prefixes), b, shuffle, rng, load):
                    yield _inputs(normalized, raw, fill, keys, ids), y

            signature = (_input_signature(spool.num_features, keys, spool.num_categories),
                         tf.TensorSpec([None], tf.float32))
            dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-rows // b)))
            return dataset.map(by_variant).prefetch(2)

        return make

    def sample(b):
        inputs = _inputs(spool.sample_normalized, spool.sample_raw, fill, keys, spool.sample_ids)
        return tf.data.Dataset.from_tensor_slices((inputs, spool.sample_y)).batch(b).map(by_variant)

    return (factory(train_prefixes, True, train_rows), factory(spool.eval_chunks, False, spool.eval_rows), sample)


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
        if spool.multiclass:
            constant = spool.train_labels.majority()
        else:
            constant = float(spool.label_ones * 2 >= spool.train_rows)
        metric, score = "accuracy", lambda y: float((y == constant).sum())
        classes = spool.label_task.classes if spool.label_task else ()
        name = classes[int(constant)] if int(constant) < len(classes) else f"{constant:g}"
        what = f"predict the training majority class ({name})"
    total = sum(score(np.load(p + ".normalized.npy")[:, -1]) for p in spool.eval_chunks)
    return {"what": what, "prediction": constant, "metric": metric,
            "batch_1": {metric: score(spool.sample_y) / len(spool.sample_y), "rows": len(spool.sample_y)},
            large_batch_key: {metric: total / spool.eval_rows, "rows": int(spool.eval_rows)}}
