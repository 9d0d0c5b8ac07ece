"""`normpipe train` then `normpipe verify`, as a user runs them."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli, write_csv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(8)
    n = 1200
    fare = rng.lognormal(2, 0.6, n)
    cols = {
        "fare": fare,
        "ts": np.round(1.4e9 + rng.uniform(0, 1e8, n)),
        "miles": np.where(rng.random(n) < 0.05, np.nan, fare / 3 + rng.normal(0, 0.5, n)),
        "const": np.full(n, 4.0),
        "tips": 0.15 * fare + rng.normal(0, 0.3, n),
    }
    path = write_csv(tmp / "d.csv", cols)
    out = tmp / "out"
    result = run_cli(["train", "--input", str(path), "--output-dir", str(out), "--label", "tips",
                      "--model-name", "tips", "--epochs", "3"])
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "csv": path}


@pytest.mark.slow
def test_train_reports_every_variant_and_exports(trained):
    metrics = json.loads((trained["out"] / "model" / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"tft", "constant", "learned", "batch"}
    assert metrics["task"] == "regression" and metrics["exported"] == "tft"
    for variant in ("tft", "constant", "learned"):
        m = metrics["variants"][variant]
        assert m["batch_1"]["mae"] == pytest.approx(m["batch_4096"]["mae"], rel=1e-4), variant
    assert (trained["out"] / "model" / "model.keras").exists()
    assert (trained["out"] / "serving" / "tips" / "1" / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert "tft" in trained["stdout"] and "large batch" in trained["stdout"]


@pytest.mark.slow
def test_verify_passes_after_deleting_the_pipeline_outputs(trained, tmp_path):
    # copy the export alone: transform/, statistics.json and model/ are gone
    export = tmp_path / "tips"
    shutil.copytree(trained["out"] / "serving" / "tips", export)
    result = run_cli(["verify", "--model-dir", str(export)])
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    for check in ("signatures", "warmup", "one_row", "transform_skew", "prediction_skew", "examples"):
        assert f"PASS {check}:" in result.stdout, result.stdout


@pytest.mark.slow
def test_warmup_file_parses_as_prediction_logs(trained):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = trained["out"] / "serving" / "tips" / "1" / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    assert 0 < len(logs) <= 1000
    request = logs[0].predict_log.request
    assert request.model_spec.name == "tips" and set(request.inputs) == {"fare", "ts", "miles", "const"}


@pytest.mark.slow
def test_verify_fails_on_a_skewed_export(trained, tmp_path):
    export = tmp_path / "tips"
    shutil.copytree(trained["out"] / "serving" / "tips", export)
    sample_path = export / "1" / "assets.extra" / "normpipe_verify_sample.json"
    sample = json.loads(sample_path.read_text())
    # what the Beam pipeline computed for a sample row differs from serving
    sample["pipeline_transform"]["fare_z"][0] += 1e-3
    sample_path.write_text(json.dumps(sample))
    result = run_cli(["verify", "--model-dir", str(export)])
    assert result.returncode == 1
    assert "FAIL transform_skew:" in result.stdout


@pytest.mark.slow
def test_batch_variant_needs_opt_in(tmp_path, trained):
    result = run_cli(["train", "--input", str(trained["csv"]), "--output-dir", str(tmp_path), "--label", "tips",
                      "--normalization", "batch"])
    assert result.returncode == 2 and "--allow-batch-statistics" in result.stderr
    assert not os.path.exists(tmp_path / "serving")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["constant", "learned"])
def test_other_variants_export_and_verify(trained, tmp_path, variant):
    result = run_cli(["train", "--input", str(trained["csv"]), "--output-dir", str(tmp_path), "--label", "tips",
                      "--normalization", variant, "--no-all-variants", "--epochs", "1", "--model-name", variant])
    assert result.returncode == 0, result.stderr[-3000:]
    verify = run_cli(["verify", "--model-dir", str(tmp_path / "serving" / variant)])
    assert verify.returncode == 0, verify.stdout
    assert "PASS one_row:" in verify.stdout and "PASS prediction_skew:" in verify.stdout


@pytest.mark.slow
def test_signatures_after_deleting_transform_output(trained):
    """Runs last in this module: removes the pipeline's outputs, keeps the export."""
    import keras
    import tensorflow as tf

    import normpipe.components.layers  # noqa: F401  -- registers the layers for load_model

    out = trained["out"]
    model = keras.saving.load_model(str(out / "model" / "model.keras"), safe_mode=True)
    sample = json.loads((out / "serving" / "tips" / "1" / "assets.extra" / "normpipe_verify_sample.json").read_text())
    for name in ("transform", "transformed", "statistics.json"):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    loaded = tf.saved_model.load(str(out / "serving" / "tips" / "1"))
    rows = np.array([[np.nan if v is None else v for v in row] for row in sample["rows"][:50]])
    inputs = {n: tf.constant(rows[:, j]) for j, n in enumerate(sample["features"])}
    served = loaded.signatures["serving_default"](**inputs)["prediction"].numpy()
    normalized = loaded.signatures["transform_features"](**inputs)
    x = tf.stack([normalized[f"{n}_z"] for n in sample["features"]], axis=1)
    np.testing.assert_allclose(served, np.asarray(model(x)).reshape(-1), rtol=1e-6, atol=1e-6)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        n: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for n, v in zip(sample["features"], row) if not np.isnan(v)
    })).SerializeToString() for row in rows]
    from_examples = loaded.signatures["serving_examples"](examples=tf.constant(examples))["prediction"].numpy()
    assert from_examples.shape == served.shape and np.all(np.isfinite(from_examples))


@pytest.mark.slow
def test_verify_fails_without_traceback_on_truncated_variables(trained, tmp_path):
    from tests.pipeline.test_verify_cli import truncate, variables_data  # pylint: disable=import-outside-toplevel

    version = tmp_path / "1"
    shutil.copytree(trained["out"] / "serving" / "tips" / "1", version)
    truncate(variables_data(str(version)), 0.3)
    result = run_cli(["verify", "--model-dir", str(version)])
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "FAIL load:" in result.stdout, result.stdout
