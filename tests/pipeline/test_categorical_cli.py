"""Categorical columns from the file to TF Serving's signatures.

A table whose label depends mostly on a unicode text column (`city`) and an
integer-coded one (`area`): `normpipe run` with them against the same run
without them, the served signatures and their answers to values never seen,
and the same from TFRecord (bytes features, a string label) and Parquet
(string and dictionary columns) input, with matrix signatures.
"""

import collections
import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from normpipe.io import ingest
from normpipe.serving import verify
from tests.conftest import assert_user_error, run_cli

CITIES = ("Zürich", "São Paulo", "東京", "Kraków", "Montréal", "Reykjavík", "Αθήνα", "Москва")


def make_rows(n=4000, seed=0):
    """Rows whose label is mostly the city's and the area's effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        city = CITIES[rng.integers(len(CITIES))] if rng.random() > 0.03 else ""
        area = int(rng.integers(1, 20))
        x1, x2 = rng.normal(), rng.normal(10, 3)
        effect = (CITIES.index(city) * 3.0 if city else 10.0) + (area % 5) * 4.0
        rows.append({"x1": round(x1, 5), "x2": round(x2, 5), "city": city, "area": area,
                     "y": round(effect + 0.5 * x1 + rng.normal(0, 0.3), 4)})
    return rows


def write_csv(path, rows, columns):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def run(tmp_path, name, input_path, *flags):
    out = tmp_path / name
    result = run_cli(["run", "--input", input_path, "--output-dir", str(out), "--label", "y", *flags], timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def held_out_mae(out):
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    return metrics["variants"]["tft"][f"batch_{metrics['eval_batch_size']}"]["mae"]


def expected_ids(values, min_count=5, oov_buckets=1):
    """The ids of `values` computed from their counts alone: 0 for "",
    1 + the rank in tf.Transform's vocabulary order (count descending, then
    the value's bytes descending) for a value seen min_count times, else
    the out-of-vocabulary id (one bucket)."""
    counts = collections.Counter(v for v in values if v != "")
    vocabulary = sorted((v for v, c in counts.items() if c >= min_count),
                        key=lambda v: (counts[v], v.encode("utf-8")), reverse=True)
    rank = {v: i + 1 for i, v in enumerate(vocabulary)}
    assert oov_buckets == 1
    return np.array([0 if v == "" else rank.get(v, len(vocabulary) + 1) for v in values])


@pytest.mark.slow
def test_categories_beat_the_run_without_them_and_serve_strings(tmp_path):
    rows = make_rows()
    full = write_csv(tmp_path / "d.csv", rows, ["x1", "x2", "city", "area", "y"])
    numeric_only = write_csv(tmp_path / "numeric.csv", rows, ["x1", "x2", "y"])
    out, result = run(tmp_path, "with", full, "--categorical", "city,area")
    without, _ = run(tmp_path, "without", numeric_only)
    with_mae, without_mae = held_out_mae(out), held_out_mae(without)
    assert with_mae < 0.25 * without_mae, (with_mae, without_mae)
    assert "PASS unseen" in result.stderr and "verify: FAILED" not in result.stdout

    # statistics.json: each category's counts, against Python's Counter
    document = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    counted = collections.Counter(r["city"] for r in rows)
    city = document["categorical"]["city"]
    assert city["missing"] == counted.pop("") and city["distinct"] == len(counted) == len(CITIES)
    assert city["top"][0] == [min(counted, key=lambda v: (-counted[v], v)), max(counted.values())]
    assert document["categorical"]["area"]["distinct"] == len({r["area"] for r in rows})
    assert set(document["features"]) == {"x1", "x2"}

    version_dir = str(out / "serving" / "normpipe" / "1")
    server = verify.ServingSession(version_dir)
    inputs = server.signatures["serving_default"].inputs
    assert {n: tf.dtypes.as_dtype(inputs[n].dtype).name for n in inputs} == {
        "x1": "float64", "x2": "float64", "city": "string", "area": "string"}
    request = {"x1": np.array([0.1, 0.1, 0.1]), "x2": np.array([10.0, 10.0, np.nan]),
               "city": np.array([b"Atlantis", b"", "Zürich".encode()], dtype=object),
               "area": np.array([b"999", b"", b"3"], dtype=object)}
    predictions = server.run("serving_default", request)["prediction"]
    assert predictions.shape == (3,) and np.all(np.isfinite(predictions))
    # the served ids: tf.Transform's vocabulary, as counted here from the raw values
    texts = {"city": [r["city"] for r in rows], "area": [str(r["area"]) for r in rows]}
    probe = {"x1": np.zeros(len(rows)), "x2": np.zeros(len(rows)),
             **{n: np.array([v.encode() for v in values], dtype=object) for n, values in texts.items()}}
    served = server.run("transform_features", probe)
    for name, values in texts.items():
        np.testing.assert_array_equal(served[name + "_id"], expected_ids(values), err_msg=name)
    unseen = server.run("transform_features", {**{k: v[:3] for k, v in request.items()}})
    assert unseen["city_id"].tolist() == [len(CITIES) + 1, 0, expected_ids(texts["city"] + ["Zürich"])[-1]]

    verified = run_cli(["verify", "--model-dir", str(out / "serving" / "normpipe")])
    assert verified.returncode == 0, verified.stdout + verified.stderr[-2000:]
    assert "PASS unseen" in verified.stdout and "2 DT_STRING inputs" in verified.stdout
    # the report's curl line carries the strings
    curl = json.loads((out / "run.json").read_text())["curl"]
    body = json.loads(curl.split(" -d '", 1)[1][:-1])
    assert body["instances"][0]["city"] == rows[0]["city"] and body["instances"][0]["area"] == str(rows[0]["area"])


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))


@pytest.mark.slow
def test_tfrecord_bytes_features_and_a_string_label(tmp_path):
    rows = make_rows(3000, seed=1)
    path = tmp_path / "d.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in rows:
            feature = {"x1": tf.train.Feature(float_list=tf.train.FloatList(value=[r["x1"]])),
                       "area": tf.train.Feature(int64_list=tf.train.Int64List(value=[r["area"]])),
                       "label": _bytes("high" if r["y"] > 15 else "low")}
            if r["city"]:
                feature["city"] = _bytes(r["city"])
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    spec = ingest.inspect_input(str(path), label="label", categorical=("city", "area"))
    assert spec.categorical == ("city", "area") and spec.codes == ("area",) and spec.string_label
    out = tmp_path / "out"
    result = run_cli(["run", "--input", str(path), "--output-dir", str(out), "--label", "label",
                      "--categorical", "city,area", "--epochs", "8"], timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verify: FAILED" not in result.stdout and "PASS examples" in result.stderr
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["classes"] == sorted(["high", "low"], key=lambda c: -sum(
        ("high" if r["y"] > 15 else "low") == c for r in rows))
    accuracy = metrics["variants"]["tft"][f"batch_{metrics['eval_batch_size']}"]["accuracy"]
    assert accuracy > 0.9, metrics
    # classify on tf.train.Examples as the files hold them: the class names
    server = verify.ServingSession(str(out / "serving" / "normpipe" / "1"))
    serialized = np.array([r.numpy() for r in tf.data.TFRecordDataset(str(path)).take(50)], dtype=object)
    classified = server.run("classify", {"inputs": serialized})
    assert sorted(c.decode() for c in classified["classes"][0]) == ["high", "low"]
    assert np.all(np.isfinite(classified["scores"]))


@pytest.mark.slow
def test_parquet_string_and_dictionary_columns_with_matrix_signatures(tmp_path):
    rows = make_rows(3000, seed=2)
    table = pa.table({
        "x1": [r["x1"] for r in rows], "x2": [r["x2"] for r in rows],
        "city": pa.array([r["city"] or None for r in rows]).dictionary_encode(),
        "area": [str(r["area"]) for r in rows],
        "kind": ["high" if r["y"] > 15 else "low" for r in rows],
    })
    path = tmp_path / "d.parquet"
    pq.write_table(table, str(path), row_group_size=700)
    out = tmp_path / "out"
    result = run_cli(["run", "--input", str(path), "--output-dir", str(out), "--label", "kind",
                      "--serving-inputs", "matrix", "--epochs", "8"], timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verify: FAILED" not in result.stdout and "PASS unseen" in result.stderr
    statistics = json.loads((out / "statistics.json").read_text(encoding="utf-8"))
    assert statistics["categorical"]["city"]["missing"] == sum(1 for r in rows if not r["city"])
    server = verify.ServingSession(str(out / "serving" / "normpipe" / "1"))
    inputs = server.signatures["serving_default"].inputs
    assert sorted(inputs) == ["area", "city", "normpipe_feature_matrix"]
    assert inputs["city"].dtype == tf.string.as_datatype_enum
    request = {"normpipe_feature_matrix": np.array([[0.0, 10.0], [np.nan, np.nan]]),
               "city": np.array([b"Atlantis", b""], dtype=object), "area": np.array([b"7", b""], dtype=object)}
    scores = server.run("serving_default", request)["prediction"]
    assert np.all(np.isfinite(scores))
    features = server.run("transform_features", request)
    assert features["city_id"].tolist() == [len(CITIES) + 1, 0]


def test_categorical_flags_are_checked(tmp_path):
    path = write_csv(tmp_path / "d.csv", make_rows(50), ["x1", "x2", "city", "area", "y"])
    spec = ingest.inspect_input(path, label="y", categorical=("area",))
    assert spec.features == ("x1", "x2") and spec.categorical == ("area",) and spec.codes == ("area",)
    assert spec.strings == ("city",)
    default = ingest.inspect_input(path, label="y")
    assert default.categorical == ("city",) and default.features == ("x1", "x2", "area")
    for flags, expected in [
        (["--categorical", "y", "--label", "y"], "--categorical: column 'y' is the label"),
        (["--categorical", "x1", "--features", "x1,x2"], "--categorical: column 'x1' is also listed in --features"),
        (["--categorical", "nope"], "--categorical: no column 'nope'"),
        (["--categorical", "x1,x2,area", "--label", "y"], "no numeric feature columns found"),
        (["--vocabulary-min-count", "0"], "--vocabulary-min-count: expected a positive integer"),
    ]:
        command = "stats" if "--vocabulary-min-count" not in flags else "transform"
        result = run_cli([command, "--input", path, "--output-dir", str(tmp_path / "out"), *flags])
        if "--vocabulary-min-count" in flags:
            assert result.returncode == 2 and expected in result.stderr, result.stderr[-1000:]
        else:
            assert_user_error(result, expected)


def test_codes_are_written_as_their_integer_text():
    values = np.array([7.0, -3.0, np.nan, 7.5, 2.0 ** 60])
    assert ingest.code_text(values).tolist() == [b"7", b"-3", b"", b"7.5", b"1152921504606846976"]


USER_MODEL = '''
import json
import os

import keras


def model_fn(feature_names, categorical, num_classes):
    """Named inputs: each normalized feature, and each categorical id through an Embedding."""
    with open(os.environ["CATEGORICAL_RECORD"], "w") as f:
        json.dump(categorical, f)
    numeric = [keras.Input(shape=(1,), name=name) for name in feature_names]
    ids = [keras.Input(shape=(1,), name=name, dtype="int64") for name in categorical]
    embedded = [keras.layers.Flatten()(keras.layers.Embedding(size, 4)(i)) for i, size in zip(ids, categorical.values())]
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Concatenate()(numeric + embedded))
    model = keras.Model(numeric + ids, keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model
'''


def _expected_sizes(rows):
    """{id output: vocabulary size + 1 OOV bucket + 1 missing id}, from the counts (min_count 5)."""
    sizes = {}
    for name in ("city", "area"):
        counts = collections.Counter(str(r[name]) for r in rows if r[name] != "")
        sizes[name + "_id"] = sum(1 for c in counts.values() if c >= 5) + 2
    return sizes


@pytest.mark.slow
def test_a_user_model_fn_embeds_the_ids_it_is_given(tmp_path, monkeypatch):
    import os
    import sys

    import normpipe

    rows = make_rows(2500, seed=3)
    path = write_csv(tmp_path / "d.csv", rows, ["x1", "x2", "city", "area", "y"])
    (tmp_path / "categorical_models.py").write_text(USER_MODEL)
    record = tmp_path / "categorical.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path)] + sys.path), "CATEGORICAL_RECORD": str(record)}
    out = tmp_path / "cli"
    result = run_cli(["train", "--input", path, "--output-dir", str(out), "--label", "y", "--categorical", "city,area",
                      "--model-fn", "categorical_models.model_fn", "--epochs", "10"], env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(record.read_text()) == _expected_sizes(rows)
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    mae = metrics["variants"]["model_fn"][f"batch_{metrics['eval_batch_size']}"]["mae"]
    assert mae < 0.2 * metrics["baseline"][f"batch_{metrics['eval_batch_size']}"]["mae"], metrics
    verified = run_cli(["verify", "--model-dir", str(out / "serving" / "normpipe")])
    assert verified.returncode == 0 and "PASS prediction_skew" in verified.stdout, verified.stdout
    # normpipe.train from Python, the same model_fn given as a callable
    monkeypatch.setenv("CATEGORICAL_RECORD", str(tmp_path / "python.json"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import categorical_models

    document, version_dir = normpipe.train(path, str(tmp_path / "python"), label="y", categorical=["city", "area"],
                                           model_fn=categorical_models.model_fn, epochs=2)
    assert json.loads((tmp_path / "python.json").read_text()) == _expected_sizes(rows)
    assert document["exported"] == "model_fn" and normpipe.verify(version_dir)
