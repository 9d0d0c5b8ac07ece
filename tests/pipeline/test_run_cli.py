"""`normpipe run` end to end on generated data, and its report."""

import html.parser
import json
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TAXI_CSV, assert_user_error, run_cli, write_csv


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(21)
    n = 1000
    fare = rng.lognormal(2, 0.6, n)
    cols = {
        "fare": fare,
        "ts": np.round(1.4e9 + rng.uniform(0, 1e8, n)),
        "lat": np.where(rng.random(n) < 0.05, np.nan, 41.9 + rng.normal(0, 0.04, n)),
        "tips": 0.15 * fare + rng.normal(0, 0.3, n),
    }
    return write_csv(tmp_path_factory.mktemp("run") / "d.csv", cols)


@pytest.fixture(scope="module")
def labelled_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run_cli(["run", "--input", str(data), "--output-dir", str(out), "--label", "tips", "--model-name", "tips",
                      "--batch-sizes", "1,8,32,1024", "--epochs", "2", "--materialize", "--comparison-rows", "300"])
    return out, result


@pytest.mark.slow
def test_run_writes_every_artifact(labelled_run):
    out, result = labelled_run
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("statistics.json", "comparison.json", "comparison.md", "comparison.png", "report.html", "run.json",
                 "model/model.keras", "model/metrics.json", "serving/models.config", "serving/tips/1/saved_model.pb",
                 "transform/transform_fn/saved_model.pb"):
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["stages"] == ["statistics+transform", "compare", "train+export", "verify"]
    assert set(run["timings_s"]) == set(run["stages"]) and run["verified"] is True
    assert run["versions"]["tensorflow"] == tf.__version__
    assert len(run["input"]["sha256"]) == 64 and run["command_line"][:2] == ["normpipe", "run"]
    for stage in run["stages"]:
        assert f"stage {stage}: done" in result.stderr
    assert "Epoch 1/2" in result.stdout + result.stderr  # Keras' per-epoch progress
    assert "report:" in result.stdout and "serving skew:" in result.stdout and "docker run" in result.stdout
    verify = run_cli(["verify", "--model-dir", str(out / "serving" / "tips")])
    assert verify.returncode == 0, verify.stdout


def _transformed_split(out, names, label):
    """(train labels, eval labels) parsed back from the transformed TFRecords."""
    from normpipe.components import train

    spec = {n: tf.io.FixedLenFeature([], tf.float32) for n in (*names, label)}
    files = tf.io.gfile.glob(str(out / "transformed" / "*.tfrecord.gz"))
    parsed = [tf.io.parse_example(batch, spec) for batch in tf.data.TFRecordDataset(files, "GZIP").batch(10_000)]
    x = np.concatenate([np.stack([p[n].numpy() for n in names], axis=1) for p in parsed])
    y = np.concatenate([p[label].numpy() for p in parsed])
    held = train.eval_mask(x, y)
    return y[~held].astype(np.float64), y[held].astype(np.float64)


@pytest.mark.slow
def test_run_reports_a_baseline_beside_each_variant(labelled_run):
    out, result = labelled_run
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    train_y, eval_y = _transformed_split(out, ["fare_z", "ts_z", "lat_z"], "tips")
    baseline = metrics["baseline"]
    assert metrics["eval_rows"] == len(eval_y) and metrics["eval_sample_rows"] == min(1000, len(eval_y))
    assert baseline["prediction"] == pytest.approx(train_y.mean(), rel=1e-6)
    assert baseline["batch_4096"]["mae"] == pytest.approx(np.abs(eval_y - train_y.mean()).mean(), rel=1e-6)
    for variant, m in metrics["variants"].items():
        assert m["batch_1"]["rows"] == metrics["eval_sample_rows"] and m["batch_4096"]["rows"] == len(eval_y), variant
        # the exported tft (and constant, on tft's network) on every row, the others on the budget
        assert m["budget"] == ("every_row" if variant in ("tft", "constant") else "comparison"), variant
        assert m["train_rows"] == (len(train_y) if m["budget"] == "every_row" else 300), variant
    assert metrics["train_rows"] == len(train_y) and metrics["comparison_rows"] == 300
    budget = f"learned, batch (trained only to be compared) trained on the first 300 of {len(train_y):,} training rows"
    assert budget in result.stdout and html.escape(budget) in (out / "report.html").read_text()
    assert "learned, batch on the first 300 training rows per epoch (--comparison-rows)" in result.stderr
    # the model learns: the full-dataset variant beats predicting the mean
    assert metrics["variants"]["tft"]["batch_4096"]["mae"] < baseline["batch_4096"]["mae"]
    assert "baseline" in result.stdout and f"{baseline['batch_1']['mae']:.4g}" in result.stdout
    assert "per-batch variant at batch size 1: mae" in result.stdout
    page = (out / "report.html").read_text()
    assert "baseline" in page and f"{baseline['batch_4096']['mae']:.6g}" in page
    assert f"the first {metrics['eval_sample_rows']:,} evaluation rows" in page
    # constant's network is tft's (train.SAME_NETWORK), and both say so
    assert metrics["variants"]["constant"]["network"] == "tft" and "network" not in metrics["variants"]["tft"]
    assert html.escape("constant (tft's trained network)") in page
    assert "constant takes tft's network" in result.stderr
    assert "rows analyzed and transformed in" in result.stderr and "rows/s)" in result.stderr
    assert " over 2 orders" in result.stderr


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.refs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_report_is_self_contained_and_holds_the_figures(labelled_run):
    out, _ = labelled_run
    page = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.tags[0] == "html" and "table" in parser.tags and "img" in parser.tags
    assert parser.refs and all(ref.startswith("data:image/png;base64,") for ref in parser.refs)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    text = " ".join(parser.text)
    stats = json.loads((out / "statistics.json").read_text())
    for name, s in stats["features"].items():
        assert name in text and f"{s['mean']:.6g}" in text and f"{s['std']:.6g}" in text
    comparison = json.loads((out / "comparison.json").read_text())
    record = next(r for r in comparison["records"] if r["order"] == "shuffled" and r["batch_size"] == 32)
    assert f"{record['mean_abs_error']:.6g}" in text
    assert "curl -s -X POST http://localhost:8501/v1/models/tips:predict" in text
    assert "PASS transform_skew" in text and "serving_examples" in text


class _Headline(html.parser.HTMLParser):
    """The text of report.html's headline box, and the order of the box and the first table."""

    def __init__(self):
        super().__init__()
        self.events, self.items, self._depth = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "div" and ("class", "headline") in attrs:
            self.events.append("headline")
            self._depth = 1
        elif self._depth and tag == "div":
            self._depth += 1
        elif tag == "table":
            self.events.append("table")
        if self._depth and tag == "li":
            self.items.append("")

    def handle_endtag(self, tag):
        if self._depth and tag == "div":
            self._depth -= 1

    def handle_data(self, data):
        if self._depth and self.items:
            self.items[-1] += data


@pytest.mark.slow
def test_report_opens_with_the_headline_box(labelled_run):
    """Before any table: the per-batch variant at batch size 1 against the
    full-dataset variant and the baseline (numbers from model/metrics.json),
    the per-batch error at batch size 1 (averaged here from comparison.json's
    records) and the transform_skew line that `normpipe verify` prints."""
    out, result = labelled_run
    assert result.returncode == 0, result.stderr[-3000:]
    parser = _Headline()
    parser.feed((out / "report.html").read_text())
    assert parser.events[0] == "headline" and parser.events.count("headline") == 1 and "table" in parser.events
    model, normalization, skew = parser.items
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    variants, baseline = metrics["variants"], metrics["baseline"]
    assert f"per-batch normalization (batch) {variants['batch']['batch_1']['mae']:.4g}" in model
    assert f"full-dataset (tft) {variants['tft']['batch_1']['mae']:.4g}" in model
    assert f"baseline ({baseline['what']}) {baseline['batch_1']['mae']:.4g}" in model
    comparison = json.loads((out / "comparison.json").read_text())
    errors = [r["mean_abs_error"] for r in comparison["records"]
              if r["batch_size"] == 1 and r["order"] == "shuffled" and r["method"] == "zscore"]
    assert f"{np.mean(errors):.4g} at batch size 1" in normalization
    verify = run_cli(["verify", "--model-dir", str(out / "serving" / "tips" / "1")])
    (line,) = [l for l in verify.stdout.splitlines() if " transform_skew:" in l]
    assert line.startswith("PASS") and skew == f"Serving skew: {line}"


@pytest.mark.slow
def test_report_renders_in_chromium(labelled_run, tmp_path):
    browser = shutil.which("chromium")
    if not browser:
        pytest.skip("Debian chromium not installed (apt-get install chromium) — rendering check skipped")
    out, _ = labelled_run
    png = tmp_path / "report.png"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1200,2400", f"--screenshot={png}", f"file://{out / 'report.html'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert png.exists() and png.stat().st_size > 50000, result.stderr[-2000:]
    console_errors = [l for l in result.stderr.splitlines() if "CONSOLE" in l and ("ERROR" in l or "Uncaught" in l)]
    assert not console_errors, console_errors


@pytest.mark.slow
def test_run_without_label_exports_the_normalization(data, tmp_path):
    result = run_cli(["run", "--input", str(data), "--output-dir", str(tmp_path), "--features", "fare,ts,lat",
                      "--batch-sizes", "1,32", "--model-name", "norm"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "model").exists() and not (tmp_path / "transformed").exists()  # --materialize is opt-in
    loaded = tf.saved_model.load(str(tmp_path / "serving" / "norm" / "1"))
    outputs = loaded.signatures["serving_default"](
        fare=tf.constant([np.nan], tf.float64), ts=tf.constant([1.45e9], tf.float64), lat=tf.constant([41.9], tf.float64)
    )
    assert set(outputs) == {"fare_z", "ts_z", "lat_z"} and outputs["fare_z"].numpy()[0] == 0.0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["stages"] == ["statistics+transform", "compare", "export", "verify"] and run["verified"]


@pytest.mark.slow
def test_renamed_columns_are_recorded_in_the_export(tmp_path):
    rng = np.random.default_rng(3)
    path = write_csv(tmp_path / "d.csv", {"fare ($)": rng.normal(10, 2, 300), "1st": rng.normal(0, 1, 300)})
    out = tmp_path / "out"
    result = run_cli(["run", "--input", str(path), "--output-dir", str(out), "--batch-sizes", "1,8", "--model-name", "r"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fare ($)" in result.stderr  # the mapping is printed
    recorded = json.loads((out / "serving" / "r" / "1" / "assets.extra" / "normpipe_features.json").read_text())
    assert recorded["renamed"] == {"fare ($)": "fare____", "1st": "f_1st"}
    loaded = tf.saved_model.load(str(out / "serving" / "r" / "1"))
    outputs = loaded.signatures["serving_default"](fare____=tf.constant([10.0], tf.float64), f_1st=tf.constant([0.0], tf.float64))
    assert set(outputs) == {"fare_____z", "f_1st_z"}


@pytest.mark.parametrize("value", ["0", "-5"])
def test_batch_size_must_be_a_positive_integer(data, tmp_path, value):
    result = run_cli(["run", "--input", str(data), "--output-dir", str(tmp_path), "--label", "tips", "--batch-size", value])
    assert_user_error(result, f"--batch-size must be a positive integer. Received: {value}")
    assert not (tmp_path / "statistics.json").exists()


@pytest.mark.slow
def test_demo_label_shows_the_per_batch_collapse(tmp_path):
    """What `make demo` runs: on the taxi sample, fare is learnable and the
    per-batch variant loses most of it at batch size 1."""
    result = run_cli(["run", "--input", TAXI_CSV, "--output-dir", str(tmp_path), "--label", "fare",
                      "--model-name", "taxi_fare", "--batch-sizes", "1,32"])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    variants, baseline = metrics["variants"], metrics["baseline"]["batch_1"]["mae"]
    full = variants["tft"]["batch_1"]["mae"]
    assert full < 0.5 * baseline  # the features predict the fare
    collapsed = variants["batch"]["batch_1"]["mae"]
    assert collapsed > 2 * variants["batch"]["batch_4096"]["mae"] and collapsed > 2 * full
    assert f"per-batch variant at batch size 1: mae {collapsed:.4g}" in result.stdout
    # README's signature table: the text columns are DT_STRING inputs, their ids transform_features outputs
    from normpipe.serving import verify

    server = verify.ServingSession(str(tmp_path / "serving" / "taxi_fare" / "1"))
    inputs = server.signatures["serving_default"].inputs
    texts = sorted(n for n, t in inputs.items() if t.dtype == tf.string.as_datatype_enum)
    assert texts == ["company", "payment_type"] and len(inputs) == 17
    outputs = server.signatures["transform_features"].outputs
    assert {"company_id", "payment_type_id"} <= set(outputs) and len(outputs) == 17


def test_summary_points_to_the_request_of_a_wide_model(tmp_path):
    from normpipe.components import report
    from normpipe.pipeline import run

    def summary_for(width):
        features = [f"c{j}" for j in range(width)]
        curl = report.curl_command("m", dict.fromkeys(features, 0.5))
        comparison = {"features": features, "methods": ["zscore"], "batch_sizes": [1, 32], "records": []}
        result = {"comparison": comparison, "verify_lines": [], "metrics": None,
                  "run": {"verified": True, "curl": curl}}
        return run.summary(result, str(tmp_path), "m"), curl

    text, curl = summary_for(5)
    assert f"try:     {curl}" in text.splitlines()
    text, curl = summary_for(5000)
    line = next(l for l in text.splitlines() if l.startswith("try:"))
    assert len(curl) > run.MAX_TERMINAL_CURL and len(line) < 300
    assert "all 5,000 features" in line and str(tmp_path / "run.json") in line


def test_comparison_rows_flag_default_is_the_training_budget():
    from normpipe.components import train
    from normpipe.pipeline import cli, flags

    assert flags.COMPARISON_ROWS == train.COMPARISON_ROWS == train.TrainOptions().comparison_rows
    args = cli.build_parser().parse_args(["run", "--input", "x", "--output-dir", "o"])
    assert args.comparison_rows == train.COMPARISON_ROWS and args.serving_inputs == "auto"


def test_negative_comparison_rows_are_refused(data, tmp_path):
    result = run_cli(["run", "--input", str(data), "--output-dir", str(tmp_path), "--label", "tips",
                      "--comparison-rows", "-1"])
    assert_user_error(result, "--comparison-rows must be 0 (every row) or a positive integer. Received: -1")
