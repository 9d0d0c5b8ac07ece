"""Statistics: tf.Transform's analyzers (`normpipe transform`) and the numpy
moments merged in Beam (`normpipe stats`), each against an independent
numpy float64 or exact rational reference on the same values."""

import dataclasses
import json

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions

from normpipe.components import moments, statistics
from normpipe.core import graph_constants
from normpipe.io import column_names, ingest
from tests.conftest import TAXI_CSV, assert_stats_close, exact_stats, numpy_stats, read_csv_float64, write_csv


def analyze_tft(tmp_path, spec, split_size=64 << 20, bad_values_path=None, beam_flags=()):
    transform_dir = str(tmp_path / "transform")
    options = PipelineOptions(["--runner=DirectRunner", *beam_flags])
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=str(tmp_path / "tft")):
        _ = (
            p
            | ingest.ReadRecordBatches(spec, split_size=split_size, bad_values_path=bad_values_path)
            | ingest.ToFeatureMatrix(spec)
            | statistics.AnalyzeStatistics(
                spec.features, ingest.tensor_adapter_config(spec), transform_dir, spec.exponents
            )
        )
    return statistics.read_statistics(transform_dir)


def analyze_numpy(tmp_path, spec, split_size=64 << 20, bad_values_path=None, beam_flags=()):
    matrix_path = str(tmp_path / "statistics_matrix.json")
    options = PipelineOptions(["--runner=DirectRunner", *beam_flags])
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | ingest.ReadRecordBatches(spec, split_size=split_size, bad_values_path=bad_values_path)
            | moments.ComputeMoments(spec.features, matrix_path)
        )
    return moments.summarize(moments.read_matrix(matrix_path), spec.features)


@pytest.fixture(params=["tft", "numpy"])
def analyze(request):
    """Both engines: tf.Transform's analyzers and the numpy moments."""
    return analyze_tft if request.param == "tft" else analyze_numpy


def check_against_numpy(stats, path, names):
    reference = read_csv_float64(path, names)
    assert stats["num_examples"] == len(next(iter(reference.values())))
    for name in names:
        assert_stats_close(stats["features"][name], numpy_stats(reference[name]))


def test_mixed_scales_with_missing_match_numpy(tmp_path, mixed_data, analyze):
    path = write_csv(tmp_path / "d.csv", mixed_data)
    spec = ingest.inspect_input(str(path))
    stats = analyze(tmp_path, spec, split_size=20000)  # several byte ranges
    check_against_numpy(stats, path, list(mixed_data))


def test_large_offset(tmp_path, analyze):
    rng = np.random.default_rng(1)
    values = 1e6 + rng.normal(0, 1e-2, 20000)
    path = write_csv(tmp_path / "d.csv", {"x": values, "y": 1e12 + rng.normal(0, 1, 20000)})
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    check_against_numpy(stats, path, ["x", "y"])
    # The float32 answer would be off by orders of magnitude; float64 is not.
    assert stats["features"]["x"]["std"] == pytest.approx(np.std(values), rel=1e-7)


def test_zero_variance(tmp_path, analyze):
    path = write_csv(tmp_path / "d.csv", {"c": np.full(100, 3.25), "big": np.full(100, 1.4e9), "v": np.arange(100.0)})
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    for name in ("c", "big"):
        assert stats["features"][name]["var"] == 0.0
        assert stats["features"][name]["std"] == 0.0
    check_against_numpy(stats, path, ["c", "big", "v"])


def test_all_missing(tmp_path, analyze):
    path = tmp_path / "d.csv"
    path.write_text("a,empty\n1,\n2,\n4,\n")
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    assert stats["features"]["empty"] == {
        "count": 0, "missing": 3, "mean": None, "var": None, "std": None, "min": None, "max": None
    }
    check_against_numpy(stats, path, ["a", "empty"])


def test_single_row(tmp_path, analyze):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n-7.5,1e-300\n")
    stats = analyze(tmp_path, ingest.inspect_input(str(path)))
    assert stats["num_examples"] == 1
    check_against_numpy(stats, path, ["a", "b"])


def test_taxi_sample_including_timestamp(tmp_path, analyze):
    spec = ingest.inspect_input(TAXI_CSV, label="tips")
    stats = analyze(tmp_path, spec)
    check_against_numpy(stats, TAXI_CSV, list(spec.features))
    assert "tips" not in stats["features"]
    ts = stats["features"]["trip_start_timestamp"]
    assert ts["mean"] > 1e9


def test_statistics_are_named_graph_constants_not_outputs(tmp_path, mixed_data):
    """The float64 matrix inside the saved graph holds the statistics; the
    graph's outputs do not carry them."""
    path = write_csv(tmp_path / "d.csv", {k: v[:500] for k, v in mixed_data.items()})
    spec = ingest.inspect_input(str(path))
    analyze_tft(tmp_path, spec)
    transform_fn = statistics.load_transform_graph(str(tmp_path / "transform")).transform_fn
    found = graph_constants.read(transform_fn, [statistics.STATISTICS_NODE, statistics.CONFIG_NODE])
    matrix = found[statistics.STATISTICS_NODE]
    assert matrix.dtype == np.float64 and matrix.shape == (len(statistics.FIELDS), len(spec.features))
    assert json.loads(found[statistics.CONFIG_NODE])["features"] == list(spec.features)
    reference = read_csv_float64(path, list(spec.features))
    mean_row, count_row = statistics.FIELDS.index("mean"), statistics.FIELDS.index("count")
    for column, name in enumerate(spec.features):
        present = reference[name][~np.isnan(reference[name])]
        assert matrix[count_row, column] == present.size
        assert matrix[mean_row, column] == pytest.approx(present.mean(), rel=1e-12)
    import tensorflow as tf

    outputs = transform_fn({column_names.MATRIX_INPUT: tf.constant(np.array([[1.0, 2.0]] * len(spec.features)).T)})
    assert all(v.dtype != tf.float64 and v.shape.rank == 1 for v in outputs.values())


def test_beyond_float32_and_subnormal_values(tmp_path, analyze):
    """float64 end to end, and no flush-to-zero: 1e39 overflows float32, 1e-310 is subnormal."""
    columns = {
        "tiny": [1e-310, 3e-310, 2e-310, 5e-324, np.nan, 2.5e-310],
        "huge": [1e39, -1e39, 3.4e39, 2e39, 1.5e39, np.nan],
        "mixed": [1e-310, 1.0, 2.0, 1e39, -7.5, 0.0],
        "far": [1e200, -1e200, 3e200, 2e200, np.nan, 0.0],  # variance beyond float64
    }
    path = write_csv(tmp_path / "d.csv", columns)
    spec = ingest.inspect_input(str(path))
    stats = analyze(tmp_path, spec)
    for name, values in columns.items():
        actual, expected = stats["features"][name], exact_stats(np.array(values))
        assert (actual["count"], actual["missing"]) == (expected["count"], expected["missing"]), name
        assert actual["min"] == expected["min"] and actual["max"] == expected["max"], name  # exact
        for key in ("mean", "std"):
            assert actual[key] == pytest.approx(expected[key], rel=1e-9, abs=0), (name, key)
        if name == "far":
            assert actual["var"] is None  # std**2 = 1e400 is beyond float64
        else:
            assert actual["var"] == pytest.approx(expected["var"], rel=1e-9, abs=1e-323), name


def test_values_far_beyond_the_sample_scale_are_exact(tmp_path, analyze):
    """The statistics do not depend on the sample's scale (the exponent only
    scales the graph's normalization)."""
    path = tmp_path / "d.csv"
    path.write_text("x\n1e-310\n3e-310\n1.0\n")
    spec = ingest.inspect_input(str(path))
    spec = dataclasses.replace(spec, exponents=(1000,))  # as if the sample held only subnormals
    assert analyze(tmp_path, spec)["features"]["x"] == exact_stats(np.array([1e-310, 3e-310, 1.0]))


@pytest.mark.parametrize(
    "beam_flags",
    [(), pytest.param(("--direct_running_mode=multi_processing", "--direct_num_workers=2"), marks=pytest.mark.slow)],
)
def test_bad_values_as_missing_are_counted_exactly(tmp_path, beam_flags, analyze):
    """Counts travel as data through a CombineGlobally: summed over every byte range and worker."""
    rng = np.random.default_rng(3)
    x = rng.normal(5, 2, 3000)
    cells = [repr(float(v)) for v in x]
    bad = rng.choice(3000, 40, replace=False)
    for i, j in enumerate(sorted(bad)):
        cells[j] = ["abc", "$3", "inf", "-inf", "1e400"][i % 5]
    path = tmp_path / "d.csv"
    path.write_text("x,y\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells)))
    spec = ingest.inspect_input(str(path), bad_values="missing")
    counts_path = str(tmp_path / "bad_values.json")
    stats = analyze(tmp_path, spec, split_size=5000, bad_values_path=counts_path, beam_flags=beam_flags)
    assert json.loads(open(counts_path).read()) == {"x": 40}
    expected = x.copy()
    expected[bad] = np.nan
    assert_stats_close(stats["features"]["x"], numpy_stats(expected))
    assert stats["num_examples"] == 3000


def test_no_bad_values_writes_an_empty_count(tmp_path, analyze):
    path = write_csv(tmp_path / "d.csv", {"x": np.arange(10.0)})
    counts_path = str(tmp_path / "bad_values.json")
    analyze(tmp_path, ingest.inspect_input(str(path), bad_values="missing"), bad_values_path=counts_path)
    assert ingest.read_bad_value_counts(counts_path) == {}
