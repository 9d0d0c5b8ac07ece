"""`normpipe transform` and `normpipe compare` as a user runs them."""

import json
import os

import numpy as np
import pytest
import tensorflow_transform as tft

from tests.conftest import run_cli, write_csv


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    rng = np.random.default_rng(2)
    n = 1500
    cols = {
        "fare": rng.lognormal(2, 0.7, n),
        "ts": np.round(1.4e9 + rng.uniform(0, 1e8, n)),
        "lat": np.where(rng.random(n) < 0.05, np.nan, 41.9 + rng.normal(0, 0.04, n)),
        "tips": rng.exponential(1.0, n),
    }
    return write_csv(tmp_path_factory.mktemp("data") / "small.csv", cols)


@pytest.mark.slow
def test_compare_cli_writes_json_markdown_and_plot(tmp_path, small_csv):
    result = run_cli([
        "compare", "--input", str(small_csv), "--output-dir", str(tmp_path), "--label", "tips",
        "--method", "both", "--batch-sizes", "1,8,2048",
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "comparison.json").read_text())
    assert document["features"] == ["fare", "ts", "lat"]
    assert len(document["records"]) == 3 * 2 * 2 * 3
    keys = {"feature", "method", "order", "batch_size", "mean_abs_error", "p99_abs_error", "max_abs_error", "nonfinite_fraction"}
    assert all(keys <= set(r) for r in document["records"])
    by_key = {(r["feature"], r["method"], r["order"], r["batch_size"]): r for r in document["records"]}
    assert by_key[("fare", "minmax", "file", 1)]["nonfinite_fraction"] == 1.0
    assert by_key[("fare", "zscore", "shuffled", 2048)]["mean_abs_error"] < 1e-4
    markdown = (tmp_path / "comparison.md").read_text()
    assert "| fare |" in markdown and "## Conclusion" in markdown
    png = (tmp_path / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20000
    # the transform output is a tf.Transform layout
    output = tft.TFTransformOutput(str(tmp_path / "transform"))
    assert set(output.transformed_feature_spec()) == {"fare_z", "ts_z", "lat_z", "fare_01", "ts_01", "lat_01", "tips"}
    assert os.listdir(tmp_path / "transformed")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


@pytest.mark.slow
def test_transform_cli_without_materializing(tmp_path, small_csv):
    result = run_cli(["transform", "--input", str(small_csv), "--output-dir", str(tmp_path), "--no-materialize"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "transform" / "transform_fn" / "saved_model.pb").exists()
    assert not (tmp_path / "transformed").exists()
    stats = json.loads((tmp_path / "statistics.json").read_text())
    assert stats["num_examples"] == 1500


@pytest.mark.slow
def test_export_cli_versions_and_name_check(tmp_path, small_csv):
    assert run_cli(["transform", "--input", str(small_csv), "--output-dir", str(tmp_path), "--no-materialize"]).returncode == 0
    for expected in ("1", "2"):
        result = run_cli(["export", "--output-dir", str(tmp_path), "--model-name", "taxi"])
        assert result.returncode == 0, result.stderr[-2000:]
        assert (tmp_path / "serving" / "taxi" / expected / "saved_model.pb").exists()
    bad = run_cli(["export", "--output-dir", str(tmp_path), "--model-name", "../escape"])
    assert bad.returncode == 2 and "normpipe: error: --model-name" in bad.stderr
    assert not (tmp_path / "escape").exists()


def test_comparison_reads_at_most_max_rows(tmp_path):
    from normpipe.components import compare_report
    from normpipe.io import ingest
    from normpipe.pipeline.compare import make_batches_fn

    values = np.arange(1000, dtype=np.float64)
    spec = ingest.inspect_input(str(write_csv(tmp_path / "d.csv", {"a": values, "b": -values})))

    def graph(columns):  # the reference: the raw values themselves
        return {f"{n}_z": columns[n].astype(np.float32) for n in columns}

    for limit, expected in ((None, 1000), (1000, 1000), (300, 300), (1, 1)):
        chunks = list(make_batches_fn(spec, graph, ["zscore"], max_rows=limit)())
        raw = np.concatenate([c[0] for c in chunks])
        np.testing.assert_array_equal(raw, np.stack([values, -values], axis=1)[:expected])
        np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), raw.astype(np.float32))
    document = {"num_examples": 1000, "rows_compared": 300, "features": ["a"], "methods": ["zscore"],
                "batch_sizes": [1], "records": [
                    {"feature": "a", "method": "zscore", "order": o, "batch_size": 1, "mean_abs_error": 1.0,
                     "nonfinite_fraction": 0.0} for o in ("file", "shuffled")]}
    assert "compared on the first 300 rows" in compare_report.render_markdown(document)


def test_report_says_how_many_rows_were_compared():
    from normpipe.components import report

    records = [{"feature": "a", "method": "zscore", "order": o, "batch_size": 1, "mean_abs_error": 1.0,
                "nonfinite_fraction": 0.0} for o in ("file", "shuffled")]
    document = {"num_examples": 1000, "rows_compared": 300, "features": ["a"], "methods": ["zscore"],
                "batch_sizes": [1], "records": records}
    assert "Compared on the first 300 of 1,000 rows." in report.comparison_section(document, None)
    assert "Compared on" not in report.comparison_section({**document, "rows_compared": 1000}, None)


def _counting_source(chunks):
    calls = []

    def batches():
        calls.append(1)
        yield from chunks

    return batches, calls


def test_rows_are_read_once_for_every_pass_when_they_fit():
    from normpipe.pipeline.compare import replayable

    chunks = [(np.full((3, 2), float(i)), np.full((3, 2), i, np.float32)) for i in range(4)]
    source, calls = _counting_source(chunks)
    batches = replayable(source, max_cells=24)
    assert next(iter(batches())) is chunks[0]  # the comparison's first look, abandoned
    for _ in range(2):  # one pass per order
        assert list(batches()) == chunks
    assert len(calls) == 1


def test_rows_beyond_the_replay_limit_are_read_again_for_each_pass():
    from normpipe.pipeline.compare import replayable

    chunks = [(np.full((3, 2), float(i)), np.full((3, 2), i, np.float32)) for i in range(4)]
    source, calls = _counting_source(chunks)
    batches = replayable(source, max_cells=13)  # two chunks fit, the third does not
    assert next(iter(batches())) is chunks[0]
    for _ in range(2):
        assert list(batches()) == chunks
    assert len(calls) == 2  # the first pass went on reading; the second read again


def test_comparison_json_is_one_record_per_line_and_parses_back():
    from normpipe.components.compare_report import json_text

    records = [{"feature": "a", "batch_size": b, "mean_abs_error": None if b == 2 else 0.5 * b} for b in (1, 2, 8)]
    document = {"num_examples": 3, "features": ["a"], "records": records, "probe": [], "seed": 0}
    text = json_text(document)
    assert json.loads(text) == document
    lines = text.splitlines()
    assert [json.loads(line.rstrip(",")) for line in lines if line.startswith("    {")] == records
    with pytest.raises(ValueError):
        json_text({"records": [{"x": float("nan")}]})
