"""A real TFX pipeline whose Transform runs a user's module file calling
normpipe.tfx.normalize beside tft.compute_and_apply_vocabulary:
CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform, on LocalDagRunner.

The transform graph is applied to the train split ExampleGen wrote and
compared with numpy float64 on the same values; `read_statistics` reads its
statistics back. Skipped, with the reason, where TFX does not import (see
test_tfx_pipeline.py).
"""

import glob
import os

import numpy as np
import pytest

from tests.conftest import assert_stats_close, numpy_stats
from tests.tfx import test_tfx_pipeline, tfx_data
from tests.tfx.test_tfx_pipeline import _split_values, _write_subset, tfx

_REASON = getattr(test_tfx_pipeline, "_REASON", "")  # set where TFX does not import

FEATURES = ("fare", "pickup_latitude", "trip_miles", "trip_seconds", "trip_start_timestamp")

USER_MODULE = '''
import tensorflow as tf
import tensorflow_transform as tft

import normpipe.tfx

FEATURES = {features!r}


def _fill_in_missing(x):
    """dense [batch], "" or 0 where a VarLen feature is absent (as TFX's taxi example)."""
    if not isinstance(x, tf.SparseTensor):
        return tf.squeeze(x, axis=1)
    default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    return tf.squeeze(dense, axis=1)


def preprocessing_fn(inputs):
    outputs = normpipe.tfx.normalize(inputs, FEATURES)
    outputs["company_id"] = tft.compute_and_apply_vocabulary(_fill_in_missing(inputs["company"]),
                                                             num_oov_buckets=1, vocab_filename="company")
    outputs["tips"] = _fill_in_missing(inputs["tips"])
    return outputs
'''


def build_pipeline(tmp_path, data_dir, module_file, after_transform=None):
    """CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform(module_file).

    `after_transform(example_gen, schema_gen, transform)` returns the
    components that follow Transform (a Trainer with a user's model, a
    Pusher); none here.
    """
    example_gen = tfx.components.CsvExampleGen(input_base=data_dir)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    transform = tfx.components.Transform(examples=example_gen.outputs["examples"],
                                         schema=schema_gen.outputs["schema"], module_file=module_file)
    later = list(after_transform(example_gen, schema_gen, transform)) if after_transform else []
    return tfx.dsl.Pipeline(
        pipeline_name="normpipe_user_module", pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen, schema_gen, transform, *later],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.db")),
    )


def _train_examples(root):
    return sorted(glob.glob(str(root / "CsvExampleGen" / "examples" / "*" / "Split-train" / "*")))


def _apply_graph(graph_dir, files):
    """The transform graph on the raw tf.Examples, parsed with its raw feature spec."""
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(graph_dir)
    serialized = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1_000_000).get_single_element()
    raw = tf.io.parse_example(serialized, output.raw_feature_spec())
    return {k: v.numpy() for k, v in output.transform_raw_features(raw).items()}


def _company_values(files):
    import tensorflow as tf

    values = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature.get("company")
        values.append(feature.bytes_list.value[0].decode() if feature is not None and feature.bytes_list.value
                      else "")
    return values


@pytest.mark.slow
@pytest.mark.skipif(tfx is None, reason=_REASON)
def test_user_module_with_normalize_in_local_dag_runner(tmp_path):
    data_path = _write_subset(str(tmp_path / "data"))
    module_file = tmp_path / "user_module.py"
    module_file.write_text(USER_MODULE.format(features=FEATURES))
    tfx.orchestration.LocalDagRunner().run(build_pipeline(tmp_path, os.path.dirname(data_path), str(module_file)))
    check_transform_output(tmp_path / "root")


def check_transform_output(root):
    """The pipeline's transform graph against numpy float64 on the train split."""
    import tensorflow_transform as tft

    import normpipe

    graph_dir = sorted(glob.glob(str(root / "Transform" / "transform_graph" / "*")))[-1]
    output = tft.TFTransformOutput(graph_dir)
    assert set(output.transformed_feature_spec()) == {f"{n}_z" for n in FEATURES} | {"company_id", "tips"}
    # Transform analyzes the train split: the reference is what ExampleGen wrote there
    files = _train_examples(root)
    train = _split_values(str(root / "CsvExampleGen" / "examples" / "*" / "Split-train" / "*"), FEATURES)
    transformed = _apply_graph(graph_dir, files)
    for name in FEATURES:
        # numpy float64, rounded once to the graph's float32 outputs (a z-score of 44 has a 3.8e-6 ulp)
        expected = tfx_data.numpy_normalize(train[name], "zscore").astype(np.float32)
        np.testing.assert_allclose(transformed[f"{name}_z"].reshape(-1), expected, rtol=0, atol=1e-6, err_msg=name)
    # tf.Transform's vocabulary leaves out the empty string: a missing company goes to the OOV bucket
    companies = _company_values(files)
    vocabulary = [v.decode() for v in output.vocabulary_by_name("company")]
    assert "" in companies and sorted(vocabulary) == sorted(set(companies) - {""})
    expected = [vocabulary.index(c) if c in vocabulary else len(vocabulary) for c in companies]
    np.testing.assert_array_equal(transformed["company_id"].reshape(-1), expected)

    stats = normpipe.read_statistics(graph_dir)
    assert set(stats["features"]) == set(FEATURES)
    assert stats["num_examples"] == len(train[FEATURES[0]]) == len(companies)
    for name in FEATURES:
        assert_stats_close(stats["features"][name], numpy_stats(train[name]))
