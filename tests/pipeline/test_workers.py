"""Forked SDK workers for --direct_running_mode=multi_processing."""

import csv
import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from normpipe.pipeline import workers
from tests.conftest import ROOT, TAXI_CSV, assert_user_error, run_cli

MP = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (MP, 2),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=3"], 3),
        (["--direct_running_mode=multi_processing"], 1),  # Beam's default count
        (["--direct_running_mode=multi_processing", "--direct_num_workers=0"], os.cpu_count() or 1),
        (["--direct_running_mode=multi_threading", "--direct_num_workers=2"], 0),
        (["--direct_num_workers=2"], 0),
        ([], 0),
        (MP + ["--runner=PortableRunner", "--job_endpoint=localhost:1"], 0),
        (MP + ["--runner=DirectRunner"], 2),
    ],
)
def test_requested_workers(flags, expected):
    assert workers.requested_workers(flags) == expected


_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    sys.path.insert(0, {root!r})
    # This machine's name as Beam gives it to EXTERNAL workers; the forks
    # must not depend on it resolving.
    socket.getfqdn = lambda *args: "unresolvable.invalid"
    from normpipe.pipeline import beam_options, workers

    flags = {flags!r}
    pool = workers.start(flags)
    forks = list(pool._pids)
    import apache_beam as beam

    options = beam_options.make_options(flags)
    runner = workers.runner_for(options)
    with beam.Pipeline(runner=runner, options=options) as p:
        _ = (
            p
            | beam.Create(list(range(400)))
            | beam.Reshuffle()
            | beam.Map(lambda x: json.dumps([x, x * x, os.getpid(), os.getppid()]))
            | beam.io.WriteToText({out!r})
        )
    workers.stop()
    try:
        os.waitpid(-1, os.WNOHANG)
        left = True
    except ChildProcessError:
        left = False
    print(json.dumps({{"pid": os.getpid(), "forks": forks, "runner": type(runner).__name__, "children_left": left}}))
    """
)


@pytest.mark.slow
def test_elements_are_processed_in_the_forked_workers(tmp_path):
    """A pipeline on the pool's runner runs in this process's forks, both of
    them, and every element comes out once; no child is left afterwards.
    The machine's name does not resolve here: the forks use localhost."""
    out = str(tmp_path / "out")
    script = _SCRIPT.format(root=ROOT, flags=MP, out=out)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["runner"] == "PoolRunner"
    assert not report["children_left"]
    rows = [json.loads(line) for path in glob.glob(out + "*") for line in open(path)]
    assert sorted((x, sq) for x, sq, _, _ in rows) == [(x, x * x) for x in range(400)]
    assert {ppid for *_, ppid in rows} == {report["pid"]}
    assert {pid for _, _, pid, _ in rows} == set(report["forks"])


@pytest.mark.slow
def test_failed_command_ends_the_unused_forks(tmp_path):
    """An error before any pipeline runs: exit 2 with one line, no worker left behind."""
    result = run_cli(["stats", "--input", str(tmp_path / "missing.csv"), "--output-dir", str(tmp_path / "o"), *MP])
    assert_user_error(result, "no such file or directory")


@pytest.mark.slow
def test_multi_processing_statistics_match_in_memory_bit_for_bit(tmp_path):
    documents = {}
    for mode, flags in (("one", []), ("two", MP)):
        result = run_cli(["stats", "--input", TAXI_CSV, "--output-dir", str(tmp_path / mode), *flags])
        assert result.returncode == 0, result.stderr[-2000:]
        with open(tmp_path / mode / "statistics.json") as f:
            documents[mode] = json.load(f)
    assert documents["two"]["features"] == documents["one"]["features"]
    with open(TAXI_CSV, newline="") as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
    assert documents["two"]["num_examples"] == documents["one"]["num_examples"] == rows
