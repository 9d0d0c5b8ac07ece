"""Export: the normalization servable, reloaded hermetically."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from normpipe.core.errors import UserError
from normpipe.io import ingest
from normpipe.serving import export, servable_files, serving_layout
from tests.components.test_transform import numpy_normalize, run_transform
from tests.conftest import read_csv_float64, write_csv


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(9)
    n = 400
    data = {
        "fare": rng.lognormal(2, 0.5, n),
        "ts": np.round(1.4e9 + rng.uniform(0, 1e8, n)),
        "lat": np.where(rng.random(n) < 0.1, np.nan, 41.9 + rng.normal(0, 0.04, n)),
        "const": np.full(n, 3.0),
        "tips": rng.exponential(1, n),
    }
    path = write_csv(tmp / "d.csv", data)
    spec = ingest.inspect_input(str(path), label="tips")
    transform_dir, _ = run_transform(tmp, spec, method="both")
    serving = tmp / "serving"
    version = export.export_normalization_model(transform_dir, str(serving), "taxi")
    shutil.rmtree(transform_dir)  # hermetic: nothing of the pipeline's output is needed
    return {"path": path, "serving": serving, "version": version, "features": list(spec.features)}


def call(version_dir, signature, **inputs):
    loaded = tf.saved_model.load(version_dir)
    return {k: v.numpy() for k, v in loaded.signatures[signature](**inputs).items()}


def test_layout_and_versions(exported):
    assert exported["version"] == str(exported["serving"] / "taxi" / "1")
    import json

    recorded = json.loads(open(os.path.join(exported["version"], "assets.extra", "normpipe_features.json")).read())
    assert recorded["inputs"] == exported["features"] and recorded["renamed"] == {}
    assert sorted(os.listdir(exported["serving"] / "taxi")) == ["1"]
    assert os.path.exists(os.path.join(exported["version"], "saved_model.pb"))


def test_each_signature_after_deleting_transform_output(exported):
    raw = read_csv_float64(exported["path"], exported["features"])
    inputs = {n: tf.constant(raw[n]) for n in exported["features"]}
    for signature in ("serving_default", "transform_features"):
        out = call(exported["version"], signature, **inputs)
        for name in exported["features"]:
            np.testing.assert_allclose(out[name + "_z"], numpy_normalize(raw[name], "zscore"), atol=2e-6, rtol=2e-6)
            np.testing.assert_allclose(out[name + "_01"], numpy_normalize(raw[name], "minmax"), atol=2e-6, rtol=2e-6)
    examples = []
    for i in range(5):
        feature = {
            n: tf.train.Feature(float_list=tf.train.FloatList(value=[raw[n][i]]))
            for n in exported["features"] if not np.isnan(raw[n][i])
        }
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    out = call(exported["version"], "serving_examples", examples=tf.constant(examples))
    expected = numpy_normalize(raw["fare"], "zscore")[:5]
    np.testing.assert_allclose(out["fare_z"], expected, atol=1e-5)  # tf.Example floats are float32


def test_one_row_nan_and_inf_requests_are_finite(exported):
    for value in (12.5, np.nan, np.inf, -np.inf, 1e39):
        inputs = {n: tf.constant([value], tf.float64) for n in exported["features"]}
        out = call(exported["version"], "serving_default", **inputs)
        assert all(np.all(np.isfinite(v)) for v in out.values()), value
    nan_row = call(exported["version"], "serving_default", **{n: tf.constant([np.nan], tf.float64) for n in exported["features"]})
    assert nan_row["fare_z"][0] == 0.0  # imputed with the mean


def test_missing_input_is_rejected(exported):
    loaded = tf.saved_model.load(exported["version"])
    with pytest.raises(TypeError):
        loaded.signatures["serving_default"](fare=tf.constant([1.0], tf.float64))


def test_saved_model_cli_lists_the_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", exported["version"], "--all"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("serving_default", "serving_examples", "transform_features"):
        assert f"signature_def['{name}']" in result.stdout
    assert "DT_DOUBLE" in result.stdout and "examples" in result.stdout


def test_signature_summary_is_what_the_loaded_model_reports(exported):
    loaded = tf.saved_model.load(exported["version"])
    expected = {}
    for name, fn in loaded.signatures.items():
        expected[name] = {
            "inputs": {k: f"{v.dtype.name} {v.shape.as_list()}" for k, v in fn.structured_input_signature[1].items()},
            "outputs": {k: f"{v.dtype.name} {v.shape.as_list()}" for k, v in fn.structured_outputs.items()},
        }
    summary = servable_files.signature_summary(exported["version"])
    assert summary == expected
    assert summary["serving_default"]["inputs"]["ts"] == "float64 [None]"
    assert summary["serving_examples"]["inputs"] == {"examples": "string [None]"}


def test_models_config_parses_as_model_server_config(exported):
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((exported["serving"] / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert entry.name == "taxi" and entry.model_platform == "tensorflow"
    assert entry.base_path == str(exported["serving"] / "taxi")


def test_failed_export_leaves_no_version(tmp_path, monkeypatch, exported):
    spec = ingest.inspect_input(str(exported["path"]), label="tips")
    transform_dir, _ = run_transform(tmp_path, spec)

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(export.ServingModule, "write", boom)
    with pytest.raises(RuntimeError):
        export.export_normalization_model(str(transform_dir), str(tmp_path / "serving"), "m")
    assert os.listdir(tmp_path / "serving" / "m") == []


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "bad name"])
def test_model_name_cannot_escape(name):
    with pytest.raises(UserError, match="model-name"):
        serving_layout.check_model_name(name)


def test_publish_takes_next_free_version(tmp_path):
    model_dir = tmp_path / "m"
    for _ in range(3):
        staging = tmp_path / "m" / ".staging"
        os.makedirs(staging)
        servable_files.publish_version(str(staging), str(model_dir))
    assert serving_layout.existing_versions(str(model_dir)) == [1, 2, 3]
