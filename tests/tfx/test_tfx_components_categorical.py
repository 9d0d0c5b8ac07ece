"""normpipe's TFX components on categorical columns, in a real TFX 1.21
pipeline on LocalDagRunner:

CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform(normpipe.tfx.preprocessing_fn)
-> NormalizationComparator -> Trainer(normpipe.tfx.run_fn) -> ServingSkewValidator -> Pusher,

on penguin-like rows with a string label (species, three classes) that
depends on two string features, `island` (always present, one island rarer
than the vocabulary's min_count) and `sex` (some cells empty), beside numeric
measurements. Checks: the transformed examples' `island_id` and `sex_id`
against ids computed from the train split's values alone; the model blessed
and pushed; the pushed serving_default takes the strings as DT_STRING and
answers unseen and empty strings with finite probabilities; `verify` passes.

Skipped where `from tfx import v1` fails (see test_tfx_pipeline.py); CI runs
it with NORMPIPE_NO_SKIP=tests/tfx.
"""

import collections
import glob
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

SPECIES = ("Adelie", "Gentoo", "Chinstrap")
ISLANDS = ("Torgersen", "Biscoe", "Dream")
RARE_ISLAND = "Anvers"  # three rows in all: under min_count, out of the vocabulary
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
TEXT = ("island", "sex")
MIN_COUNT = 5
CONFIG = {"label": "species", "batch_size": 32, "vocabulary": {"min_count": MIN_COUNT, "oov_buckets": 1}}
ROWS = 1500
UNSEEN = "Atlantis"


def write_penguins(path, n=ROWS, seed=11):
    """Rows whose species shows mostly in the island and the sex (P(island | species)
    as on the real islands), less in the measurements; `sex` empty in 10% of rows,
    `body_mass_g` in 5%."""
    rng = np.random.default_rng(seed)
    island_given = {0: [0.4, 0.3, 0.3], 1: [0.05, 0.95, 0.0], 2: [0.0, 0.05, 0.95]}
    rows = []
    for i in range(n):
        k = int(rng.choice(3, p=[0.45, 0.35, 0.2]))
        island = RARE_ISLAND if i in (7, 500, 1200) else str(rng.choice(ISLANDS, p=island_given[k]))
        male = rng.random() < (0.5 if k != 2 else 0.8)
        sex = "" if rng.random() < 0.1 else ("male" if male else "female")
        mass = "" if rng.random() < 0.05 else f"{[3700, 5000, 3730][k] + 350 * male + rng.normal(0, 450):.0f}"
        rows.append({"species": SPECIES[k], "island": island, "sex": sex,
                     "bill_length_mm": f"{[40.5, 45.0, 46.0][k] + rng.normal(0, 3):.1f}",
                     "bill_depth_mm": f"{[18.3, 15.0, 18.4][k] + rng.normal(0, 1.2):.1f}",
                     "flipper_length_mm": f"{[192, 210, 196][k] + rng.normal(0, 8):.0f}",
                     "body_mass_g": mass, "year": str(int(rng.integers(2007, 2010)))})
    return tfx_data.write_csv_rows(path, rows)


def _components(data_dir, serving):
    from normpipe.tfx.components import NormalizationComparator

    example_gen, statistics_gen, schema_gen = _examples_and_schema(data_dir)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn="normpipe.tfx.preprocessing_fn", custom_config=CONFIG)
    comparator = NormalizationComparator(
        examples=example_gen.outputs["examples"], transform_graph=transform.outputs["transform_graph"],
        batch_sizes=[1, 32], seed=3)
    trainer = tfx.components.Trainer(
        run_fn="normpipe.tfx.run_fn", examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=300), eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config=CONFIG)
    validator, pusher = _validated_push(example_gen, transform, trainer, serving)
    return [example_gen, statistics_gen, schema_gen, transform, comparator, trainer, validator, pusher]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tfx_categorical")
    rows = write_penguins(str(tmp / "data" / "penguins.csv"))
    root, db, serving = str(tmp / "root"), str(tmp / "metadata.db"), str(tmp / "serving")
    tfx.orchestration.LocalDagRunner().run(
        _pipeline("normpipe_categorical", root, _components(str(tmp / "data"), serving), db))
    return {"rows": rows, "root": root, "db": db, "serving": serving}


def _split_examples(pattern):
    import tensorflow as tf

    records = tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP")
    return [tf.train.Example.FromString(r.numpy()).features.feature for r in records]


def _text(feature, name):
    """A raw example's string feature as text, "" where CsvExampleGen left it out (an empty cell)."""
    held = feature[name].bytes_list.value if name in feature else []
    return held[0].decode("utf-8") if held else ""


def _integer(feature, name):
    return int(feature[name].int64_list.value[0])


def expected_vocabulary(values, min_count=MIN_COUNT):
    """tf.Transform's vocabulary of the present values, from their counts alone:
    those seen min_count times, by decreasing count, ties by decreasing bytes."""
    counts = collections.Counter(v for v in values if v != "")
    return sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (counts[v], v.encode()),
                  reverse=True)


def expected_ids(values, vocabulary):
    """normpipe's ids: 0 for "", 1 + the vocabulary rank, len(vocabulary) + 1 (the one OOV bucket) else."""
    rank = {v: i + 1 for i, v in enumerate(vocabulary)}
    return [0 if v == "" else rank.get(v, len(vocabulary) + 1) for v in values]


@pytest.fixture(scope="module")
def vocabularies(run):
    """{column: vocabulary} computed from the train split's raw values (what Transform analyzes)."""
    train = _split_examples(os.path.join(_newest(run["root"], "CsvExampleGen", "examples"), "Split-train", "*"))
    assert 0 < len(train) < ROWS
    return {c: expected_vocabulary([_text(f, c) for f in train]) for c in TEXT}


@pytest.mark.slow
def test_transformed_examples_hold_the_ids(run, vocabularies):
    from normpipe.components import categories, transform

    assert set(vocabularies["island"]) == set(ISLANDS)  # the rare island is out
    assert set(vocabularies["sex"]) == {"male", "female"}
    graph_dir = _newest(run["root"], "Transform", "transform_graph")
    for column in TEXT:
        assert categories.read_vocabulary(graph_dir, column) == vocabularies[column]
    metadata = transform.read_metadata(graph_dir)
    assert sorted(metadata["categorical"]) == sorted(TEXT)
    assert metadata["category_sizes"] == {f"{c}_id": len(vocabularies[c]) + 2 for c in TEXT}
    for split in ("train", "eval"):
        raw = _split_examples(os.path.join(_newest(run["root"], "CsvExampleGen", "examples"), f"Split-{split}", "*"))
        transformed = _split_examples(
            os.path.join(_newest(run["root"], "Transform", "transformed_examples"), f"Split-{split}", "*"))
        assert len(transformed) == len(raw) > 0
        for column in TEXT:
            # Transform does not keep the order of the rows: the ids' counts
            found = collections.Counter(_integer(f, f"{column}_id") for f in transformed)
            wanted = collections.Counter(expected_ids([_text(f, column) for f in raw], vocabularies[column]))
            assert found == wanted, (split, column)
        assert not any(c in f for f in transformed for c in TEXT)  # the strings themselves are not emitted
    # the rare island (3 rows) and the empty sex cells reached the examples at all
    all_raw = _split_examples(os.path.join(_newest(run["root"], "CsvExampleGen", "examples"), "Split-*", "*"))
    assert sum(_text(f, "island") == RARE_ISLAND for f in all_raw) == 3
    assert sum(_text(f, "sex") == "" for f in all_raw) == sum(r["sex"] == "" for r in run["rows"]) > 0


@pytest.mark.slow
def test_blessed_model_is_pushed(run):
    blessed, lines, pushed = _validation(run, "normpipe_categorical")
    assert blessed == 1, lines
    for check in ("signatures", "warmup", "one_row", "transform_skew", "examples", "latency"):
        assert any(line.startswith(f"PASS {check}:") for line in lines), (check, lines)
    assert pushed == 1
    assert len(glob.glob(os.path.join(run["serving"], "*", "saved_model.pb"))) == 1


def _version_dir(run):
    (pushed,) = glob.glob(os.path.join(run["serving"], "*", "saved_model.pb"))
    return os.path.dirname(pushed)


def _request(rows, island=None, sex=None):
    """serving_default's inputs for CSV rows (NaN for an empty cell), the strings replaced where given."""
    inputs = {n: np.array([float(r[n]) if r[n] else np.nan for r in rows], np.float64) for n in NUMERIC}
    for name, value in (("island", island), ("sex", sex)):
        texts = [r[name] if value is None else value for r in rows]
        inputs[name] = np.array([t.encode("utf-8") for t in texts], dtype=object)
    return inputs


@pytest.mark.slow
def test_pushed_model_serves_strings(run, vocabularies):
    import tensorflow as tf

    from normpipe.serving import verify

    server = verify.ServingSession(_version_dir(run))
    inputs = {n: t.dtype for n, t in server.signatures["serving_default"].inputs.items()}
    assert inputs == {**dict.fromkeys(NUMERIC, tf.float64.as_datatype_enum),
                      **dict.fromkeys(TEXT, tf.string.as_datatype_enum)}
    sample, _ = verify.load_sample(_version_dir(run))
    classes = sample["classes"]
    assert sorted(classes) == sorted(SPECIES)

    rows = run["rows"]
    out = server.run("serving_default", _request(rows))["prediction"]
    assert out.shape == (len(rows), 3) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-4)
    truth = np.array([classes.index(r["species"]) for r in rows])
    majority = max(collections.Counter(truth.tolist()).values()) / len(rows)
    assert np.mean(out.argmax(axis=1) == truth) > majority + 0.2
    # the ids served for the rows' strings are those computed from the train split
    ids = server.run("transform_features", _request(rows))
    for column in TEXT:
        assert np.asarray(ids[f"{column}_id"]).reshape(-1).tolist() == expected_ids(
            [r[column] for r in rows], vocabularies[column])

    # a value never seen in training, and an empty one: finite probabilities, the OOV and missing ids
    few = rows[:20]
    for value, wanted in ((UNSEEN, {c: len(vocabularies[c]) + 1 for c in TEXT}), ("", dict.fromkeys(TEXT, 0))):
        request = _request(few, island=value, sex=value)
        out = server.run("serving_default", request)["prediction"]
        assert out.shape == (len(few), 3) and np.all(np.isfinite(out)), value
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-4)
        ids = server.run("transform_features", request)
        for column in TEXT:
            assert set(np.asarray(ids[f"{column}_id"]).reshape(-1).tolist()) == {wanted[column]}, (value, column)


@pytest.mark.slow
def test_verify_passes_on_the_pushed_model(run):
    from normpipe.serving import verify

    lines = []
    assert verify.verify(run["serving"], report=lines.append), lines
    for check in ("signatures", "warmup", "one_row", "unseen", "transform_skew", "prediction_skew", "examples"):
        assert any(line.startswith(f"PASS {check}:") for line in lines), (check, lines)
