"""Wide data: work that must not grow per feature (or grows by a few ops)."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

from normpipe.components import compare_report, preprocessing, statistics, transform
from normpipe.io import ingest
from normpipe.io.column_names import MATRIX_INPUT
from normpipe.serving import example_parsing, servable_files, serving_layout
from tests.conftest import write_csv


def _graph_nodes(transform_dir):
    """Nodes of every function in the saved transform_fn."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(f"{transform_dir}/transform_fn/saved_model.pb", "rb") as f:
        saved.ParseFromString(f.read())
    library = saved.meta_graphs[0].graph_def.library
    return sum(len(fn.node_def) for fn in library.function)


def _statistics_graph(tmp_path, width):
    rng = np.random.default_rng(width)
    path = write_csv(tmp_path / f"w{width}.csv", {f"c{j}": rng.normal(size=20) for j in range(width)})
    spec = ingest.inspect_input(str(path))
    transform_dir = str(tmp_path / f"transform{width}")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(tmp_path / f"tft{width}")):
        _ = (p | ingest.ReadRecordBatches(spec) | ingest.ToFeatureMatrix(spec)
             | statistics.AnalyzeStatistics(spec.features, ingest.tensor_adapter_config(spec), transform_dir))
    return transform_dir, spec, path


@pytest.mark.slow
def test_statistics_graph_does_not_grow_with_features(tmp_path):
    # One [batch, F] input: 200 features make the same graph as 4, give or take
    # constants, where one input per feature added ops (and tf.Transform work)
    # per feature.
    small, _, _ = _statistics_graph(tmp_path, 4)
    wide, spec, path = _statistics_graph(tmp_path, 200)
    assert _graph_nodes(wide) <= _graph_nodes(small) + 20
    specs = transform.raw_input_specs(statistics.load_transform_graph(wide).transform_fn)
    assert specs == {MATRIX_INPUT: {"dtype": "float64", "shape": [None, 200], "sparse": False}}
    values = np.loadtxt(path, delimiter=",", skiprows=1)
    found = statistics.read_statistics(wide)["features"]
    for j, name in enumerate(spec.features):
        assert found[name]["mean"] == pytest.approx(values[:, j].mean(), rel=1e-12, abs=1e-15)
        assert found[name]["std"] == pytest.approx(values[:, j].std(), rel=1e-12)


def _parse_ops(width):
    features = [f"c{j}" for j in range(width)]
    kinds = {n: "int64" if j % 3 == 0 else "float" for j, n in enumerate(features)}
    traced = tf.function(lambda e: example_parsing.parse_examples(e, features, kinds)).get_concrete_function(
        tf.TensorSpec([None], tf.string))
    return len(traced.graph.get_operations())


def test_example_parsing_adds_few_ops_per_feature():
    # per feature: its VarLenFeature's parse outputs, its default and its place
    # in the batch of features; the rest is a fixed number of ops per list type
    per_feature = (_parse_ops(300) - _parse_ops(30)) / 270
    assert per_feature < 6, per_feature


def test_example_parsing_of_many_features_matches_the_examples():
    features = [f"c{j}" for j in range(60)]
    kinds = {n: "int64" if j % 4 == 0 else "float" for j, n in enumerate(features)}
    rng = np.random.default_rng(3)
    expected = np.full((5, len(features)), np.nan)
    serialized = []
    for i in range(5):
        values = {}
        for j, name in enumerate(features):
            if rng.random() < 0.3:
                continue  # absent
            if kinds[name] == "int64":
                expected[i, j] = int(rng.integers(-2**40, 2**40))
                values[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(expected[i, j])]))
            else:
                expected[i, j] = float(np.float32(rng.normal() * 100))
                values[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[expected[i, j]]))
        serialized.append(tf.train.Example(features=tf.train.Features(feature=values)).SerializeToString())
    parsed = example_parsing.parse_examples(tf.constant(serialized), features, kinds)
    got = np.stack([parsed[n].numpy() for n in features], axis=1)
    np.testing.assert_array_equal(got, expected)
    two = tf.train.Example(features=tf.train.Features(feature={
        "c5": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.0]))})).SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than one value"):
        example_parsing.parse_examples(tf.constant([two]), features, kinds)


def test_sample_limit_caps_cells():
    assert serving_layout.sample_limit(8) == serving_layout.MAX_WARMUP
    assert serving_layout.sample_limit(5000) * 5000 <= serving_layout.SAMPLE_CELLS
    assert serving_layout.sample_limit(10**7) == 1


def test_plot_draws_the_features_with_the_largest_errors():
    names = [f"f{j}" for j in range(50)]
    sizes = [1, 64]
    records = [{"feature": n, "method": "zscore", "order": order, "batch_size": b,
                "mean_abs_error": (j + 1) / (10 * b), "nonfinite_fraction": 0.0}
               for j, n in enumerate(names) for order in ("file", "shuffled") for b in sizes]
    document = {"features": names, "methods": ["zscore"], "batch_sizes": sizes, "records": records}
    shown = compare_report.plotted_features(document, compare_report._lookup(records))
    assert shown == names[::-1][:compare_report.MAX_PLOTTED]


def test_transform_graph_takes_one_matrix_and_the_label(tmp_path):
    rng = np.random.default_rng(0)
    columns = {f"c{j}": rng.normal(size=30) for j in range(12)}
    columns["y"] = rng.normal(size=30)
    spec = ingest.inspect_input(str(write_csv(tmp_path / "d.csv", columns)), label="y")
    options = preprocessing.TransformOptions(spec.features, "zscore", spec.label)
    transform_dir = str(tmp_path / "transform")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(tmp_path / "tft")):
        _ = (p | ingest.ReadRecordBatches(spec) | ingest.ToFeatureMatrix(spec)
             | transform.AnalyzeAndTransform(options, ingest.tensor_adapter_config(spec), transform_dir))
    transform.write_metadata(transform_dir, options, spec.numeric)
    graph = transform.TransformGraph(transform_dir)
    assert graph.metadata["raw_inputs"] == [MATRIX_INPUT, "y"]
    outputs = graph(columns)
    for name in spec.features:
        x = columns[name]
        np.testing.assert_allclose(outputs[f"{name}_z"], (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["y"], columns["y"].astype(np.float32))


@pytest.mark.parametrize("value", [0.0, -1.5, 1.4e9, np.nan, np.inf, 5e-324])
def test_warmup_tensor_equals_make_tensor_proto(value):
    expected = tf.make_tensor_proto(np.array([value], np.float64))
    built = servable_files._double_vector(value)
    assert built.SerializeToString() == expected.SerializeToString()
    np.testing.assert_array_equal(tf.make_ndarray(built), np.array([value]))


def _wide_transform(tmp_path, width, rows=120, label=True):
    from tests.components.test_transform import run_transform

    rng = np.random.default_rng(width)
    columns = {f"c{j}": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(j, 1 + j % 7, rows)) for j in range(width)}
    if label:
        columns["y"] = rng.normal(size=rows)
    path = write_csv(tmp_path / f"w{width}.csv", columns)
    spec = ingest.inspect_input(str(path), label="y" if label else None)
    transform_dir, _ = run_transform(tmp_path, spec, method="zscore")
    x = np.stack([columns[n] for n in spec.features], axis=1)
    return transform_dir, spec, x


def _numpy_zscore(x):
    """float64 z-scores over the present values; a missing value gets the mean (0)."""
    mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    return np.where(np.isnan(x), 0.0, (x - mean) / np.where(std > 0, std, 1.0))


def _warmup_inputs(version_dir):
    from tensorflow_serving.apis import prediction_log_pb2

    path = f"{version_dir}/assets.extra/{serving_layout.WARMUP_FILE}"
    return [{k: tf.make_ndarray(v) for k, v in
             prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request.inputs.items()}
            for r in tf.data.TFRecordDataset(path)]


@pytest.mark.slow
def test_a_300_feature_model_gets_matrix_signatures(tmp_path):
    """More than MATRIX_FEATURES features: serving_default takes one float64
    [batch, F] matrix (columns in normpipe_features.json's order) and gives
    the model's prediction; transform_features gives one [batch, F] matrix
    per method equal to numpy float64; the tf.Example signatures, the warmup
    requests and `normpipe verify` follow."""
    from normpipe.components import train
    from normpipe.serving import export, verify

    transform_dir, spec, x = _wide_transform(tmp_path, 300)
    names = [f"{n}_z" for n in spec.features]
    model = train.build_model("tft", 300, "regression", train.TrainOptions(hidden=(8,)))
    version = export.export_model(transform_dir, str(tmp_path / "serving"), "wide", model=model, model_inputs=names,
                                  task="regression")
    summary = servable_files.signature_summary(version)
    assert summary["serving_default"]["inputs"] == {MATRIX_INPUT: "float64 [None, 300]"}
    assert summary["transform_features"] == {"inputs": {MATRIX_INPUT: "float64 [None, 300]"},
                                             "outputs": {"zscore": "float32 [None, 300]"}}
    assert summary["serving_examples"]["inputs"] == {"examples": "string [None]"}
    recorded = serving_layout.read_features_file(version)
    assert recorded["serving_inputs"] == "matrix" and recorded["inputs"] == list(spec.features)
    assert recorded["output_columns"] == {"zscore": names}  # transform_features' matrix
    assert recorded["outputs"] == ["prediction"]
    server = verify.ServingSession(version)
    normalized = server.run("transform_features", {MATRIX_INPUT: x})["zscore"]
    np.testing.assert_allclose(normalized, _numpy_zscore(x), rtol=1e-5, atol=1e-5)
    served = server.run("serving_default", {MATRIX_INPUT: x})["prediction"]
    expected = model(_numpy_zscore(x).astype(np.float32)).numpy().reshape(-1)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)
    warmup = _warmup_inputs(version)
    assert len(warmup) == len(verify.load_sample(version)[1]) <= serving_layout.sample_limit(300)
    assert all(list(w) == [MATRIX_INPUT] and w[MATRIX_INPUT].shape == (1, 300) for w in warmup)
    lines = []
    assert verify.verify(version, report=lines.append), lines
    assert any(l.startswith("PASS signatures:") and "one DT_DOUBLE [None, 300] input" in l for l in lines)
    assert any(l.startswith("PASS warmup:") for l in lines) and any(l.startswith("PASS examples:") for l in lines)


@pytest.mark.slow
def test_serving_inputs_matrix_on_a_narrow_model_and_named_on_a_wide_one(tmp_path):
    """--serving-inputs matrix on 3 features: matrix signatures, one output
    matrix per method without a model, verify passes; named on 300
    features is allowed: one DT_DOUBLE input per feature, as asked."""
    from normpipe.serving import export, verify

    narrow = tmp_path / "narrow"
    narrow.mkdir()
    transform_dir, spec, x = _wide_transform(narrow, 3, label=False)
    version = export.export_normalization_model(transform_dir, str(narrow / "serving"), "n", serving_inputs="matrix")
    summary = servable_files.signature_summary(version)
    assert summary["serving_default"] == {"inputs": {MATRIX_INPUT: "float64 [None, 3]"},
                                          "outputs": {"zscore": "float32 [None, 3]"}}
    recorded = serving_layout.read_features_file(version)
    assert recorded["output_columns"] == {"zscore": [f"{n}_z" for n in spec.features]}
    served = verify.ServingSession(version).run("serving_default", {MATRIX_INPUT: x})["zscore"]
    np.testing.assert_allclose(served, _numpy_zscore(x), rtol=1e-5, atol=1e-5)
    lines = []
    assert verify.verify(version, report=lines.append), lines
    wide = tmp_path / "wide"
    wide.mkdir()
    transform_dir, spec, x = _wide_transform(wide, 300, rows=40, label=False)
    version = export.export_normalization_model(transform_dir, str(wide / "serving"), "w", serving_inputs="named")
    inputs = servable_files.signature_summary(version)["serving_default"]["inputs"]
    assert sorted(inputs) == sorted(spec.features) and set(inputs.values()) == {"float64 [None]"}
    assert serving_layout.read_features_file(version)["serving_inputs"] == "named"


@pytest.mark.parametrize("choice, width, expected", [("auto", 256, "named"), ("auto", 257, "matrix"),
                                                      ("matrix", 3, "matrix"), ("named", 5000, "named")])
def test_serving_inputs_choice(choice, width, expected):
    assert serving_layout.serving_inputs_for(choice, width) == expected


def test_unknown_serving_inputs_is_refused():
    from normpipe.core.errors import UserError

    with pytest.raises(UserError, match=r"--serving-inputs must be one of auto, named, matrix\. Received: 'wide'"):
        serving_layout.serving_inputs_for("wide", 3)


def test_matrix_warmup_request_equals_make_tensor_proto(tmp_path):
    rows = np.array([[1.5, np.nan, -3.0], [0.0, 1e300, 5e-324]])
    path = str(tmp_path / "warmup")
    servable_files.write_warmup(path, "m", ["a", "b", "c"], rows, matrix=True)
    from tensorflow_serving.apis import prediction_log_pb2

    for record, row in zip(tf.data.TFRecordDataset(path), rows, strict=True):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.signature_name == "serving_default" and list(request.inputs) == [MATRIX_INPUT]
        expected = tf.make_tensor_proto(row.reshape(1, 3))
        assert request.inputs[MATRIX_INPUT].SerializeToString() == expected.SerializeToString()
