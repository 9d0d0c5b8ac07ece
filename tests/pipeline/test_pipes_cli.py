"""A closed stdout or stderr ends the command as Unix tools end: exit status
141 (128 + SIGPIPE), nothing more written, never a traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import numpy_stats, write_csv

EXE = os.path.join(os.path.dirname(sys.executable), "normpipe")
SIGPIPE_STATUS = 128 + 13


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    rng = np.random.default_rng(3)
    columns = {f"x{i}": rng.normal(i, 1 + i, 400) for i in range(6)}
    return write_csv(tmp_path_factory.mktemp("pipes") / "d.csv", columns), columns


def stats_command(path, out):
    return [EXE, "stats", "--input", str(path), "--output-dir", str(out), "--runner=DirectRunner"]


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory):
    """A table of statistics far longer than a pipe holds (64 KiB)."""
    rng = np.random.default_rng(4)
    return write_csv(tmp_path_factory.mktemp("wide") / "w.csv", {f"feature_{i}": rng.normal(size=20) for i in range(1500)})


@pytest.mark.slow
def test_stats_into_head_prints_one_line_and_no_traceback(wide_csv, tmp_path):
    """`normpipe stats ... | head -1` in bash: one line, PIPESTATUS 141 for
    normpipe (as for `yes | head -1`), no traceback on stderr."""
    command = " ".join(stats_command(wide_csv, tmp_path / "out"))
    script = f"{command} 2>{tmp_path}/err | head -1; echo status=${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=600)
    stderr = (tmp_path / "err").read_text()
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == f"status={SIGPIPE_STATUS}", stderr[-2000:]
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr[-2000:]
    assert (tmp_path / "out" / "statistics.json").exists()


@pytest.mark.slow
def test_closed_stdout_keeps_the_outputs_whole(data_csv, tmp_path):
    """The results line comes after the outputs are written: a reader that
    is gone does not undo them, and nothing is left unfinished."""
    path, columns = data_csv
    out = tmp_path / "out"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before normpipe writes a byte
    try:
        process = subprocess.run(stats_command(path, out), stdout=write_end, stderr=subprocess.PIPE, text=True,
                                 timeout=300)
    finally:
        os.close(write_end)
    assert process.returncode == SIGPIPE_STATUS, process.stderr[-2000:]
    assert "Traceback" not in process.stderr and "normpipe: error" not in process.stderr, process.stderr[-2000:]
    with open(out / "statistics.json") as f:
        document = json.load(f)
    assert document["features"]["x3"]["mean"] == pytest.approx(numpy_stats(columns["x3"])["mean"], rel=1e-12)
    assert sorted(os.listdir(out)) == ["statistics.json"]  # no lock, marker or scratch


@pytest.mark.slow
def test_closed_stderr_ends_the_command_and_leaves_no_scratch(data_csv, tmp_path):
    path, _ = data_csv
    out = tmp_path / "out"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run(stats_command(path, out), stdout=subprocess.PIPE, stderr=write_end, text=True,
                                 timeout=300)
    finally:
        os.close(write_end)
    assert process.returncode == SIGPIPE_STATUS, process.stdout[-2000:]
    assert process.stdout == ""  # ended at its first progress line
    leftovers = [n for n in os.listdir(out) if n != ".normpipe-unfinished"] if out.exists() else []
    assert leftovers == []
