"""A real TFX pipeline with a three-class string label and the user's own
model: CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform (a user
module that calls normpipe.tfx.preprocessing_fn beside
tft.compute_and_apply_vocabulary) -> Trainer (normpipe.tfx.run_fn with
custom_config["model_fn"]) -> Pusher, on LocalDagRunner; the pushed model's
classify signature returns the class names.

Skipped where `from tfx import v1` fails. Run it in the TFX environment:
`PYTHONPATH=$PWD /root/.cache/tfx-env/python -m pytest -q tests/tfx/test_tfx_pipeline_labels.py`.
"""

import collections
import csv
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

try:
    from tfx import v1 as tfx
except Exception as exc:  # pylint: disable=broad-except  -- any import failure means: no TFX here
    tfx = None
    _REASON = f"TFX does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"

SPECIES = ("Adelie", "Gentoo", "Chinstrap")

# the user module file TFX imports: the one test_tfx_labels.py imports
MODULE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "penguin_tfx_module.py")


def write_penguins(path, n=1500, seed=5):
    rng = np.random.default_rng(seed)
    k = rng.choice(3, size=n, p=[0.45, 0.35, 0.2])
    rows = []
    for i in range(n):
        mass = "" if rng.random() < 0.1 else f"{3500 + 900 * (k[i] == 1) + rng.normal(0, 300):.1f}"
        rows.append({"bill_length_mm": f"{38 + 6 * k[i] + rng.normal(0, 1.5):.2f}", "body_mass_g": mass,
                     "year": str(2007 + k[i] + rng.choice([0, 0, 0, 1])), "island": str(rng.choice(["Biscoe", "Dream"])),
                     "species": SPECIES[k[i]]})
    os.makedirs(os.path.dirname(path))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def example(row):
    import tensorflow as tf

    feature = {"bill_length_mm": tf.train.Feature(float_list=tf.train.FloatList(value=[float(row["bill_length_mm"])])),
               "year": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row["year"])]))}
    if row["body_mass_g"]:
        feature["body_mass_g"] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(row["body_mass_g"])]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.slow
@pytest.mark.skipif(tfx is None, reason=_REASON if tfx is None else "")
def test_pipeline_with_string_label_and_model_fn(tmp_path, monkeypatch):
    rows = write_penguins(str(tmp_path / "data" / "penguins.csv"))
    shutil.copyfile(MODULE, tmp_path / "penguin_tfx_module.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    example_gen = tfx.components.CsvExampleGen(input_base=str(tmp_path / "data"))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
                                         preprocessing_fn="penguin_tfx_module.preprocessing_fn")
    trainer = tfx.components.Trainer(
        run_fn="normpipe.tfx.run_fn", examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=300), eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config={"label": "species", "batch_size": 32, "model_fn": "penguin_tfx_module.user_model_fn"},
    )
    serving = str(tmp_path / "serving")
    pusher = tfx.components.Pusher(model=trainer.outputs["model"], push_destination=tfx.proto.PushDestination(
        filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving)))
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="normpipe_penguins", pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen, schema_gen, transform, trainer, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.db")),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    from normpipe.serving import verify

    (pushed,) = glob.glob(os.path.join(serving, "*", "saved_model.pb"))
    version_dir = os.path.dirname(pushed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-m", "normpipe", "verify", "--model-dir", version_dir],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    # Transform's vocabulary is over the train split: decreasing frequency, ties reverse lexicographic;
    # the three names are there, and the served classes are the graph's vocabulary
    server = verify.ServingSession(version_dir)
    out = server.run("classify", {"inputs": np.array([example(r) for r in rows], dtype=object)})
    classes = [c.decode() for c in out["classes"][0]]
    assert sorted(classes) == sorted(SPECIES)
    truth = np.array([classes.index(r["species"]) for r in rows])
    majority = max(collections.Counter(truth.tolist()).values()) / len(rows)
    assert np.mean(np.asarray(out["scores"]).argmax(axis=1) == truth) > majority + 0.2
