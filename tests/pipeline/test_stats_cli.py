"""`normpipe stats` as a user runs it: outputs, runners and user errors."""

import collections
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import (
    TAXI_CSV,
    assert_stats_close,
    assert_user_error,
    free_port,
    numpy_stats,
    read_csv_float64,
    run_cli,
    write_csv,
)


def run_stats(input_path, out_dir, *extra):
    result = run_cli(["stats", "--input", str(input_path), "--output-dir", str(out_dir), *extra])
    return result


def load(out_dir):
    with open(os.path.join(out_dir, "statistics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory):
    rng = np.random.default_rng(11)
    n = 3000
    cols = {
        "offset": 1e6 + rng.normal(0, 1e-2, n),
        "ts": np.round(1.4e9 + rng.uniform(0, 1e8, n)),
        "x": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1, n)),
        "const": np.full(n, 2.5),
    }
    return write_csv(tmp_path_factory.mktemp("data") / "mixed.csv", cols), list(cols)


def check(document, path, names):
    reference = read_csv_float64(path, names)
    for name in names:
        assert_stats_close(document["features"][name], numpy_stats(reference[name]))


@pytest.mark.slow
def test_stats_cli_writes_statistics_json_and_summary(tmp_path, mixed_csv):
    path, names = mixed_csv
    result = run_stats(path, tmp_path)
    assert result.returncode == 0, result.stderr
    document = load(tmp_path)
    assert document["num_examples"] == 3000
    check(document, path, names)
    assert "rows analyzed" in result.stderr and "statistics.json" in result.stderr
    assert "const" in result.stdout and "mean" in result.stdout.splitlines()[0]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "scratch files left behind"


@pytest.mark.slow
def test_taxi_cli_with_label_and_strings(tmp_path):
    result = run_stats(TAXI_CSV, tmp_path, "--label", "tips")
    assert result.returncode == 0, result.stderr
    document = load(tmp_path)
    assert document["label"] == "tips"
    assert document["string_columns"] == []  # the text columns are categorical, counted against Python's csv
    with open(TAXI_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for name in ("payment_type", "company"):
        counts = collections.Counter(r[name] for r in rows)
        missing = counts.pop("", 0)
        summary = document["categorical"][name]
        assert (summary["count"], summary["missing"], summary["distinct"]) == (len(rows) - missing, missing, len(counts))
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0].encode()))[:10]
        assert [tuple(t) for t in summary["top"]] == top, name
    assert "categorical" in result.stdout and "payment_type" in result.stdout
    check(document, TAXI_CSV, list(document["features"]))


def _job_server():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("Beam job server did not start")


@pytest.mark.slow
def test_runner_modes_give_identical_statistics(tmp_path, mixed_csv):
    """In-memory, multi-process (2 workers) and the portable runner agree."""
    path, names = mixed_csv
    server, port = _job_server()
    try:
        modes = {
            "in_memory": ["--runner=DirectRunner"],
            "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
            "portable": ["--runner=PortableRunner", f"--job_endpoint=localhost:{port}", "--environment_type=LOOPBACK"],
        }
        documents = {}
        for mode, flags in modes.items():
            result = run_stats(path, tmp_path / mode, *flags)
            assert result.returncode == 0, f"{mode}: {result.stderr[-2000:]}"
            documents[mode] = load(tmp_path / mode)
    finally:
        server.kill()
        server.wait()
    base = documents["in_memory"]
    check(base, path, names)
    for mode, document in documents.items():
        assert document["num_examples"] == base["num_examples"], mode
        for name in names:
            for key, value in base["features"][name].items():
                assert document["features"][name][key] == pytest.approx(value, rel=1e-12, abs=1e-300), (mode, name, key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_input, flags, expected",
    [
        (lambda d: d / "nope.csv", [], "no such file or directory"),
        (lambda d: (d / "h.csv").write_text("a,b\n") and d / "h.csv", [], "no data rows"),
        (lambda d: TAXI_CSV, ["--features", "fare,nope"], "--features: no column 'nope'"),
        (lambda d: (d / "b.csv").write_text("a,b\n1,2\n3,x1\n") and d / "b.csv", ["--features", "a,b"],
         "line 3 column 'b': non-numeric value 'x1'"),
        (lambda d: TAXI_CSV, ["--features", "fare,company"], "column 'company': non-numeric value"),
        (lambda d: (d / "i.csv").write_text("a,b\n1,2\n3,-inf\n") and d / "i.csv", ["--features", "a,b"],
         "line 3 column 'b': infinite value -inf"),
        (lambda d: (d / "r.csv").write_text("a,b\n1,2\n3,4,5\n") and d / "r.csv", [], "line 3: expected 2 fields, got 3"),
        (lambda d: (d / "c.csv").write_text("a b,a_b\n1,2\n") and d / "c.csv", [], "columns 'a b' and 'a_b' both become 'a_b'"),
        (lambda d: (d / "g.tfrecord").write_bytes(b"\x1f\x8b" + bytes(40)) and d / "g.tfrecord", [],
         "g.tfrecord: corrupt TFRecord data"),
        (lambda d: TAXI_CSV, ["--label", "nope"], "--label: no column 'nope'"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, make_input, flags, expected):
    result = run_stats(make_input(tmp_path), tmp_path / "out", *flags)
    assert_user_error(result, expected)
    assert not os.path.exists(tmp_path / "out" / "statistics.json")


@pytest.mark.slow
def test_user_error_raised_in_a_worker_process_is_found(tmp_path):
    """Beam re-raises a worker's failure as its own error; the CLI reports it
    on one line, and the worker process does not print its own traceback."""
    result = run_stats(TAXI_CSV, tmp_path / "out", "--features", "fare,company",
                       "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert_user_error(result, "line 2 column 'company': non-numeric value")


@pytest.mark.slow
def test_bad_values_missing_and_renamed_columns_end_to_end(tmp_path):
    """`transform --bad-values=missing`: counts, renames and stats in every output."""
    rng = np.random.default_rng(5)
    fare = rng.lognormal(2, 0.5, 400)
    cells = [repr(float(v)) for v in fare]
    bad = {7: "abc", 99: '"1,5"', 250: "$3", 390: "inf"}
    for i, cell in bad.items():
        cells[i] = cell
    label = ["1" if i != 30 else "oops" for i in range(400)]
    path = tmp_path / "d.csv"
    path.write_text("fare ($),1st,tip\n" + "".join(f"{c},{i},{t}\n" for i, (c, t) in enumerate(zip(cells, label))))
    out = tmp_path / "out"
    result = run_cli(["transform", "--input", str(path), "--output-dir", str(out), "--label", "tip",
                      "--bad-values=missing", "--no-materialize"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "columns renamed to valid TensorFlow names: 'fare ($)' -> fare____, '1st' -> f_1st" in result.stderr
    assert "bad values read as missing: fare ($) 4, tip 1" in result.stderr
    document = load(out)
    assert document["renamed"] == {"fare ($)": "fare____", "1st": "f_1st"}
    assert document["bad_values_policy"] == "missing" and document["label_bad_values"] == 1
    expected = fare.copy()
    expected[list(bad)] = np.nan
    fare_stats = document["features"]["fare____"]
    assert fare_stats["bad_values"] == 4 and fare_stats["missing"] == 4
    assert_stats_close({k: v for k, v in fare_stats.items() if k != "bad_values"}, numpy_stats(expected))
    assert document["features"]["f_1st"]["bad_values"] == 0
    metadata = json.loads((out / "transform" / "normpipe_transform.json").read_text())
    assert metadata["renamed"] == {"fare ($)": "fare____", "1st": "f_1st"}
    assert metadata["features"] == ["fare____", "f_1st"]


@pytest.mark.slow
def test_input_named_like_a_pattern_is_read_as_that_file(tmp_path):
    """`--input 'dir/data[1].csv'` reads that file, not data1.csv (which the
    same text matches as a pattern)."""
    folder = tmp_path / "dir"
    folder.mkdir()
    literal = write_csv(folder / "data[1].csv", {"a": np.arange(7.0)})
    write_csv(folder / "data1.csv", {"a": np.arange(100.0, 150.0)})
    result = run_stats(literal, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    document = load(tmp_path / "out")
    assert document["input"]["files"] == [str(literal)]
    assert_stats_close(document["features"]["a"], numpy_stats(np.arange(7.0)))
