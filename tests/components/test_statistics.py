"""Statistics stage: tf.Transform analyzers against numpy float64."""

import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_transform.beam as tft_beam

from components import ingest, statistics
from tests.conftest import TAXI_CSV, assert_stats_close, numpy_stats, read_csv_float64, write_csv


def analyze(tmp_path, spec, split_size=64 << 20):
    transform_dir = str(tmp_path / "transform")
    with beam.Pipeline(runner="DirectRunner") as p, tft_beam.Context(temp_dir=str(tmp_path / "tft")):
        _ = (
            p
            | ingest.ReadRecordBatches(spec, split_size=split_size)
            | statistics.AnalyzeStatistics(
                spec.features, ingest.tensor_adapter_config(spec), transform_dir, spec.centers
            )
        )
    return statistics.read_statistics(transform_dir, spec.features, spec.numeric)


def check_against_numpy(stats, path, names):
    reference = read_csv_float64(path, names)
    assert stats["num_examples"] == len(next(iter(reference.values())))
    for name in names:
        assert_stats_close(stats["features"][name], numpy_stats(reference[name]))


def test_mixed_scales_with_missing_match_numpy(tmp_path, mixed_data):
    path = write_csv(tmp_path / "d.csv", mixed_data)
    spec = ingest.inspect_input(str(path))
    stats = analyze(tmp_path, spec, split_size=20000)  # several byte ranges
    check_against_numpy(stats, path, list(mixed_data))


def test_large_offset(tmp_path):
    rng = np.random.default_rng(1)
    values = 1e6 + rng.normal(0, 1e-2, 20000)
    path = write_csv(tmp_path / "d.csv", {"x": values, "y": 1e12 + rng.normal(0, 1, 20000)})
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    check_against_numpy(stats, path, ["x", "y"])
    # The float32 answer would be off by orders of magnitude; float64 is not.
    assert stats["features"]["x"]["std"] == pytest.approx(np.std(values), rel=1e-7)


def test_zero_variance(tmp_path):
    path = write_csv(tmp_path / "d.csv", {"c": np.full(100, 3.25), "big": np.full(100, 1.4e9), "v": np.arange(100.0)})
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    for name in ("c", "big"):
        assert stats["features"][name]["var"] == 0.0
        assert stats["features"][name]["std"] == 0.0
    check_against_numpy(stats, path, ["c", "big", "v"])


def test_all_missing(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,empty\n1,\n2,\n4,\n")
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    assert stats["features"]["empty"] == {
        "count": 0, "missing": 3, "mean": None, "var": None, "std": None, "min": None, "max": None
    }
    check_against_numpy(stats, path, ["a", "empty"])


def test_single_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n-7.5,1e-300\n")
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    assert stats["num_examples"] == 1
    check_against_numpy(stats, path, ["a", "b"])


def test_taxi_sample_including_timestamp(tmp_path):
    spec = ingest.inspect_input(TAXI_CSV, label="tips")
    stats = analyze(tmp_path, spec)
    check_against_numpy(stats, TAXI_CSV, list(spec.features))
    assert "tips" not in stats["features"]
    ts = stats["features"]["trip_start_timestamp"]
    assert ts["mean"] > 1e9


def test_statistics_are_the_transform_graph_constants(tmp_path, mixed_data):
    """read_statistics decodes exactly the bits the graph carries."""
    path = write_csv(tmp_path / "d.csv", {k: v[:500] for k, v in mixed_data.items()})
    spec = ingest.inspect_input(str(path))
    stats = analyze(tmp_path, spec)
    graph = statistics.load_transform_graph(str(tmp_path / "transform"))
    import tensorflow as tf

    raw = graph.transform_fn({n: tf.constant([1.0, 2.0], tf.float64) for n in spec.numeric})
    matrix = raw[statistics.STATS_KEY].numpy()[1].view(np.float64)
    assert matrix[2, 0] == stats["features"][spec.features[0]]["mean"]
