"""Serving client: request bodies, and `normpipe predict` against a REST server.

The local server below speaks TF Serving's REST predict and metadata API over
loopback and answers with the exported SavedModel itself; a real
`tensorflow_model_server` is used when TFSERVING_BIN or TFSERVING_URL is set.
"""

import contextlib
import http.server
import json
import math
import os
import subprocess
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from normpipe.core.errors import UserError
from normpipe.io import ingest
from normpipe.serving import export, serving_client
from tests.components.test_transform import run_transform
from tests.conftest import free_port, run_cli, write_csv


def test_request_body_row_format_with_nan():
    rows = [{"fare": 12.5, "miles": math.nan}, {"fare": -1.0, "miles": 3.0}]
    body = serving_client.build_predict_request(rows)
    text = serving_client.encode_request(body).decode()
    assert '"miles": NaN' in text
    parsed = json.loads(text)
    assert parsed["signature_name"] == "serving_default"
    assert parsed["instances"][1] == {"fare": -1.0, "miles": 3.0}
    assert math.isnan(parsed["instances"][0]["miles"])


def test_read_rows_errors(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1,\n2,x\n")
    with pytest.raises(UserError, match="line 3 column 'b': non-numeric value 'x'"):
        serving_client.read_rows(str(path))
    with pytest.raises(UserError, match="no column"):
        serving_client.read_rows(str(path), ["a", "c"])
    path.write_text("a,b\n1,\n")
    (row,) = serving_client.read_rows(str(path))
    assert row["a"] == 1.0 and math.isnan(row["b"])



def test_read_rows_from_a_uri(tmp_path):
    """`predict --input` on a URI (ram://, standing for gs:// and s3://) reads
    the same rows as the local file, and a missing one is one line."""
    import uuid

    import tests.io.ramfs  # noqa: F401  (registers ram:// with Beam's FileSystems)

    text = "fare,miles\n12.5,\n-1,3\n"
    local = tmp_path / "rows.csv"
    local.write_text(text)
    uri = f"ram://predict-{uuid.uuid4().hex}/rows.csv"
    tf.io.gfile.makedirs(uri.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(uri, "w") as f:
        f.write(text)
    from_uri = serving_client.read_rows(uri, ["miles", "fare"])
    from_file = serving_client.read_rows(str(local), ["miles", "fare"])
    assert len(from_uri) == 2 and from_uri[1] == {"miles": 3.0, "fare": -1.0}
    assert math.isnan(from_uri[0]["miles"]) and from_uri[0]["fare"] == 12.5
    assert [list(r) for r in from_uri] == [list(r) for r in from_file]
    with pytest.raises(UserError, match=r"ram://predict-\w+/absent\.csv: no such file"):
        serving_client.read_rows(uri.replace("rows.csv", "absent.csv"))


@pytest.fixture(scope="module")
def servable(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(4)
    data = {"fare": rng.lognormal(2, 0.5, 300), "ts": np.round(1.4e9 + rng.uniform(0, 1e8, 300))}
    path = write_csv(tmp / "d.csv", data)
    spec = ingest.inspect_input(str(path))
    transform_dir, _ = run_transform(tmp, spec, method="zscore")
    version = export.export_normalization_model(transform_dir, str(tmp / "serving"), "norm")
    return {"csv": path, "data": data, "version": version, "serving": tmp / "serving", "transform_dir": transform_dir}


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST API for one model, answered by the SavedModel."""

    model = None
    name = None
    bodies = []

    def log_message(self, *args):
        pass

    def _reply(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        signature = self.model.signatures["serving_default"]
        inputs = {k: {"dtype": "DT_STRING" if spec.dtype == tf.string else "DT_DOUBLE"}
                  for k, spec in signature.structured_input_signature[1].items()}
        self._reply({"metadata": {"signature_def": {"signature_def": {"serving_default": {"inputs": inputs}}}}})

    def do_POST(self):
        if not self.path.endswith(f"/v1/models/{self.name}:predict"):
            return self._reply({"error": "not found"}, 404)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        instances = body["instances"]
        if isinstance(instances[0], list):  # a signature of one input: each instance is its value
            (name,) = self.model.signatures[body["signature_name"]].structured_input_signature[1]
            inputs = {name: tf.constant(instances, tf.float64)}
        else:
            specs = self.model.signatures[body["signature_name"]].structured_input_signature[1]
            inputs = {k: tf.constant([row[k] for row in instances], specs[k].dtype) for k in instances[0]}
        outputs = {k: v.numpy().tolist() for k, v in self.model.signatures[body["signature_name"]](**inputs).items()}
        rows = [{k: outputs[k][i] for k in outputs} for i in range(len(instances))]
        self._reply({"predictions": rows if len(outputs) > 1 else [r[next(iter(outputs))] for r in rows]})


def test_predict_cli_against_rest_server(servable, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("ts,fare,extra\n1450000000,12.5,x\n,20,y\n")
    with _fake_server(servable["version"], "norm") as url:
        result = run_cli(["predict", "--server", url, "--model", "norm", "--input", str(rows)])
    assert result.returncode == 0, result.stderr[-2000:]
    sent = _FakeServing.bodies[-1]
    assert set(sent["instances"][0]) == {"fare", "ts"}  # from the model's metadata; `extra` not sent
    predictions = [json.loads(line) for line in result.stdout.splitlines()]
    # normalized with the training set's statistics, computed here with numpy
    mean, std = servable["data"]["fare"].mean(), servable["data"]["fare"].std()
    np.testing.assert_allclose([p["fare_z"] for p in predictions], (np.array([12.5, 20.0]) - mean) / std, rtol=1e-5)
    assert predictions[1]["ts_z"] == 0.0  # missing -> imputed mean


def test_predict_cli_sends_categorical_columns_as_text(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "d.csv"
    cities = ["Zürich", "Kraków", "東京"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("fare,city\n" + "".join(f"{rng.uniform(5, 50):.2f},{cities[i % 3]}\n" for i in range(300)))
    spec = ingest.inspect_input(str(path))
    assert spec.categorical == ("city",)
    transform_dir, _ = run_transform(tmp_path, spec, method="zscore")
    version = export.export_normalization_model(transform_dir, str(tmp_path / "serving"), "norm",
                                                serving_inputs="matrix")
    rows = tmp_path / "rows.csv"
    rows.write_text("city,fare\nKraków,12.5\n,20\nAtlantis,7\n", encoding="utf-8")
    with _fake_server(version, "norm") as url:
        result = run_cli(["predict", "--server", url, "--model", "norm", "--input", str(rows),
                          "--model-dir", str(tmp_path / "serving" / "norm")])
    assert result.returncode == 0, result.stderr[-2000:]
    sent = _FakeServing.bodies[-1]["instances"]
    assert sent[0] == {"normpipe_feature_matrix": [12.5], "city": "Kraków"} and sent[1]["city"] == ""
    predictions = [json.loads(line) for line in result.stdout.splitlines()]
    # each city is 100 of 300 rows: vocabulary order is then reverse lexicographic (bytes)
    order = sorted(cities, key=lambda c: c.encode(), reverse=True)
    assert [p["city_id"] for p in predictions] == [1 + order.index("Kraków"), 0, len(cities) + 1]


@contextlib.contextmanager
def _fake_server(version, name):
    _FakeServing.model = tf.saved_model.load(version)
    _FakeServing.name = name
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeServing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_predict_cli_sends_rows_of_a_matrix_model_in_its_column_order(servable, tmp_path):
    """A serving_default of one [batch, F] matrix: each row goes as a list in
    the export's column order (normpipe_features.json), whatever the CSV's."""
    from normpipe.serving import serving_layout

    version = export.export_normalization_model(servable["transform_dir"], str(tmp_path / "serving"), "mat",
                                                serving_inputs="matrix")
    columns = serving_layout.read_features_file(version)["inputs"]
    rows = tmp_path / "rows.csv"
    rows.write_text("extra,ts,fare\nx,1450000000,12.5\ny,,20\n")
    with _fake_server(version, "mat") as url:
        refused = run_cli(["predict", "--server", url, "--model", "mat", "--input", str(rows)])
        result = run_cli(["predict", "--server", url, "--model", "mat", "--input", str(rows), "--model-dir",
                          str(tmp_path / "serving" / "mat")])
    assert refused.returncode == 2 and "pass --model-dir" in refused.stderr and "Traceback" not in refused.stderr
    assert result.returncode == 0, result.stderr[-2000:]
    values = {"fare": [12.5, 20.0], "ts": [1450000000.0, math.nan]}
    sent = _FakeServing.bodies[-1]["instances"]
    assert len(sent) == 2 and all(len(r) == len(columns) for r in sent)
    np.testing.assert_array_equal(np.array(sent), np.array([[values[c][i] for c in columns] for i in range(2)]))
    predictions = np.array([json.loads(line) for line in result.stdout.splitlines()])
    j = columns.index("fare")
    mean, std = servable["data"]["fare"].mean(), servable["data"]["fare"].std()
    np.testing.assert_allclose(predictions[:, j], (np.array(values["fare"]) - mean) / std, rtol=1e-5)
    assert predictions[1, columns.index("ts")] == 0.0  # missing -> imputed mean


def test_predict_cli_unreachable_server(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("a\n1\n")
    result = run_cli(
        ["predict", "--server", f"http://127.0.0.1:{free_port()}", "--model", "m", "--input", str(rows),
         "--timeout", "5"]
    )
    assert result.returncode == 2 and "normpipe: error:" in result.stderr and "Traceback" not in result.stderr


def _real_server(servable):
    """(url, process) of a real tensorflow_model_server, or a skip."""
    if os.environ.get("TFSERVING_URL"):
        return os.environ["TFSERVING_URL"], None
    binary = os.environ.get("TFSERVING_BIN")
    if not binary:
        pytest.skip(
            "no TF Serving: set TFSERVING_BIN=/path/to/tensorflow_model_server "
            "(or TFSERVING_URL with the exported model loaded as 'norm')"
        )
    port = free_port()
    process = subprocess.Popen([binary, f"--rest_api_port={port}", "--port=0",
                                f"--model_config_file={servable['serving'] / 'models.config'}"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        with contextlib.suppress(UserError):  # not listening yet
            if serving_client.model_inputs(url, "norm", timeout=2):
                return url, process
        time.sleep(0.5)
    process.kill()
    pytest.fail("tensorflow_model_server did not load the model in 60 s")


def test_real_tensorflow_model_server(servable, tmp_path):
    url, process = _real_server(servable)
    try:
        rows = serving_client.read_rows(str(servable["csv"]), ["fare", "ts"])[:5]
        predictions = serving_client.predict(url, "norm", rows)
    finally:
        if process:
            process.kill()
    direct = tf.saved_model.load(servable["version"]).signatures["serving_default"](
        fare=tf.constant([r["fare"] for r in rows], tf.float64), ts=tf.constant([r["ts"] for r in rows], tf.float64)
    )
    np.testing.assert_allclose([p["fare_z"] for p in predictions], direct["fare_z"].numpy(), rtol=1e-6)
