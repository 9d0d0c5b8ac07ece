"""A real TFX pipeline whose user module normalizes numeric columns with
`normpipe.tfx.normalize` beside `tft.compute_and_apply_vocabulary` on a text
column, and whose own Keras 3 model embeds that vocabulary id:

CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform (this module's
preprocessing_fn) -> Trainer (normpipe.tfx.run_fn, custom_config model_fn =
this module's model_fn) -> ServingSkewValidator -> Pusher, on LocalDagRunner.

This file is the module TFX's Transform and Trainer name (by dotted path,
"tests.tfx.test_tfx_pipeline_vocabulary.<function>"). Checks: the
`categorical` sizes model_fn received (the vocabulary the data implies plus
the module's out-of-vocabulary buckets), the model blessed and pushed, the
pushed serving_default taking the text column as DT_STRING, finite answers
to a company never seen and to an empty one, the company effects learned,
and `verify` passing.

Skipped where `from tfx import v1` fails (see test_tfx_pipeline.py); CI runs
it with NORMPIPE_NO_SKIP=tests/tfx.
"""

import collections
import glob
import json
import os

import numpy as np
import pytest

from tests.tfx import tfx_data
from tests.tfx.test_tfx_components_pipeline import (
    _examples_and_schema,
    _newest,
    _pipeline,
    _validated_push,
    _validation,
)
from tests.tfx.test_tfx_pipeline import tfx

if tfx is None:
    from tests.tfx.test_tfx_pipeline import _REASON
pytestmark = pytest.mark.skipif(tfx is None, reason=_REASON if tfx is None else "")

NUMERIC = ("trip_miles", "trip_seconds")
LABEL = "fare"
# distinct frequencies (tf.Transform orders its vocabulary by count), each effect its own
COMPANIES = {"Flash Cab": 0.0, "Taxi Affiliation": 4.0, "Sun Taxi": 8.0, "City Service": 12.0,
             "Blue Ribbon": 16.0, "Chicago Carriage": 20.0}
SHARES = (0.3, 0.22, 0.17, 0.13, 0.1, 0.08)
RARE = {"Rare Cab A": 1, "Rare Cab B": 2, "Rare Cab C": 3}  # rows of each: under FREQUENCY_THRESHOLD
RARE_EFFECT = 10.0
FREQUENCY_THRESHOLD = 5
OOV_BUCKETS = 2
EMBEDDING_DIM = 4
ROWS = 1500
MODULE = __name__  # TFX imports this file's functions by their dotted path
RECORD_ENV = "NORMPIPE_TEST_MODEL_FN_RECORD"  # where model_fn writes what it was called with


def preprocessing_fn(inputs):
    """normpipe's normalization of the numeric columns, a vocabulary id of the
    company (with out-of-vocabulary buckets for the rare ones), the label as it is."""
    import tensorflow_transform as tft

    import normpipe.tfx

    outputs = normpipe.tfx.normalize(inputs, list(NUMERIC))
    outputs["company_id"] = tft.compute_and_apply_vocabulary(
        inputs["company"], frequency_threshold=FREQUENCY_THRESHOLD, num_oov_buckets=OOV_BUCKETS,
        vocab_filename="company")
    outputs[LABEL] = inputs[LABEL]
    return outputs


def model_fn(feature_names, categorical, num_classes):
    """A Keras 3 regression over the normalized features and an embedding of the company id."""
    import keras

    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"feature_names": list(feature_names), "categorical": dict(categorical),
                       "num_classes": num_classes}, f)
    numeric = [keras.Input(shape=(1,), name=name) for name in feature_names]
    company = keras.Input(shape=(1,), name="company_id", dtype="int64")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(categorical["company_id"], EMBEDDING_DIM)(company))
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Concatenate()(numeric + [embedded]))
    model = keras.Model(numeric + [company], keras.layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def write_trips(path, n=ROWS, seed=7):
    """Rows whose fare is the company's effect plus the distance's and the time's."""
    rng = np.random.default_rng(seed)
    rare = [name for name, count in RARE.items() for _ in range(count)]
    companies = list(rng.choice(list(COMPANIES), size=n - len(rare), p=SHARES)) + rare
    rng.shuffle(companies)
    rows = []
    for company in companies:
        miles = rng.gamma(2.0, 1.5)
        seconds = int(120 + miles * 150 + rng.normal(0, 60))
        effect = COMPANIES.get(company, RARE_EFFECT)
        rows.append({"trip_miles": f"{miles:.2f}", "trip_seconds": str(seconds), "company": str(company),
                     LABEL: f"{3.0 + effect + 2.0 * miles + 0.002 * seconds + rng.normal(0, 0.5):.2f}"})
    return tfx_data.write_csv_rows(path, rows)


def _components(data_dir, serving):
    example_gen, statistics_gen, schema_gen = _examples_and_schema(data_dir)
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
                                         preprocessing_fn=f"{MODULE}.preprocessing_fn")
    trainer = tfx.components.Trainer(
        run_fn="normpipe.tfx.run_fn", examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=400), eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config={"label": LABEL, "batch_size": 32, "model_fn": f"{MODULE}.model_fn"})
    validator, pusher = _validated_push(example_gen, transform, trainer, serving)
    return [example_gen, statistics_gen, schema_gen, transform, trainer, validator, pusher]


def _train_companies(root):
    """The company of every row of the train split CsvExampleGen wrote (what Transform analyzes)."""
    import tensorflow as tf

    pattern = os.path.join(_newest(root, "CsvExampleGen", "examples"), "Split-train", "*")
    records = tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()).features.feature["company"].bytes_list.value[0].decode()
            for r in records]


def _request(rows, company=None):
    inputs = {n: np.array([float(r[n]) for r in rows], np.float64) for n in NUMERIC}
    inputs["company"] = np.array([(r["company"] if company is None else company).encode() for r in rows],
                                 dtype=object)
    return inputs


@pytest.mark.slow
def test_user_module_embeds_its_vocabulary_id(tmp_path, monkeypatch):
    rows = write_trips(str(tmp_path / "data" / "trips.csv"))
    record = tmp_path / "model_fn.json"
    monkeypatch.setenv(RECORD_ENV, str(record))
    root, db, serving = str(tmp_path / "root"), str(tmp_path / "metadata.db"), str(tmp_path / "serving")
    tfx.orchestration.LocalDagRunner().run(
        _pipeline("normpipe_vocabulary", root, _components(str(tmp_path / "data"), serving), db))

    import tensorflow as tf
    import tensorflow_transform as tft

    from normpipe.serving import verify

    # The vocabulary, from the train split's counts alone: the companies seen
    # FREQUENCY_THRESHOLD times, by decreasing count (no ties here); the rare ones out.
    counts = collections.Counter(_train_companies(root))
    assert sum(counts.values()) < ROWS and set(counts) <= set(COMPANIES) | set(RARE)
    vocabulary = sorted((c for c, k in counts.items() if k >= FREQUENCY_THRESHOLD), key=counts.get, reverse=True)
    assert set(vocabulary) == set(COMPANIES) and len(set(counts.values())) == len(counts)
    graph = tft.TFTransformOutput(_newest(root, "Transform", "transform_graph"))
    assert [v.decode() for v in graph.vocabulary_by_name("company")] == vocabulary

    called = json.loads(record.read_text(encoding="utf-8"))
    assert called["categorical"] == {"company_id": len(vocabulary) + OOV_BUCKETS}
    assert called["feature_names"] == [f"{n}_z" for n in NUMERIC] and called["num_classes"] == 0

    blessed, lines, pushed = _validation({"db": db}, "normpipe_vocabulary")
    assert blessed == 1 and pushed == 1, lines
    (saved,) = glob.glob(os.path.join(serving, "*", "saved_model.pb"))
    version_dir = os.path.dirname(saved)
    report = []
    assert verify.verify(serving, report=report.append), report
    assert any(line.startswith("PASS unseen:") for line in report), report

    server = verify.ServingSession(version_dir)
    inputs = {n: t.dtype for n, t in server.signatures["serving_default"].inputs.items()}
    assert inputs == {**dict.fromkeys(NUMERIC, tf.float64.as_datatype_enum), "company": tf.string.as_datatype_enum}

    # the company effects are learned: held-out error well under the spread of the effects,
    # and the same trip priced in the order of the companies' effects
    predicted = np.asarray(server.run("serving_default", _request(rows))["prediction"]).reshape(-1)
    fares = np.array([float(r[LABEL]) for r in rows])
    assert np.all(np.isfinite(predicted))
    assert np.mean(np.abs(predicted - fares)) < 0.25 * np.mean(np.abs(fares - fares.mean()))
    priced = [float(server.run("serving_default", _request([rows[0]], c))["prediction"].reshape(-1)[0])
              for c in COMPANIES]
    assert np.argsort(priced).tolist() == np.argsort(list(COMPANIES.values())).tolist(), priced

    # a company never seen, and an empty one, are out of the vocabulary: finite fares
    for company in ("Never Seen Cab", ""):
        out = np.asarray(server.run("serving_default", _request(rows[:10], company))["prediction"])
        assert out.shape[0] == 10 and np.all(np.isfinite(out)), company
