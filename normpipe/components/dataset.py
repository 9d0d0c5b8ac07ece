"""input_fn: the transformed examples as a tf.data pipeline for training.

Reads the gzip (or plain) TFRecords of transformed tf.train.Examples that
`normpipe transform` or TFX's Transform component wrote, parses them with
`TFTransformOutput.transformed_feature_spec()` and yields (features, label)
batches, streaming: memory is bounded by the shuffle buffer, not the data.

`split` holds rows out the way `normpipe train` does (train.eval_mask): a
row is an evaluation row when a hash of its normalized float32 values and
label is 0 mod 5, so every variant and every reader agrees on the split.
"""

from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from normpipe.io import atomic, paths

EVAL_BUCKETS = 5
_MIX = np.uint64(0x9E3779B97F4A7C15)
_PARSE_CHUNK = 4096


def holdout_mask(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """True for evaluation rows: the TensorFlow twin of train.eval_mask.

    x: float32 [batch, F] normalized values, y: float32 [batch] labels.
    """
    words = tf.cast(tf.bitcast(tf.concat([x, y[:, tf.newaxis]], axis=1), tf.uint32), tf.uint64)
    h = tf.zeros_like(words[:, 0])
    mix, shift = tf.constant(_MIX), tf.constant(np.uint64(29))
    for j in range(words.shape[1]):
        h = tf.bitwise.bitwise_xor(h, words[:, j]) * mix
        h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, shift))
    return tf.equal(h % tf.constant(np.uint64(EVAL_BUCKETS)), tf.constant(np.uint64(0)))


def _files(file_pattern) -> list:
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise ValueError(f"file_pattern matches no file. Received: {file_pattern!r}")
    # On an object store a `transformed/` whose publishing copy did not finish is marked (atomic.py).
    partial = sorted({d for d in map(paths.dirname, files) if not paths.is_local(d) and not atomic.is_complete(d)})
    if partial:
        raise ValueError(f"file_pattern matches files of an incomplete copy ({', '.join(partial)}). "
                         f"Received: {file_pattern!r}")
    return files


def input_fn(file_pattern: Union[str, Sequence[str]], tf_transform_output, batch_size: int, label: str, *,
             features: Optional[Sequence[str]] = None, split: Optional[str] = None, shuffle: bool = True,
             num_epochs: Optional[int] = 1, shuffle_buffer: int = 100_000, seed: Optional[int] = None
             ) -> tf.data.Dataset:
    """A tf.data.Dataset of (features, label) batches of transformed examples.

    Args:
      file_pattern: a glob (or a list of them, as TFX's `fn_args.train_files`)
        of TFRecord files; `.gz` files are read as gzip.
      tf_transform_output: a `tft.TFTransformOutput` or its directory.
      batch_size: rows per batch (the last batch may be smaller).
      label: the label column; rows whose label is missing (NaN) are dropped.
      features: the normalized feature names; given, the features come as
        one float32 [batch, F] matrix in this order, else as a dict.
      split: None (all rows), "train" or "eval" (see the module docstring;
        needs `features`).
      shuffle: shuffle rows within `shuffle_buffer` (reshuffled every epoch).
      num_epochs: passes over the data; None repeats forever.
      seed: the shuffle seed.

    Example (a TFX Trainer's `run_fn` does this):

        tft_output = tft.TFTransformOutput(fn_args.transform_output)
        train = normpipe.input_fn(fn_args.train_files, tft_output, 128, "tips")
    """
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    if split not in (None, "train", "eval"):
        raise ValueError(f"split must be None, 'train' or 'eval'. Received: {split!r}")
    if split and not features:
        raise ValueError("split needs `features` (the hash covers the normalized values). Received: features=None")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: {batch_size!r}")
    if isinstance(tf_transform_output, str):
        tf_transform_output = tft.TFTransformOutput(tf_transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    if label not in spec:
        raise ValueError(f"label must be a transformed feature ({', '.join(sorted(spec))}). Received: {label!r}")
    missing = [n for n in features or () if n not in spec]
    if missing:
        raise ValueError(f"features must be transformed features. Received unknown: {missing}")
    files = _files(file_pattern)
    compression = "GZIP" if files[0].endswith(".gz") else None
    names = list(features) if features else [n for n in spec if n != label]

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        y = tf.cast(parsed.pop(label), tf.float32)
        if y.shape.rank == 2 and y.shape[1] == 1:  # a label passed through as TFX gives it, [batch, 1]
            y = y[:, 0]
        x = tf.stack([tf.cast(parsed[n], tf.float32) for n in names], axis=1) if features else parsed
        keep = tf.logical_not(tf.math.is_nan(y))
        if split:
            held_out = holdout_mask(x, y)
            keep = tf.logical_and(keep, held_out if split == "eval" else tf.logical_not(held_out))
        if features:
            return tf.boolean_mask(x, keep), tf.boolean_mask(y, keep)
        return {k: tf.boolean_mask(v, keep) for k, v in x.items()}, tf.boolean_mask(y, keep)

    # Shuffled as serialized records (cheap to move), parsed and split in
    # large chunks, then cut into batches with rebatch: no per-row element
    # ever goes through tf.data after parsing.
    dataset = tf.data.TFRecordDataset(files, compression_type=compression, num_parallel_reads=min(len(files), 4))
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat(num_epochs) if num_epochs != 1 else dataset
    dataset = dataset.batch(max(batch_size, _PARSE_CHUNK)).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.rebatch(batch_size).prefetch(tf.data.AUTOTUNE)
