"""A real TFX pipeline with normpipe's modules: CsvExampleGen, StatisticsGen,
SchemaGen, Transform (normpipe.tfx.preprocessing_fn), Trainer
(normpipe.tfx.run_fn), Pusher, on LocalDagRunner.

TFX 1.21 needs glibc >= 2.38 (its ml-metadata and TFDV wheels); where
`import tfx` fails this test is skipped with that reason. Run it where TFX
imports, e.g. `../shared/tools/tfx-env .` then
`$TFX_ENV_DIR/python -m pytest tests/tfx/test_tfx_pipeline.py`.
"""

import csv
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TAXI_CSV, assert_stats_close, numpy_stats

try:
    from tfx import v1 as tfx
except Exception as exc:  # pylint: disable=broad-except  -- any import failure means: no TFX here
    tfx = None
    _REASON = f"TFX does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"

ROWS = 3000
COLUMNS = ("trip_start_timestamp", "trip_miles", "fare", "pickup_latitude", "trip_seconds", "company", "tips")


def _write_subset(directory):
    os.makedirs(directory)
    with open(TAXI_CSV, newline="", encoding="utf-8") as f, open(os.path.join(directory, "data.csv"), "w",
                                                                   newline="", encoding="utf-8") as out:
        reader, writer = csv.DictReader(f), csv.writer(out)
        writer.writerow(COLUMNS)
        for i, row in enumerate(reader):
            if i == ROWS:
                break
            writer.writerow([row[c] for c in COLUMNS])
    return os.path.join(directory, "data.csv")


def _split_values(pattern, features):
    """{feature: float64 values, NaN where absent} of the tf.Examples in gzip TFRecords."""
    import tensorflow as tf

    values = {name: [] for name in features}
    for record in tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        for name in features:
            feature = example.features.feature.get(name)
            held = list(feature.int64_list.value or feature.float_list.value) if feature is not None else []
            values[name].append(float(held[0]) if held else np.nan)
    return {name: np.array(v, np.float64) for name, v in values.items()}


@pytest.mark.slow
@pytest.mark.skipif(tfx is None, reason=_REASON if tfx is None else "")
def test_local_dag_runner_pipeline(tmp_path):
    data_path = _write_subset(str(tmp_path / "data"))
    config = {"label": "tips", "method": "zscore", "epochs": 1, "batch_size": 64}
    example_gen = tfx.components.CsvExampleGen(input_base=os.path.dirname(data_path))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn="normpipe.tfx.preprocessing_fn", custom_config=config,
    )
    trainer = tfx.components.Trainer(
        run_fn="normpipe.tfx.run_fn", examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"], schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=100), eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config=config,
    )
    serving = str(tmp_path / "serving")
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=serving)),
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="normpipe_taxi", pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen, schema_gen, transform, trainer, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.db")),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    import tensorflow_transform as tft

    import normpipe

    graph_dir = sorted(glob.glob(str(tmp_path / "root" / "Transform" / "transform_graph" / "*")))[-1]
    features = [c for c in COLUMNS if c not in ("company", "tips")]
    spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
    assert set(spec) == {f"{n}_z" for n in features} | {"tips", "company_id"}  # the text column: its ids
    # Transform analyzes the train split: the reference is what ExampleGen wrote there
    stats = normpipe.read_statistics(graph_dir)
    train = _split_values(str(tmp_path / "root" / "CsvExampleGen" / "examples" / "*" / "Split-train" / "*"), features)
    assert stats["num_examples"] == len(train[features[0]]) > ROWS // 2
    for name in features:
        assert_stats_close(stats["features"][name], numpy_stats(train[name]))
    pushed = glob.glob(os.path.join(serving, "*", "saved_model.pb"))
    assert len(pushed) == 1
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    result = subprocess.run([exe, "verify", "--model-dir", os.path.dirname(pushed[0])], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
