"""normpipe.tfx on TFX's own code path, without TFX.

What TFX's Transform executor does is reproduced with the same libraries:
tf.Examples as CsvExampleGen writes them (integer columns as int64_list,
floats as float_list, a missing cell as an absent feature), a schema as
SchemaGen infers it (sometimes-missing columns VarLen), read with tfx-bsl's
TFExampleRecord TFXIO, analyzed and transformed by
tft_beam.AnalyzeAndTransformDataset(normpipe.tfx.preprocessing_fn), the
transformed examples written as gzip TFRecords. Then run_fn with an object
shaped like TFX's FnArgs, and `normpipe export`/`verify` on the TFX-made
transform graph.
"""

import functools
import glob
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

import normpipe
import normpipe.tfx
from normpipe.serving import verify
from tests.conftest import assert_stats_close, numpy_stats, run_cli, write_csv
from tests.tfx import tfx_data

N = 800
INT_COLUMNS = ("row", "trip_seconds", "trip_start_timestamp")
COMPANY = np.array(["Taxi Co"] * N, dtype=object)


@pytest.fixture(scope="module")
def taxi_like():
    rng = np.random.default_rng(11)
    columns = {
        "row": np.arange(N, dtype=np.float64),  # unique: aligns rows across outputs
        "trip_seconds": rng.integers(60, 4000, N).astype(np.float64),
        "trip_start_timestamp": np.round(1.4e9 + rng.uniform(0, 1.3e8, N)),
        "fare": np.round(rng.lognormal(2, 0.6, N), 2),
        "pickup_latitude": 41.9 + rng.normal(0, 0.03, N),
    }
    columns["fare"][rng.random(N) < 0.1] = np.nan  # sometimes missing -> VarLen
    columns["pickup_latitude"][rng.random(N) < 0.3] = np.nan
    columns["tips"] = np.round(0.2 * np.nan_to_num(columns["fare"], nan=10.0) + rng.normal(0, 0.3, N), 2)
    # float_list carries float32: the data is what a tf.Example can hold
    for name in ("fare", "pickup_latitude", "tips"):
        columns[name] = columns[name].astype(np.float32).astype(np.float64)
    return columns


# every row's company is the same string: a bytes column, categorical by default (one vocabulary entry, id 1)
def example(columns, i):
    return tfx_data.example(columns, {"company": COMPANY}, i, int_columns=INT_COLUMNS)


def schemagen_schema(columns):
    return tfx_data.schemagen_schema(columns, {"company": COMPANY}, int_columns=INT_COLUMNS)


@pytest.fixture(scope="module")
def tfx_transform(taxi_like, tmp_path_factory):
    """What TFX's Transform component leaves: transform_graph and transformed_examples."""
    root = tmp_path_factory.mktemp("tfx")
    return (root, *write_tfx_transform(taxi_like, root))


def write_tfx_transform(taxi_like, root):
    """(transform_graph, transformed examples' prefix) of the columns, under root."""
    from tfx_bsl.public import tfxio

    examples_path = str(root / "examples" / "data_tfrecord-00000-of-00001.gz")
    os.makedirs(os.path.dirname(examples_path))
    with tf.io.TFRecordWriter(examples_path, options="GZIP") as writer:
        for i in range(N):
            writer.write(example(taxi_like, i).SerializeToString())
    source = tfxio.TFExampleRecord(examples_path, schema=schemagen_schema(taxi_like))
    fn = functools.partial(normpipe.tfx.preprocessing_fn, custom_config={"label": "tips"})
    graph_dir, out_prefix = str(root / "transform_graph"), str(root / "transformed_examples" / "data")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        raw = p | "Read" >> source.BeamSource()
        (transformed, _), transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=True)
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
        _ = (transformed | beam.FlatMap(lambda b: _encode(b[0]))
             | beam.io.WriteToTFRecord(out_prefix, file_name_suffix=".gz"))
    # the raw schema beside the graph, as TFX's Transform writes it (TFTransformOutput.raw_feature_spec)
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schemagen_schema(taxi_like)),
                               os.path.join(graph_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return graph_dir, out_prefix


def _encode(batch):
    from tfx_bsl.coders import example_coder

    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


def parse_transformed(graph_dir, pattern):
    spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
    dataset = tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP").batch(100000)
    columns = {}
    for batch in dataset:
        for name, value in tf.io.parse_example(batch, spec).items():
            columns.setdefault(name, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in columns.items()}


@pytest.mark.slow
def test_tfx_transform_equals_command_line_and_numpy(taxi_like, tfx_transform, tmp_path):
    _, graph_dir, out_prefix = tfx_transform
    features = [n for n in taxi_like if n != "tips"]
    # TFX's transformed schema: the normalized features, the company's ids and the label, nothing else
    spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
    assert set(spec) == {f"{n}_z" for n in features} | {"tips", "company_id"}
    tfx_values = parse_transformed(graph_dir, out_prefix + "*.gz")
    assert set(tfx_values) == set(spec)
    assert tfx_values["company_id"].tolist() == [1] * N  # its one value, seen N >= 5 times

    # the command line on the same data as CSV
    csv_path = write_csv(tmp_path / "taxi.csv", taxi_like)
    document = normpipe.transform(str(csv_path), str(tmp_path / "cli"), label="tips")
    cli_values = parse_transformed(str(tmp_path / "cli" / "transform"),
                                   str(tmp_path / "cli" / "transformed" / "*.tfrecord.gz"))
    tfx_order, cli_order = np.argsort(tfx_values["row_z"]), np.argsort(cli_values["row_z"])
    for name in set(spec) - {"company_id"}:  # the CSV has no company column
        np.testing.assert_allclose(tfx_values[name][tfx_order], cli_values[name][cli_order], rtol=0, atol=1e-6,
                                   err_msg=name)
    # and against numpy float64 (missing imputed with the mean -> 0)
    for name in features:
        values = taxi_like[name]
        present = values[~np.isnan(values)]
        expected = np.where(np.isnan(values), 0.0, (values - present.mean()) / present.std())
        np.testing.assert_allclose(tfx_values[f"{name}_z"][tfx_order], expected, atol=1e-6, err_msg=name)

    # the float64 statistics, read back from the TFX-made graph
    stats = normpipe.read_statistics(graph_dir)
    assert stats["num_examples"] == N
    for name in features:
        assert_stats_close(stats["features"][name], numpy_stats(taxi_like[name]))
        for key in ("count", "missing", "min", "max"):
            assert stats["features"][name][key] == document["features"][name][key]


@pytest.mark.slow
def test_run_fn_exports_a_servable_that_verifies(taxi_like, tfx_transform, tmp_path):
    _, graph_dir, out_prefix = tfx_transform
    files = sorted(glob.glob(out_prefix + "*.gz"))
    fn_args = normpipe.tfx.FnArgs(train_files=files, eval_files=files, transform_output=graph_dir,
                                  serving_model_dir=str(tmp_path / "serving_model"),
                                  custom_config={"label": "tips", "epochs": 2})
    normpipe.tfx.run_fn(fn_args)
    result = run_cli(["verify", "--model-dir", fn_args.serving_model_dir])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("PASS") >= 5 and "FAIL" not in result.stdout

    # serving_examples takes TFX's own examples (int64_list integers, absent
    # features) and agrees with serving_default on the same rows
    server = verify.ServingSession(fn_args.serving_model_dir)
    inputs = server.signatures["serving_default"].inputs
    assert {n: t.dtype for n, t in inputs.items()} == {
        **{n: tf.float64.as_datatype_enum for n in taxi_like if n != "tips"}, "company": tf.string.as_datatype_enum}
    rows = range(0, N, 7)
    serialized = np.array([example(taxi_like, i).SerializeToString() for i in rows], dtype=object)
    from_examples = server.run("serving_examples", {"examples": serialized})["prediction"]
    columns = {n: np.array([taxi_like[n][i] for i in rows]) for n in inputs if n != "company"}
    columns = {n: v.astype(np.float32).astype(np.float64) if n not in INT_COLUMNS else v for n, v in columns.items()}
    columns["company"] = np.array([COMPANY[i].encode() for i in rows], dtype=object)
    from_features = server.run("serving_default", columns)["prediction"]
    np.testing.assert_allclose(from_examples, from_features, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_export_and_verify_from_a_tfx_transform_graph(tfx_transform, tmp_path):
    _, graph_dir, _ = tfx_transform
    result = run_cli(["export", "--output-dir", str(tmp_path), "--transform-dir", graph_dir, "--model-name", "norm"])
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(["verify", "--model-dir", str(tmp_path / "serving" / "norm")])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    sample = json.load(open(tmp_path / "serving" / "norm" / "1" / "assets.extra" / "normpipe_verify_sample.json"))
    assert sample["example_types"]["trip_seconds"] == "int64" and sample["example_types"]["fare"] == "float"


@pytest.mark.slow
def test_example_skew_blesses_the_model_s_own_graph_and_not_another(taxi_like, tfx_transform, tmp_path):
    from normpipe.serving import example_skew

    _, graph_dir, out_prefix = tfx_transform
    files = sorted(glob.glob(out_prefix + "*.gz"))
    model_dir = str(tmp_path / "serving_model")
    normpipe.tfx.run_fn(normpipe.tfx.FnArgs(train_files=files, eval_files=files, transform_output=graph_dir,
                                            serving_model_dir=model_dir, custom_config={"label": "tips"},
                                            train_steps=20))
    serialized = [example(taxi_like, i).SerializeToString() for i in range(0, N, 3)]
    lines = []
    assert example_skew.check_export(model_dir, graph_dir, serialized, lines.append, p99_ms=10_000.0), "\n".join(lines)
    for check in ("signatures", "warmup", "one_row", "transform_skew", "examples", "latency"):
        assert any(line.startswith(f"PASS {check}:") for line in lines), (check, lines)
    # example_rows reads the values the examples carry: float32 floats, exact integers
    rows = example_skew.example_rows(serialized[:2], ["fare", "trip_seconds"])
    assert rows[0, 1] == taxi_like["trip_seconds"][0] and rows[1, 1] == taxi_like["trip_seconds"][3]

    # another run's graph: the same columns, a fare twice as large
    other = {**taxi_like, "fare": taxi_like["fare"] * 2}
    other_graph, _ = write_tfx_transform(other, tmp_path / "other")
    lines = []
    assert not example_skew.check_export(model_dir, other_graph, serialized, lines.append), "\n".join(lines)
    assert any(line.startswith("FAIL transform_skew:") for line in lines), lines
    assert any(line.startswith("SKIP latency:") for line in lines), lines
    lines = []
    assert not example_skew.check_export(model_dir, graph_dir, serialized, lines.append, p50_ms=1e-6), lines
    assert any(line.startswith("FAIL latency:") and "p50 over" in line for line in lines), lines


def test_custom_config_is_checked():
    inputs = {"a": tf.constant([1.0]), "b": tf.constant([2], tf.int64), "s": tf.constant(["x"])}
    options = normpipe.tfx.transform_options(inputs, {"label": "b"})
    assert options.features == ("a",) and options.label == "b" and not options.matrix_outputs
    with pytest.raises(ValueError, match="unknown keys"):
        normpipe.tfx.transform_options(inputs, {"lable": "b"})
    with pytest.raises(ValueError, match="label must be an input"):
        normpipe.tfx.transform_options(inputs, {"label": "c"})
