"""The serving contract: TF Serving's Regress/Classify signatures, tf.Examples
with the data's own types, raw metadata, verify against the Beam pipeline."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from normpipe.serving import verify
from tests.conftest import run_cli, write_csv

N = 700


def _data(seed, binary=False):
    rng = np.random.default_rng(seed)
    fare = np.round(rng.lognormal(2, 0.5, N), 2)
    fare[rng.random(N) < 0.1] = np.nan
    columns = {
        "trip_start_timestamp": np.round(1.4e9 + rng.uniform(0, 1.3e8, N)),  # an integer column
        "trip_seconds": rng.integers(60, 3000, N).astype(np.float64),
        "fare": fare,
    }
    signal = np.nan_to_num(fare, nan=8.0) + columns["trip_seconds"] / 300
    columns["label"] = (signal > np.median(signal)).astype(np.float64) if binary else signal + rng.normal(0, .2, N)
    return columns


INT_COLUMNS = ("trip_start_timestamp", "trip_seconds")


def _train(directory, seed, binary=False, extra=()):
    # integer columns as integer text, which CSV readers (and CsvExampleGen) type as int64
    columns = {n: [str(int(v)) for v in c] if n in INT_COLUMNS else c for n, c in _data(seed, binary).items()}
    path = write_csv(directory / "data.csv", columns)
    result = run_cli(["train", "--input", str(path), "--output-dir", str(directory / "out"), "--label", "label",
                      "--epochs", "2", "--no-all-variants", "--model-name", "m", *extra])
    assert result.returncode == 0, result.stderr[-3000:]
    return directory / "out"


@pytest.fixture(scope="module")
def regression_export(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("regress"), 5, extra=("--serving-base-path", "/models"))


def _example(row, names):
    feature = {}
    for name, value in zip(names, row):
        if np.isnan(value):
            continue
        if name in INT_COLUMNS:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.slow
def test_regress_signature_has_tf_serving_method_name(regression_export):
    version_dir = regression_export / "serving" / "m" / "1"
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", str(version_dir), "--all"], capture_output=True, text=True,
                           timeout=300).stdout
    block = shown.split("signature_def['regress']:", 1)[1].split("signature_def[", 1)[0]
    assert "Method name is: tensorflow/serving/regress" in block
    assert "inputs['inputs']" in block and "outputs['outputs']" in block


@pytest.mark.slow
def test_examples_with_int64_columns_agree_with_serving_default(regression_export):
    version_dir = str(regression_export / "serving" / "m" / "1")
    data = _data(5)
    names = ["trip_start_timestamp", "trip_seconds", "fare"]
    rows = np.stack([data[n] for n in names], axis=1)[:200]
    rows[:, 2] = rows[:, 2].astype(np.float32)  # what a float_list carries
    serialized = np.array([_example(r, names) for r in rows], dtype=object)
    server = verify.ServingSession(version_dir)
    expected = server.run("serving_default", {n: rows[:, j] for j, n in enumerate(names)})["prediction"]
    from_examples = server.run("serving_examples", {"examples": serialized})["prediction"]
    regressed = np.asarray(server.run("regress", {"inputs": serialized})["outputs"]).reshape(-1)
    np.testing.assert_allclose(from_examples, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(regressed, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_raw_metadata_and_models_config_base_path(regression_export):
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(str(regression_export / "transform")).raw_feature_spec()
    assert spec["trip_start_timestamp"].dtype == tf.int64 and spec["fare"].dtype == tf.float32
    config = (regression_export / "serving" / "models.config").read_text()
    assert 'base_path: "/models/m"' in config


@pytest.mark.slow
def test_verify_sample_holds_the_beam_pipelines_values(regression_export):
    sample = json.loads((regression_export / "serving" / "m" / "1" / "assets.extra" /
                         "normpipe_verify_sample.json").read_text())
    data = _data(5)
    fare = data["fare"]
    present = fare[~np.isnan(fare)]
    expected = np.where(np.isnan(fare), 0.0, (fare - present.mean()) / present.std())
    rows = np.array([[np.nan if v is None else v for v in row] for row in sample["rows"]])
    np.testing.assert_array_equal(rows[:, sample["features"].index("fare")], fare[: len(rows)])
    np.testing.assert_allclose(sample["pipeline_transform"]["fare_z"], expected[: len(rows)], atol=1e-6)


@pytest.mark.slow
def test_tampered_export_fails_verify(regression_export, tmp_path):
    """Another export's graph and model under this export's sample: verify exits 1."""
    other = _train(tmp_path, 99)
    tampered = tmp_path / "tampered"
    shutil.copytree(regression_export / "serving" / "m" / "1", tampered)
    source = other / "serving" / "m" / "1"
    shutil.copy(source / "saved_model.pb", tampered / "saved_model.pb")
    shutil.rmtree(tampered / "variables")
    shutil.copytree(source / "variables", tampered / "variables")
    result = run_cli(["verify", "--model-dir", str(tampered)])
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert "FAIL transform_skew" in result.stdout and "FAIL prediction_skew" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_binary_label_gets_a_classify_signature(tmp_path):
    out = _train(tmp_path, 6, binary=True)
    server = verify.ServingSession(str(out / "serving" / "m" / "1"))
    assert server.signatures["classify"].method_name == "tensorflow/serving/classify"
    result = run_cli(["verify", "--model-dir", str(out / "serving" / "m")])
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "classify (tensorflow/serving/classify)" in result.stdout
