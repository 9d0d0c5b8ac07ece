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
    sample["transform_features"]["fare_z"][0] += 1e-3  # what the pipeline computed differs from serving
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
