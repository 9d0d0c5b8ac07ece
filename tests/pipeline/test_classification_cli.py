"""Labels as users have them, and the user's own model, on the command line.

A penguin-like CSV: measurements on different scales with missing values,
two string columns, an integer year and a three-class label (class names,
or the indices 0/1/2).
"""

import collections
import csv
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from normpipe.serving import verify
from tests.conftest import assert_user_error, run_cli

SPECIES = ("Adelie", "Gentoo", "Chinstrap")
FLOATS = ("bill_length_mm", "body_mass_g", "flipper_length_mm")


def write_penguins(path, n=1500, seed=0, as_index=False):
    """Rows whose species shows in the measurements; returns the rows as dicts."""
    rng = np.random.default_rng(seed)
    k = rng.choice(3, size=n, p=[0.45, 0.35, 0.2])
    values = {"bill_length_mm": 38 + 6 * k + rng.normal(0, 1.5, n),
              "body_mass_g": 3500 + 900 * (k == 1) + rng.normal(0, 300, n),
              "flipper_length_mm": 190 + 12 * k + rng.normal(0, 4, n)}
    rows = []
    for i in range(n):
        row = {name: "" if rng.random() < 0.05 else f"{values[name][i]:.2f}" for name in FLOATS}
        row.update(year=str(rng.choice([2007, 2008, 2009])), island=str(rng.choice(["Biscoe", "Dream"])),
                   sex=str(rng.choice(["male", "female", ""])), species=str(k[i]) if as_index else SPECIES[k[i]])
        rows.append(row)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def tf_example(row):
    feature = {n: tf.train.Feature(float_list=tf.train.FloatList(value=[float(row[n])])) for n in FLOATS if row[n]}
    feature["year"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row["year"])]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def majority_share(rows):
    counts = collections.Counter(r["species"] for r in rows)
    return max(counts.values()) / len(rows)


def classify(version_dir, rows):
    server = verify.ServingSession(version_dir)
    assert server.signatures["classify"].method_name == "tensorflow/serving/classify"
    out = server.run("classify", {"inputs": np.array([tf_example(r) for r in rows], dtype=object)})
    classes = [[c.decode() for c in row] for row in out["classes"]]
    return classes, np.asarray(out["scores"])


@pytest.mark.slow
def test_run_with_a_three_class_string_label(tmp_path):
    rows = write_penguins(tmp_path / "penguins.csv")
    out = tmp_path / "out"
    result = run_cli(["run", "--input", str(tmp_path / "penguins.csv"), "--output-dir", str(out),
                      "--label", "species", "--epochs", "10"], timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "label 'species' (classification)" in result.stdout and "verify: all checks passed" in result.stdout

    # tf.Transform's vocabulary order: decreasing frequency, ties in reverse lexicographic order
    counts = collections.Counter(r["species"] for r in rows)
    expected_order = [name for name, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
    metadata = json.load(open(out / "transform" / "normpipe_transform.json"))
    metrics = json.load(open(out / "model" / "metrics.json"))
    assert metadata["classes"] == metrics["classes"] == expected_order
    assert metrics["task"] == "classification"
    baseline = majority_share(rows)
    for key in ("batch_1", f"batch_{metrics['eval_batch_size']}"):
        assert metrics["variants"]["tft"][key]["accuracy"] > baseline + 0.2, (key, baseline)

    version_dir = out / "serving" / "normpipe" / "1"
    classes, scores = classify(str(version_dir), rows)
    assert all(c == expected_order for c in classes) and scores.shape == (len(rows), 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    truth = np.array([expected_order.index(r["species"]) for r in rows])
    assert np.mean(scores.argmax(axis=1) == truth) > baseline + 0.2
    served = verify.ServingSession(str(version_dir)).signatures["serving_default"].outputs["prediction"]
    assert [d.size for d in served.tensor_shape.dim] == [-1, 3]  # the probabilities
    check = run_cli(["verify", "--model-dir", str(version_dir)])
    assert check.returncode == 0 and "FAIL" not in check.stdout, check.stdout
    report = (out / "report.html").read_text()
    assert all(f"<code>{name}</code>" in report for name in SPECIES)


def _train(tmp_path, name, *flags, env=None):
    out = tmp_path / name
    result = run_cli(["train", "--input", str(tmp_path / "penguins.csv"), "--output-dir", str(out),
                      "--label", "species", "--epochs", "8", *flags], timeout=1800, env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return out, json.load(open(out / "model" / "metrics.json"))


@pytest.mark.slow
def test_integer_label_is_multiclass_unless_task_says_regression(tmp_path):
    rows = write_penguins(tmp_path / "penguins.csv", as_index=True)
    out, metrics = _train(tmp_path, "classes", "--no-all-variants")
    assert metrics["task"] == "classification" and metrics["classes"] == ["0", "1", "2"]
    assert metrics["variants"]["tft"]["batch_1"]["accuracy"] > majority_share(rows) + 0.2
    classes, scores = classify(str(out / "serving" / "normpipe" / "1"), rows[:50])
    assert classes[0] == ["0", "1", "2"] and scores.shape == (50, 3)

    out, metrics = _train(tmp_path, "regression", "--no-all-variants", "--task", "regression")
    assert metrics["task"] == "regression" and metrics["variants"]["tft"]["metric"] == "mae"
    server = verify.ServingSession(str(out / "serving" / "normpipe" / "1"))
    assert server.signatures["regress"].method_name == "tensorflow/serving/regress"
    assert "classify" not in server.signatures


USER_MODELS = '''
import keras


def named_model(feature_names, num_classes):
    """Named [batch, 1] inputs, as TFX's Keras examples declare them."""
    inputs = [keras.Input(shape=(1,), name=name) for name in feature_names]
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def not_a_model(feature_names, num_classes):
    return "model"
'''


def user_models_env(tmp_path):
    (tmp_path / "penguin_models.py").write_text(USER_MODELS)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path)] + sys.path)}


@pytest.mark.slow
def test_train_with_a_user_model_fn(tmp_path):
    rows = write_penguins(tmp_path / "penguins.csv")
    out, metrics = _train(tmp_path, "user", "--model-fn", "penguin_models.named_model", env=user_models_env(tmp_path))
    assert list(metrics["variants"]) == ["model_fn"] and metrics["exported"] == "model_fn"
    assert "not trained" in metrics["variants_not_trained"]
    assert metrics["variants"]["model_fn"]["batch_1"]["accuracy"] > majority_share(rows) + 0.2
    version_dir = out / "serving" / "normpipe" / "1"
    check = run_cli(["verify", "--model-dir", str(version_dir)])  # without the user's module on the path
    assert check.returncode == 0 and "PASS prediction_skew" in check.stdout, check.stdout
    classes, _ = classify(str(version_dir), rows[:10])
    assert sorted(classes[0]) == sorted(SPECIES)
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert "normpipe" in (out / "serving" / "models.config").read_text()


def test_a_bad_model_fn_is_one_line_and_exit_2(tmp_path):
    write_penguins(tmp_path / "penguins.csv", n=50)
    for model_fn, message in (("no_such_module_q.fn", "cannot import 'no_such_module_q'"),
                              ("penguin_models.missing", "has no callable 'missing'")):
        result = run_cli(["train", "--input", str(tmp_path / "penguins.csv"), "--output-dir", str(tmp_path / "o"),
                          "--label", "species", "--model-fn", model_fn], env=user_models_env(tmp_path))
        assert_user_error(result, message)
