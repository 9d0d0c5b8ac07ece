"""Peer: Keras 3 `Normalization().adapt()` over a tf.data CSV pipeline.

`TextLineDataset(file).skip(1).batch(B).map(decode_csv)` yields [B, F]
float32 batches; `adapt` merges per-batch mean and variance (population,
ddof=0) in float32. A missing (empty) cell becomes `record_defaults`' 0.0:
Keras has no missing-value notion, so the columns with missing cells are
biased towards 0 (the benchmark's accuracy check uses a column without
missing cells). Keras 3 is imported directly; tensorflow_transform is not
imported, so nothing switches `tf.keras` to Keras 2.

Prints one JSON line: {"method": "keras", "rows": N,
"features": {name: {mean, std}}}.

Usage: python keras_adapt.py FILE.csv [BATCH_SIZE]
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf


def csv_dataset(path: str, batch_size: int):
    with open(path, encoding="utf-8") as f:
        names = f.readline().strip().split(",")
    defaults = [[0.0]] * len(names)

    def decode(lines):
        return tf.stack(tf.io.decode_csv(lines, record_defaults=defaults), axis=1)

    dataset = (
        tf.data.TextLineDataset(path)
        .skip(1)
        .batch(batch_size)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return names, dataset


def main(argv) -> int:
    batch_size = int(argv[2]) if len(argv) > 2 else 65536
    names, dataset = csv_dataset(argv[1], batch_size)
    layer = keras.layers.Normalization(axis=-1)
    layer.adapt(dataset)
    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean)).reshape(-1)
    var = np.asarray(keras.ops.convert_to_numpy(layer.variance)).reshape(-1)
    features = {n: {"mean": float(m), "std": float(np.sqrt(max(v, 0.0)))} for n, m, v in zip(names, mean, var)}
    print(json.dumps({"method": "keras", "keras_version": keras.__version__, "features": features}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
