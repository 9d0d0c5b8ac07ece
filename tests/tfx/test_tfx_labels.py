"""run_fn with a three-class string label and a user's model_fn, on TFX's
own code path without TFX (see test_tfx.py): tf.Examples as CsvExampleGen
writes them, a SchemaGen-like schema, tfx-bsl's TFExampleRecord TFXIO, and a
user preprocessing_fn that calls normpipe's beside
`tft.compute_and_apply_vocabulary`.
"""

import collections
import glob
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_metadata.proto.v0 import schema_pb2

import normpipe.tfx
from normpipe.serving import verify
from tests.conftest import run_cli
from tests.tfx.penguin_tfx_module import CONFIG, user_model_fn
from tests.tfx.penguin_tfx_module import preprocessing_fn as user_preprocessing_fn

N = 1200
SPECIES = ("Adelie", "Gentoo", "Chinstrap")
FLOATS = ("bill_length_mm", "body_mass_g")


def penguins(seed=3):
    rng = np.random.default_rng(seed)
    k = rng.choice(3, size=N, p=[0.45, 0.35, 0.2])
    rows = []
    for i in range(N):
        row = {"bill_length_mm": 38 + 6 * k[i] + rng.normal(0, 1.5),
               "body_mass_g": 3500 + 900 * (k[i] == 1) + rng.normal(0, 300),
               "year": int(2007 + k[i] + rng.choice([0, 0, 0, 1])),  # a vocabulary over it says something
               "island": str(rng.choice(["Biscoe", "Dream"])), "species": SPECIES[k[i]]}
        if rng.random() < 0.1:
            del row["body_mass_g"]  # sometimes missing: VarLen in the schema
        rows.append(row)
    return rows


def example(row):
    feature = {}
    for name, value in row.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def schema():
    proto = schema_pb2.Schema()
    kinds = {"bill_length_mm": schema_pb2.FLOAT, "body_mass_g": schema_pb2.FLOAT, "year": schema_pb2.INT,
             "island": schema_pb2.BYTES, "species": schema_pb2.BYTES}
    for name, kind in kinds.items():
        feature = proto.feature.add(name=name, type=kind)
        if name == "body_mass_g":
            feature.value_count.min, feature.value_count.max = 1, 1
        else:
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add(size=1)
    return proto


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    from tfx_bsl.coders import example_coder
    from tfx_bsl.public import tfxio

    rows = penguins()
    root = tmp_path_factory.mktemp("tfx_labels")
    examples_path = str(root / "examples" / "data_tfrecord-00000-of-00001.gz")
    os.makedirs(os.path.dirname(examples_path))
    with tf.io.TFRecordWriter(examples_path, options="GZIP") as writer:
        for row in rows:
            writer.write(example(row).SerializeToString())
    source = tfxio.TFExampleRecord(examples_path, schema=schema())
    graph_dir, out_prefix = str(root / "transform_graph"), str(root / "transformed_examples" / "data")
    encode = lambda batch: example_coder.RecordBatchToExamplesEncoder().encode(batch[0])  # noqa: E731
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        raw = p | "Read" >> source.BeamSource()
        (data, _), transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeAndTransformDataset(
            user_preprocessing_fn, output_record_batches=True)
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
        _ = data | beam.FlatMap(encode) | beam.io.WriteToTFRecord(out_prefix, file_name_suffix=".gz")
    return rows, graph_dir, sorted(glob.glob(out_prefix + "*.gz"))


def expected_classes(rows):
    """tf.Transform's vocabulary order: decreasing frequency, ties reverse lexicographic."""
    counts = collections.Counter(r["species"] for r in rows)
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


@pytest.mark.slow
@pytest.mark.parametrize("model_fn", [None, user_model_fn], ids=["normpipe_model", "user_model_fn"])
def test_run_fn_classifies_a_string_label(transformed, tmp_path, model_fn):
    rows, graph_dir, files = transformed
    spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
    assert "year_id" in spec and "species" in spec and "bill_length_mm_z" in spec
    config = {**CONFIG, "epochs": 8, **({"model_fn": model_fn} if model_fn else {})}
    fn_args = normpipe.tfx.FnArgs(train_files=files, eval_files=files, transform_output=graph_dir,
                                  serving_model_dir=str(tmp_path / "serving_model"), custom_config=config)
    normpipe.tfx.run_fn(fn_args)
    check = run_cli(["verify", "--model-dir", fn_args.serving_model_dir])
    assert check.returncode == 0 and "FAIL" not in check.stdout, check.stdout + check.stderr[-3000:]
    assert "PASS prediction_skew" in check.stdout

    server = verify.ServingSession(fn_args.serving_model_dir)
    assert server.signatures["classify"].method_name == "tensorflow/serving/classify"
    out = server.run("classify", {"inputs": np.array([example(r).SerializeToString() for r in rows], dtype=object)})
    classes = expected_classes(rows)
    assert all([c.decode() for c in row] == classes for row in out["classes"])
    truth = np.array([classes.index(r["species"]) for r in rows])
    majority = max(collections.Counter(truth.tolist()).values()) / len(rows)
    assert np.mean(np.asarray(out["scores"]).argmax(axis=1) == truth) > majority + 0.2


def test_run_fn_refuses_unknown_task():
    with pytest.raises(ValueError, match="unknown keys"):
        normpipe.tfx.run_fn(normpipe.tfx.FnArgs([], [], "", "", custom_config={"label": "y", "tsk": "regression"}))
