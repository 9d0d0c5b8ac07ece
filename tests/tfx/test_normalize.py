"""normpipe.tfx.normalize inside a user's own preprocessing_fn, without TFX.

As TFX's Transform runs it: tf.Examples read with tfx-bsl's TFExampleRecord
TFXIO and a SchemaGen-style schema_pb2 (fixed-shape features dense
[batch, 1], VarLen ones sparse), the preprocessing_fn composing `normalize`
with `tft.compute_and_apply_vocabulary`. And in a plain
`tft_beam.AnalyzeAndTransformDataset` over dense float64 [batch] inputs.
"""

import doctest
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.testing.util import assert_that
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio
from tfx_bsl.tfxio import tensor_adapter

import normpipe
import normpipe.tfx
from normpipe.tfx import normalization
from tests.conftest import assert_stats_close, numpy_stats
from tests.tfx import tfx_data
from tests.tfx.test_tfx import _encode, parse_transformed

NUMERIC = ("bill_mm", "mass_g", "pressure", "row", "target", "timestamp", "year")


def user_preprocessing_fn(inputs):
    """A user's preprocessing_fn: normpipe's normalization beside a vocabulary."""
    outputs = normpipe.tfx.normalize(inputs, method="both")
    outputs["company_id"] = tft.compute_and_apply_vocabulary(inputs["company"], vocab_filename="company")
    outputs["row"] = inputs["row"]
    return outputs


def run_tfx_style_transform(root, columns, strings, preprocessing_fn):
    """What TFX's Transform executor does with these tf.Examples: transform
    graph (with raw metadata, as TFX writes it) and transformed examples."""
    os.makedirs(root / "examples")
    examples = str(root / "examples" / "data_tfrecord-00000-of-00001.gz")
    tfx_data.write_examples(examples, columns, strings)
    schema = tfx_data.schemagen_schema(columns, strings)
    source = tfxio.TFExampleRecord(examples, schema=schema)
    graph_dir, out_prefix = str(root / "transform_graph"), str(root / "transformed_examples" / "data")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        raw = p | "Read" >> source.BeamSource()
        (transformed, _), transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=True)
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
        _ = (transformed | beam.FlatMap(lambda b: _encode(b[0]))
             | beam.io.WriteToTFRecord(out_prefix, file_name_suffix=".gz"))
    # TFX's Transform writes the raw schema beside transform_fn (what raw_feature_spec reads)
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema), os.path.join(graph_dir, "metadata"))
    return graph_dir, out_prefix + "*.gz"


@pytest.fixture(scope="module")
def penguins():
    return tfx_data.penguin_like()


@pytest.fixture(scope="module")
def user_transform(penguins, tmp_path_factory):
    columns, strings = penguins
    return run_tfx_style_transform(tmp_path_factory.mktemp("user"), columns, strings, user_preprocessing_fn)


def test_normalize_beside_a_vocabulary_equals_numpy(penguins, user_transform):
    columns, strings = penguins
    graph_dir, pattern = user_transform
    output = tft.TFTransformOutput(graph_dir)
    # features=None: every numeric input, the string column skipped
    normalized = {f"{n}{s}" for n in NUMERIC for s in ("_z", "_01")}
    assert set(output.transformed_feature_spec()) == normalized | {"company_id", "row"}
    values = parse_transformed(graph_dir, pattern)
    order = np.argsort(values["row"].reshape(-1), kind="stable")
    for name in NUMERIC:
        for method, suffix in (("zscore", "_z"), ("minmax", "_01")):
            got = values[name + suffix][order]
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, tfx_data.numpy_normalize(columns[name], method), rtol=0, atol=1e-6,
                                       err_msg=name + suffix)
    # the vocabulary: classes by descending count, ids in that order
    vocabulary = [v.decode() for v in output.vocabulary_by_name("company")]
    assert vocabulary == tfx_data.numpy_vocabulary(strings["company"])
    expected_ids = [vocabulary.index(c) for c in strings["company"]]
    np.testing.assert_array_equal(values["company_id"][order].reshape(-1), expected_ids)


def test_read_statistics_of_a_user_graph(penguins, user_transform):
    columns, _ = penguins
    graph_dir, _ = user_transform
    stats = normpipe.read_statistics(graph_dir)
    assert stats["num_examples"] == tfx_data.N and set(stats["features"]) == set(NUMERIC)
    for name in NUMERIC:
        assert_stats_close(stats["features"][name], numpy_stats(columns[name]))
    assert stats["features"]["year"]["missing"] == int(np.isnan(columns["year"]).sum()) > 0


def _dense_float64_batch(columns):
    """One record batch and the TensorAdapterConfig that gives each column
    to the preprocessing_fn as a dense float64 [batch] tensor."""
    arrays, representations = [], {}
    for name, values in columns.items():
        offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
        arrays.append(pa.ListArray.from_arrays(offsets, pa.array(values, pa.float64())))
        representation = schema_pb2.TensorRepresentation()
        representation.dense_tensor.column_name = name
        representation.dense_tensor.shape.SetInParent()
        representations[name] = representation
    batch = pa.RecordBatch.from_arrays(arrays, list(columns))
    return batch, tensor_adapter.TensorAdapterConfig(batch.schema, representations)


def equal_to_numpy(columns, features, methods):
    """A Beam matcher: the transformed batches' normalized columns equal
    numpy float64 normalization of `columns` (rows aligned by "row")."""
    def check(batches):
        got = {name: np.concatenate([b.column(b.schema.names.index(name)).flatten().to_numpy() for b in batches])
               for name in batches[0].schema.names}
        order = np.argsort(got["row"], kind="stable")
        for name in features:
            for method, suffix in methods:
                expected = tfx_data.numpy_normalize(columns[name], method)
                np.testing.assert_allclose(got[name + suffix][order], expected, rtol=0, atol=1e-6,
                                           err_msg=name + suffix)
    return check


def test_plain_analyze_and_transform_with_float64_inputs(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    columns = {
        "row": np.arange(n, dtype=np.float64),
        "offset": 1e6 + rng.normal(0, 1e-2, n),  # float64 only: float32 keeps no digit of the spread
        "zero_variance": np.full(n, 7.25),
        "all_missing": np.full(n, np.nan),
        "sometimes": np.where(rng.random(n) < 0.3, np.nan, rng.lognormal(0, 1, n)),
    }
    # numpy_normalize gives 0 for the zero-variance and the all-missing feature
    features = ("offset", "zero_variance", "all_missing", "sometimes")

    def preprocessing_fn(inputs):
        outputs = normpipe.tfx.normalize(inputs, features, method="both")
        outputs["row"] = tf.cast(inputs["row"], tf.int64)  # a transformed output is int64, float32 or string
        return outputs

    batch, config = _dense_float64_batch(columns)
    graph_dir = str(tmp_path / "transform_fn_dir")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        (transformed, _), transform_fn = ((p | beam.Create([batch]), config)
                                          | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn,
                                                                                output_record_batches=True))
        _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
        assert_that(transformed | beam.Map(lambda pair: pair[0]),
                    equal_to_numpy(columns, features, (("zscore", "_z"), ("minmax", "_01"))))
    stats = normpipe.read_statistics(graph_dir)
    for name in features:
        assert_stats_close(stats["features"][name], numpy_stats(columns[name]))
    assert stats["features"]["zero_variance"]["var"] == 0.0
    assert stats["features"]["all_missing"] == {"count": 0, "missing": n, "mean": None, "var": None, "std": None,
                                                "min": None, "max": None}


def _trace(fn, inputs_spec):
    """Traces fn in a tf.function, as tf.Transform traces a preprocessing_fn
    (analyzers are only placeholders here; nothing runs). tf.Transform's
    analyzers trace only inside its graph context, as its own tracing sets."""
    with tft.graph_context.TFGraphContext(module_to_export=tf.Module(), temp_dir=None, evaluated_replacements=None):
        return tf.function(fn).get_concrete_function(inputs_spec)


SPEC = {
    "a": tf.TensorSpec([None, 1], tf.float32),
    "b": tf.SparseTensorSpec([None, None], tf.int64),
    "s": tf.TensorSpec([None, 1], tf.string),
}


@pytest.mark.parametrize("kwargs, message", [
    ({"features": ["a", "nope"]}, r"features must be inputs \(a, b, s\). Received: unknown \['nope'\]"),
    ({"features": "a"}, r"features must be a list of input names. Received: 'a'"),
    ({"features": ["s"]}, r"features must be numeric \(int or float\) inputs. Received: \{'s': 'string'\}"),
    ({"features": ["a", "a"]}, r"each input once .* Received: \['a', 'a'\]"),
    ({"method": "l2"}, r"method must be one of zscore, minmax, both. Received: 'l2'"),
    ({"exponents": {"c": 1}}, r"exponents must name normalized features \(a, b\). Received: unknown \['c'\]"),
    ({"exponents": {"a": 0.5}}, r"exponents must be integers .* Received: \{'a': 0.5\}"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _trace(lambda inputs: normpipe.tfx.normalize(inputs, **kwargs), SPEC)


def test_inputs_without_numeric_features_are_refused():
    with pytest.raises(ValueError, match=r"no numeric feature to normalize. Received: \{'s': 'string'\}"):
        _trace(lambda inputs: normpipe.tfx.normalize(inputs), {"s": SPEC["s"]})
    with pytest.raises(ValueError, match=r"inputs must be the dict .* Received: list"):
        normpipe.tfx.normalize([1.0])


def test_a_second_call_is_refused_and_a_name_scope_is_ignored():
    def twice(inputs):
        with tf.name_scope("user"):
            first = normpipe.tfx.normalize(inputs, ["a"])
        return {**first, **normpipe.tfx.normalize(inputs, ["b"])}

    with pytest.raises(ValueError, match=r"once per transform graph.*Received: a second call"):
        _trace(twice, SPEC)

    def scoped(inputs):
        with tf.name_scope("user"):
            return normpipe.tfx.normalize(inputs)

    graph = _trace(scoped, SPEC).graph
    names = {op.name for op in graph.get_operations()}
    assert {"normpipe_statistics", "normpipe_config"} <= names


def test_features_none_skips_non_numeric_inputs():
    outputs = _trace(lambda inputs: normpipe.tfx.normalize(inputs, method="minmax"), SPEC).structured_outputs
    assert set(outputs) == {"a_01", "b_01"}
    assert all(t.dtype == tf.float32 and t.shape.as_list() == [None] for t in outputs.values())


def test_preprocessing_fn_passes_columns_through():
    spec = {**SPEC, "label": tf.TensorSpec([None, 1], tf.float32), "v": tf.SparseTensorSpec([None, None], tf.string)}
    config = {"label": "label", "passthrough": ["s", "v", "b"]}
    outputs = _trace(lambda inputs: normpipe.tfx.preprocessing_fn(inputs, config), spec).structured_outputs
    # passthrough columns are not in the default features; a sparse one is densified to [batch, 1]
    assert set(outputs) == {"a_z", "label", "s", "v", "b"}
    assert outputs["v"].dtype == tf.string and outputs["v"].shape.as_list() == [None, 1]
    assert outputs["b"].dtype == tf.int64 and outputs["s"].shape.as_list() == [None, 1]
    with pytest.raises(ValueError, match=r"passthrough must be inputs .* Received: unknown \['x'\]"):
        _trace(lambda inputs: normpipe.tfx.preprocessing_fn(inputs, {"passthrough": ["x"]}), spec)
    with pytest.raises(ValueError, match=r"passthrough names an output twice .* Received: \['label'\]"):
        _trace(lambda inputs: normpipe.tfx.preprocessing_fn(inputs, {"label": "label", "passthrough": ["label"]}),
               spec)


def test_passthrough_densifies_with_empty_string_and_zero():
    values = tf.SparseTensor([[0, 0], [2, 0]], tf.constant(["x", "y"]), [3, 1])
    numbers = tf.SparseTensor([[1, 0]], tf.constant([5], tf.int64), [3, 1])
    dense = normalization.passthrough_outputs({"v": values, "n": numbers}, ["v", "n"])
    assert dense["v"].numpy().tolist() == [[b"x"], [b""], [b"y"]]
    assert dense["n"].numpy().tolist() == [[0], [5], [0]]


@pytest.mark.slow
def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(normalization.normalize, "normalize", globs={})
    assert tests and tests[0].examples
    for test in tests:
        runner.run(test)
    assert runner.failures == 0



def test_run_fn_names_an_id_beyond_the_graphs_vocabulary():
    from normpipe.tfx import trainer

    split = trainer._split_ids({"company_id": 3})  # pylint: disable=protected-access
    x = {"fare_z": tf.constant([0.5, -1.0]), "company_id": tf.constant([[2], [1]], tf.int64)}
    (features, ids), _ = split(x, tf.constant([1.0, 2.0]), ["fare_z"])
    assert features.shape == (2, 1) and ids.numpy().tolist() == [[2], [1]]
    x["company_id"] = tf.constant([[2], [3]], tf.int64)  # id 3 of 3: from another run's vocabulary
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"'company_id' holds an id beyond the 3 ids"):
        split(x, tf.constant([1.0, 2.0]), ["fare_z"])
