"""Categorical columns in the model: an Embedding per column (what normpipe
builds) against a one-hot encoding per column, on the same ids.

For each dataset the script runs `normpipe.transform` once (the vocabulary
ids and the normalized numeric features, materialized), reads the
transformed examples back, holds out every fifth row, and trains normpipe's
MLP (64-32, Adam 1e-3, batch 64) twice with the same seed: once as
`normpipe.components.train.build_model` builds it (each column's ids
through `Embedding(size, embedding_width(size))`), once with each column's
ids one-hot encoded (`keras.layers.CategoryEncoding(size, "one_hot")`) in
the Embedding's place. It prints, per dataset and encoding, the held-out MAE
of each epoch's end, the fit's seconds per epoch and the trainable
parameters, and writes them to benchmarks/results/categorical_encoding.json.

Datasets: the taxi sample (`fare`; `payment_type` and `company`, 4 and 12
values in their vocabularies), and a seeded synthetic table whose label is mostly a 300-value
text column's and a 40-value integer code's effect (the case where the
categories carry the signal and the vocabulary is large).

Usage: python benchmarks/categorical_encoding.py [--epochs 10] [--synthetic-rows 200000]
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TAXI_CSV = os.path.join(ROOT, "data", "chicago_taxi_15k.csv")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "categorical_encoding.json")


def synthetic_csv(path, rows, seed=0):
    """x1, x2 numeric; `shop` (300 values, Zipf-like frequencies) and `zone`
    (an integer code 1..40) whose effects make most of the label."""
    rng = np.random.default_rng(seed)
    shops = np.array([f"shop-{i:03d}" for i in range(300)])
    weights = 1.0 / np.arange(1, 301) ** 0.8
    shop = rng.choice(300, rows, p=weights / weights.sum())
    zone = rng.integers(1, 41, rows)
    shop_effect, zone_effect = rng.normal(0, 5, 300), rng.normal(0, 3, 41)
    x1, x2 = rng.normal(size=rows), rng.normal(10, 3, rows)
    y = shop_effect[shop] + zone_effect[zone] + 0.5 * x1 + 0.1 * x2 + rng.normal(0, 0.5, rows)
    with open(path, "w", encoding="utf-8") as f:
        f.write("x1,x2,shop,zone,y\n")
        for i in range(rows):
            f.write(f"{x1[i]:.5f},{x2[i]:.5f},{shops[shop[i]]},{zone[i]},{y[i]:.4f}\n")
    return path


def transformed_arrays(csv_path, label, categorical, out):
    """(normalized [n, F] float32, ids [n, C] int64, y [n], {id output: size}) of normpipe.transform's output."""
    import tensorflow as tf
    import tensorflow_transform as tft

    import normpipe
    from normpipe.components import categories, transform

    normpipe.transform(csv_path, out, label=label, categorical=categorical)
    metadata = transform.read_metadata(os.path.join(out, "transform"))
    names = list(metadata["outputs"]["zscore"])
    ids = [categories.id_name(c) for c in metadata["categorical"]]
    spec = tft.TFTransformOutput(os.path.join(out, "transform")).transformed_feature_spec()
    files = tf.io.gfile.glob(os.path.join(out, "transformed", "*.tfrecord.gz"))
    columns = {n: [] for n in names + ids + [label]}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536):
        parsed = tf.io.parse_example(batch, spec)
        for n in columns:
            columns[n].append(parsed[n].numpy().reshape(-1))
    columns = {n: np.concatenate(v) for n, v in columns.items()}
    keep = ~np.isnan(columns[label])
    x = np.stack([columns[n] for n in names], axis=1)[keep].astype(np.float32)
    c = np.stack([columns[n] for n in ids], axis=1)[keep].astype(np.int64)
    return x, c, columns[label][keep].astype(np.float32), {n: metadata["category_sizes"][n] for n in ids}


def one_hot_model(num_features, sizes, options):
    """normpipe's MLP with each column's ids one-hot encoded where build_model embeds them."""
    import keras

    keras.utils.set_random_seed(options.seed)
    features = keras.Input((num_features,), dtype="float32", name="features")
    ids = keras.Input((len(sizes),), dtype="int64", name="ids")
    encoded = [keras.layers.CategoryEncoding(size, output_mode="one_hot")(ids[:, j:j + 1])
               for j, size in enumerate(sizes.values())]
    h = keras.layers.Concatenate()([features] + encoded)
    for units in options.hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    model = keras.Model([features, ids], keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate), loss="mse", metrics=["mae"])
    return model


def fit(model, data, epochs, batch_size=64):
    (x, c, y), (x_eval, c_eval, y_eval) = data
    maes, seconds = [], []
    for _ in range(epochs):
        started = time.perf_counter()
        model.fit([x, c], y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        seconds.append(time.perf_counter() - started)
        maes.append(float(model.evaluate([x_eval, c_eval], y_eval, batch_size=4096, verbose=0, return_dict=True)["mae"]))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"mae_per_epoch": maes, "seconds_per_epoch": float(np.median(seconds)), "trainable_parameters": trainable}


def run_case(name, csv_path, label, categorical, epochs, tmp):
    from normpipe.components import train

    x, c, y, sizes = transformed_arrays(csv_path, label, categorical, os.path.join(tmp, name))
    held_out = np.arange(len(y)) % 5 == 0
    data = ((x[~held_out], c[~held_out], y[~held_out]), (x[held_out], c[held_out], y[held_out]))
    options = train.TrainOptions(epochs=epochs)
    embedded = train.build_model("tft", x.shape[1], "regression", options, categorical=sizes)
    results = {"rows": len(y), "sizes": sizes,
               "embedding": fit(embedded, data, epochs), "one_hot": fit(one_hot_model(x.shape[1], sizes, options),
                                                                        data, epochs)}
    baseline = float(np.mean(np.abs(y[held_out] - y[~held_out].mean())))
    results["baseline_mae"] = baseline
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--synthetic-rows", type=int, default=200_000)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = synthetic_csv(os.path.join(tmp, "synthetic.csv"), args.synthetic_rows)
        cases = [("taxi", TAXI_CSV, "fare", ["payment_type", "company"]),
                 ("synthetic", synthetic, "y", ["shop", "zone"])]
        for name, path, label, categorical in cases:
            results[name] = run_case(name, path, label, categorical, args.epochs, tmp)
    print(f"{'dataset':<10} {'encoding':<10} {'rows':>8} {'params':>8} {'s/epoch':>8} "
          f"{'MAE epoch 1':>12} {'MAE last':>9}  baseline MAE")
    for name, result in results.items():
        for encoding in ("embedding", "one_hot"):
            r = result[encoding]
            print(f"{name:<10} {encoding:<10} {result['rows']:>8,} {r['trainable_parameters']:>8,} "
                  f"{r['seconds_per_epoch']:>8.2f} {r['mae_per_epoch'][0]:>12.4f} {r['mae_per_epoch'][-1]:>9.4f}"
                  f"  {result['baseline_mae']:.4f}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump({"epochs": args.epochs, "results": results}, f, indent=2)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
