"""Peer: what a Keras user writes instead of `normpipe run --no-all-variants`.

pandas `read_csv(engine="pyarrow")`, missing cells filled with the column
mean (Keras' `Normalization` has no notion of a missing value), a seeded
80/20 split, `keras.layers.Normalization().adapt()` on the training rows,
the model normpipe trains (64-32-1 MLP, ReLU, Adam 1e-3, MSE), the same
epochs and batch size, `evaluate` at batch size 4096 on the held-out rows,
and `model.export()` of a SavedModel for TF Serving. Keras 3 is imported
directly; tensorflow_transform is not imported.

Prints one JSON line: {"method": "keras_train", "rows", "train_rows",
"eval_rows", "mae", "seconds": {"read", "adapt", "fit", "evaluate", "export"}}.

Usage: python keras_train.py FILE.csv LABEL EPOCHS BATCH_SIZE EXPORT_DIR
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd


def main(argv) -> int:
    path, label, epochs, batch_size, export_dir = argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5]
    seconds, start = {}, time.time()
    frame = pd.read_csv(path, engine="pyarrow")
    y = frame.pop(label).to_numpy("float32")
    x = frame.fillna(frame.mean()).to_numpy("float32")
    held_out = np.random.default_rng(0).random(len(x)) < 0.2
    seconds["read"] = time.time() - start

    start = time.time()
    keras.utils.set_random_seed(0)
    normalize = keras.layers.Normalization()
    normalize.adapt(x[~held_out])
    seconds["adapt"] = time.time() - start

    model = keras.Sequential([keras.Input((x.shape[1],)), normalize, keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    start = time.time()
    model.fit(x[~held_out], y[~held_out], epochs=epochs, batch_size=batch_size, verbose=2)
    seconds["fit"] = time.time() - start
    start = time.time()
    result = model.evaluate(x[held_out], y[held_out], batch_size=4096, verbose=0, return_dict=True)
    seconds["evaluate"] = time.time() - start
    start = time.time()
    model.export(export_dir, verbose=False)
    seconds["export"] = time.time() - start
    print(json.dumps({"method": "keras_train", "keras_version": keras.__version__, "rows": len(x),
                      "train_rows": int((~held_out).sum()), "eval_rows": int(held_out.sum()),
                      "mae": float(result["mae"]), "seconds": {k: round(v, 2) for k, v in seconds.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
