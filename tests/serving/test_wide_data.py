"""Wide data: work that must not grow per feature (or grows by a few ops)."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

from normpipe.components import compare_report, preprocessing, statistics, transform
from normpipe.io import ingest
from normpipe.serving import example_parsing, servable_files, serving_layout
from normpipe.io.column_names import MATRIX_INPUT
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
