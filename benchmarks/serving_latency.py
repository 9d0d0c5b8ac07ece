"""Serving latency: the exported serving_default with and without in-graph normalization.

For each normalization variant (`tft`: the tf.Transform graph in front of the
model; `constant`: the full-dataset statistics as a constant layer; `learned`)
trains on the bundled taxi sample with `normpipe train`, then exports the same
trained weights a second time without the normalization (serving_default takes
the already-normalized features).
Both are loaded the way TF Serving loads them (TF1 session loader, signatures
run by tensor name) and timed at batch 1 and 1024 in --rounds interleaved
rounds of --repeats / --rounds calls each; the overhead is the median over
rounds of (median with) / (median without) - 1, printed with its 10th-90th
percentile over rounds. Target: in-graph normalization adds at most 5% at
batch 1.

    .venv/bin/python benchmarks/serving_latency.py [--repeats 2000] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


VARIANTS = ("tft", "constant", "learned")


def train(out, variant):
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    subprocess.run([exe, "train", "--input", os.path.join(ROOT, "data", "chicago_taxi_15k.csv"), "--output-dir", out,
                    "--label", "tips", "--no-all-variants", "--epochs", "2", "--model-name", "with_norm",
                    "--normalization", variant],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def export_without_normalization(out, features):
    """The same trained weights, served on already-normalized float32 inputs."""
    import keras
    import tensorflow as tf

    import normpipe.components.layers  # noqa: F401

    model = keras.saving.load_model(os.path.join(out, "model", "model.keras"))
    names = [f"{n}_z" for n in features]
    specs = {n: tf.TensorSpec([None], tf.float32, name=n) for n in names}
    # Drop the raw-input variants' normalization layer; keep the rest as is.
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]

    def serve(inputs):
        h = tf.stack([inputs[n] for n in names], axis=1)
        for layer in dense:
            h = layer(h)
        return {"prediction": tf.reshape(h, [-1])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[specs])
    path = os.path.join(out, "serving", "without_norm", "1")
    archive.write_out(path, verbose=False)
    return path, names


def timed(server, signature, inputs, repeats):
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        server.run(signature, inputs)
        samples[i] = time.perf_counter() - start
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds (A B A B ...)")
    parser.add_argument("--keep", action="store_true", help="keep the exports")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="normpipe-latency-")
    try:
        from normpipe.serving import verify

        all_results = {}
        for variant in VARIANTS:
            out = os.path.join(root, variant)
            train(out, variant)
            all_results[variant] = measure(out, args, verify)
        print(f"{'variant':<9} {'batch':>6} {'with normalization':>20} {'without':>12} {'overhead':>10}  rounds p10..p90")
        for variant, results in all_results.items():
            for batch, r in results.items():
                low, high = r["overhead_rounds_p10_p90"]
                print(f"{variant:<9} {batch:>6} {r['with_normalization_us']:>17.1f} us "
                      f"{r['without_normalization_us']:>9.1f} us {r['overhead']:>+9.1%}  {low:+.1%}..{high:+.1%}")
        status = 0
        for variant, results in all_results.items():
            ok = results[1]["overhead"] <= 0.05
            status |= 0 if ok else 1
            print(
                f"{'PASS' if ok else 'FAIL'}  {variant}: in-graph normalization adds <= 5% at batch 1: "
                f"{results[1]['overhead']:+.1%}"
            )
        os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "benchmarks", "results", "serving_latency.json"), "w") as f:
            json.dump({v: {str(k): r for k, r in res.items()} for v, res in all_results.items()}, f, indent=2)
        return status
    finally:
        if args.keep:
            print(f"exports kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def measure(out, args, verify):
    """Median call time of both exports at batch 1 and 1024, interleaved."""

    with_dir = os.path.join(out, "serving", "with_norm", "1")
    with open(os.path.join(with_dir, "assets.extra", "normpipe_verify_sample.json")) as f:
        sample = json.load(f)
    features = sample["features"]
    without_dir, names = export_without_normalization(out, features)
    rows = np.array([[np.nan if v is None else v for v in row] for row in sample["rows"]])
    with_server, without_server = verify.ServingSession(with_dir), verify.ServingSession(without_dir)
    results = {}
    for batch in (1, 1024):
        chosen = rows[np.arange(batch) % len(rows)]
        raw = {n: chosen[:, j] for j, n in enumerate(features)}
        normalized = with_server.run("transform_features", raw)
        pre = {n: normalized[n] for n in names}
        for server, inputs in ((with_server, raw), (without_server, pre)):
            timed(server, "serving_default", inputs, 200)  # warm up
        a, b = [], []
        for _ in range(args.rounds):
            a.append(timed(with_server, "serving_default", raw, args.repeats // args.rounds))
            b.append(timed(without_server, "serving_default", pre, args.repeats // args.rounds))
        t_with, t_without = np.median(np.concatenate(a)), np.median(np.concatenate(b))
        # Each round times both exports back to back; the median of the
        # per-round ratios cancels the machine's drift between rounds.
        ratios = [np.median(x) / np.median(y) for x, y in zip(a, b)]
        results[batch] = {"with_normalization_us": t_with * 1e6, "without_normalization_us": t_without * 1e6,
                          "overhead": float(np.median(ratios)) - 1,
                          "overhead_rounds_p10_p90": [float(np.percentile(ratios, q)) - 1 for q in (10, 90)]}
    return results


if __name__ == "__main__":
    sys.exit(main())
