"""Transform stage: tf.Transform outputs against numpy float64 normalization."""

import glob

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from normpipe.components import preprocessing, statistics, transform
from normpipe.io import ingest
from tests.conftest import TAXI_CSV, exact_normalize, read_csv_float64, write_csv


def run_transform(tmp_path, spec, method="both"):
    options = preprocessing.TransformOptions(spec.features, method, spec.label, exponents=spec.exponents,
                                             categorical=spec.categorical)
    transform_dir = str(tmp_path / "transform")
    prefix = str(tmp_path / "transformed" / "part")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(tmp_path / "tft")):
        _ = p | ingest.ReadRecordBatches(spec) | ingest.ToFeatureMatrix(spec) | transform.AnalyzeAndTransform(
            options, ingest.tensor_adapter_config(spec), transform_dir, prefix
        )
    transform.write_metadata(transform_dir, options, spec.numeric, spec.renamed, spec.int64_columns, codes=spec.codes)
    return transform_dir, options


def read_transformed(tmp_path, transform_dir):
    """Parses the materialized examples with tf.Transform's own feature spec."""
    spec = tft.TFTransformOutput(transform_dir).transformed_feature_spec()
    files = sorted(glob.glob(str(tmp_path / "transformed" / "part*.tfrecord.gz")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100000)
    columns = {}
    for batch in dataset:
        for name, value in tf.io.parse_example(batch, spec).items():
            columns.setdefault(name, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in columns.items()}


def numpy_normalize(values, method):
    present = values[~np.isnan(values)]
    if present.size == 0:
        return np.zeros_like(values)
    mean = present.mean()
    imputed = np.where(np.isnan(values), mean, values)
    if method == "zscore":
        scale, offset = present.std(), mean
    else:
        scale, offset = present.max() - present.min(), present.min()
    if scale == 0:
        return np.zeros_like(values)
    return (imputed - offset) / scale


def assert_rows_match(actual, raw, key):
    """Rows may come back in any order: match them by a unique key column."""
    order_actual = np.argsort(actual[key + "_z"], kind="stable")
    order_raw = np.argsort(numpy_normalize(raw[key], "zscore"), kind="stable")
    return order_actual, order_raw


def test_transformed_values_equal_numpy_float64(tmp_path, mixed_data):
    n = 2000
    data = {k: v[:n] for k, v in mixed_data.items()}
    data["row"] = np.arange(n, dtype=np.float64)  # unique key to align rows
    data["constant"] = np.full(n, 7.0)
    data["empty"] = np.full(n, np.nan)
    path = write_csv(tmp_path / "d.csv", data)
    spec = ingest.inspect_input(str(path))
    transform_dir, _options = run_transform(tmp_path, spec)
    actual = read_transformed(tmp_path, transform_dir)
    raw = read_csv_float64(path, list(data))
    order = np.argsort(actual["row_01"], kind="stable")
    assert statistics.STATS_KEY not in actual
    for name in data:
        for method in ("zscore", "minmax"):
            got = actual[name + preprocessing.SUFFIX[method]][order]
            expected = numpy_normalize(raw[name], method)
            assert got.dtype == np.float32
            assert np.all(np.isfinite(got)), name
            np.testing.assert_allclose(got, expected.astype(np.float32), rtol=2e-6, atol=2e-6, err_msg=f"{name} {method}")
    # zero_variance and all_missing features map to 0.0
    assert np.all(actual["constant_z"] == 0) and np.all(actual["constant_01"] == 0)
    assert np.all(actual["empty_z"] == 0) and np.all(actual["empty_01"] == 0)
    # missing values are imputed with the mean: z-score 0
    missing = np.isnan(raw["sparse"])
    assert missing.any() and np.all(actual["sparse_z"][order][missing] == 0)


def test_single_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n3.5,\n")
    transform_dir, _ = run_transform(tmp_path, ingest.inspect_input(str(path)))
    actual = read_transformed(tmp_path, transform_dir)
    for key in ("a_z", "a_01", "b_z", "b_01"):
        np.testing.assert_array_equal(actual[key], [0.0])


def test_tft_output_reads_back_and_graph_matches_statistics(tmp_path):
    spec = ingest.inspect_input(TAXI_CSV, label="tips", features=("fare", "trip_start_timestamp", "trip_miles"))
    transform_dir, _options = run_transform(tmp_path, spec, method="zscore")
    output = tft.TFTransformOutput(transform_dir)
    feature_spec = output.transformed_feature_spec()
    assert set(feature_spec) == {"fare_z", "trip_start_timestamp_z", "trip_miles_z", "tips", "payment_type_id",
                                 "company_id"}
    assert all(s.dtype == (tf.int64 if n.endswith("_id") else tf.float32) for n, s in feature_spec.items())
    stats = statistics.read_statistics(transform_dir)
    graph = transform.TransformGraph(transform_dir)
    ts = stats["features"]["trip_start_timestamp"]
    probe = np.array([ts["mean"], ts["mean"] + ts["std"], np.nan, np.inf, -np.inf])
    columns = dict.fromkeys(spec.numeric, probe)
    out = graph(columns)
    np.testing.assert_allclose(out["trip_start_timestamp_z"][:3], [0.0, 1.0, 0.0], atol=1e-6)
    assert np.all(np.isfinite(out["trip_start_timestamp_z"]))  # inf in, finite out
    # the label passes through as float32
    np.testing.assert_array_equal(out["tips"][:2], probe[:2].astype(np.float32))
    reference = read_csv_float64(TAXI_CSV, ["trip_start_timestamp"])["trip_start_timestamp"]
    assert ts["mean"] == pytest.approx(np.mean(reference), rel=1e-12)


def test_subnormal_huge_and_renamed_features(tmp_path):
    """Normalization is scale-free: numpy on x * 2**k (exact) is the reference."""
    data = {
        "row": np.arange(6.0),
        "tiny value": np.array([1e-310, 3e-310, 2e-310, 5e-324, np.nan, 2.5e-310]),
        "huge": np.array([1e200, -1e200, 3e200, 2e200, np.nan, 0.0]),
    }
    path = write_csv(tmp_path / "d.csv", data)
    spec = ingest.inspect_input(str(path))
    assert spec.renamed == {"tiny value": "tiny_value"}
    transform_dir, _ = run_transform(tmp_path, spec)
    assert transform.read_metadata(transform_dir)["renamed"] == {"tiny value": "tiny_value"}
    actual = read_transformed(tmp_path, transform_dir)
    order = np.argsort(actual["row_01"], kind="stable")
    for name, column, k in (("tiny_value", "tiny value", 1030), ("huge", "huge", -660)):
        for method in ("zscore", "minmax"):
            expected = numpy_normalize(np.ldexp(data[column], k), method)
            got = actual[name + preprocessing.SUFFIX[method]][order]
            np.testing.assert_allclose(got, expected.astype(np.float32), rtol=2e-6, atol=2e-6, err_msg=f"{name} {method}")


def test_large_offset_small_spread(tmp_path):
    """x - mean is taken around the center: the mean rounded near 5.5e11 is off by ~6e-5."""
    rng = np.random.default_rng(4)
    x = -553514643000.0 + rng.uniform(-0.5, 0.5, 80)
    x[rng.random(80) < 0.3] = np.nan
    data = {"row": np.arange(80.0), "x": x}
    path = write_csv(tmp_path / "d.csv", data)
    transform_dir, _ = run_transform(tmp_path, ingest.inspect_input(str(path)))
    actual = read_transformed(tmp_path, transform_dir)
    order = np.argsort(actual["row_01"], kind="stable")
    raw = read_csv_float64(path, ["x"])["x"]
    for method in ("zscore", "minmax"):
        expected = exact_normalize(raw, method).astype(np.float32)
        np.testing.assert_allclose(actual["x" + preprocessing.SUFFIX[method]][order], expected, rtol=2e-6, atol=2e-6)
