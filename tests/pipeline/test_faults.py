"""Faults: a run killed with SIGKILL leaves no partial output under its final name."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.conftest import TAXI_CSV, assert_user_error, run_cli, write_csv

# Runs an export whose SavedModel writer pauses after writing, so that the
# test can kill the process while the version is complete but not yet published.
_SLOW_EXPORT = textwrap.dedent("""
    import sys, time
    from normpipe.serving import export
    write = export.ServingModule.write
    def slow_write(self, path):
        write(self, path)
        print("written", flush=True)
        time.sleep(60)
    export.ServingModule.write = slow_write
    export.export_normalization_model(sys.argv[1], sys.argv[2], "m")
""")


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(5)
    path = write_csv(tmp / "d.csv", {"a": rng.normal(size=500), "b": rng.lognormal(size=500)})
    out = tmp / "out"
    assert run_cli(["transform", "--input", str(path), "--output-dir", str(out)]).returncode == 0
    return path, out


def _kill_when(process, ready, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_killed_export_leaves_no_version_and_rerun_succeeds(transformed, tmp_path):
    _, out = transformed
    serving = tmp_path / "serving"
    process = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, str(out / "transform"), str(serving)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "written"
    process.send_signal(signal.SIGKILL)
    process.wait()
    model_dir = serving / "m"
    assert [n for n in os.listdir(model_dir) if not n.startswith(".")] == []  # TF Serving sees no version
    result = run_cli(["export", "--output-dir", str(out), "--model-name", "m"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "serving" / "m" / "1" / "saved_model.pb").exists()


@pytest.mark.slow
def test_killed_transform_keeps_previous_outputs_whole(transformed, tmp_path):
    path, _ = transformed
    out = tmp_path / "out"
    assert run_cli(["transform", "--input", str(path), "--output-dir", str(out)]).returncode == 0
    before = (out / "statistics.json").read_text()
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    process = subprocess.Popen([exe, "transform", "--input", str(path), "--output-dir", str(out), "--overwrite"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill once the new run has started writing its scratch directory
    assert _kill_when(process, lambda: any(n.startswith(".tmp-") for n in os.listdir(out)))
    assert (out / "statistics.json").read_text() == before
    assert (out / "transform" / "transform_fn" / "saved_model.pb").exists()
    assert (out / "transform" / "normpipe_transform.json").exists()
    result = run_cli(["transform", "--input", str(path), "--output-dir", str(out), "--overwrite"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "statistics.json").read_text() == before  # same data, same statistics


@pytest.mark.slow
def test_racing_exports_end_with_two_distinct_versions(transformed):
    _, out = transformed
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    command = [exe, "export", "--output-dir", str(out), "--model-name", "race"]
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    codes = [p.wait(timeout=600) for p in processes]
    assert codes == [0, 0, 0], [p.stderr.read()[-1000:] for p in processes]
    model_dir = out / "serving" / "race"
    versions = sorted(n for n in os.listdir(model_dir) if not n.startswith("."))
    assert versions == ["1", "2", "3"]
    import tensorflow as tf

    for version in versions:
        loaded = tf.saved_model.load(str(model_dir / version))
        assert {"serving_default", "serving_examples", "transform_features"} <= set(loaded.signatures)


@pytest.mark.slow
def test_rerun_refuses_without_overwrite_and_never_mixes(transformed, tmp_path):
    path, _ = transformed
    out = tmp_path / "out"
    assert run_cli(["transform", "--input", str(path), "--output-dir", str(out)]).returncode == 0
    assert (out / "transformed").exists()
    again = run_cli(["transform", "--input", str(path), "--output-dir", str(out), "--no-materialize"])
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert (out / "transformed").exists()  # untouched by the refused run
    replaced = run_cli(["transform", "--input", str(path), "--output-dir", str(out), "--no-materialize", "--overwrite"])
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    # the earlier run's transformed data would not match this run's outputs: gone
    assert not (out / "transformed").exists() and (out / "transform").exists()


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_rerun_after_a_killed_run_needs_no_overwrite(transformed, tmp_path):
    path, _ = transformed
    out = tmp_path / "out"
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    command = ["run", "--input", str(path), "--output-dir", str(out)]
    process = subprocess.Popen([exe, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # killed after the transform stage wrote its outputs, before run.json
    assert _kill_when(process, lambda: (out / "comparison.json").exists() or (out / "transform").exists())
    assert not (out / "run.json").exists()
    result = run_cli(command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "run.json").exists()
    assert sorted(n for n in os.listdir(out) if n.startswith(".")) == []  # no lock, marker or scratch left
    # a finished run still needs --overwrite
    again = run_cli(command)
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_stale_lock_and_scratch_of_a_dead_process_do_not_block(transformed, tmp_path):
    path, _ = transformed
    out = tmp_path / "out"
    out.mkdir()
    (out / ".normpipe.lock").write_text(f'{{"pid": {_dead_pid()}, "host": "{os.uname().nodename}", "command": "stats"}}')
    (out / ".tmp-abc").mkdir()
    (out / ".tmp-abc" / "part").write_text("x")
    (out / ".statistics.json.1234.tmp").write_text("{")
    (out / "statistics.json").write_text("{}")  # what the dead run had written
    result = run_cli(["stats", "--input", str(path), "--output-dir", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "statistics.json").read_text())["num_examples"] == 500
    assert sorted(os.listdir(out)) == ["statistics.json"]


@pytest.mark.slow
def test_refused_rerun_leaves_the_refusal_in_place(transformed, tmp_path):
    path, _ = transformed
    out = tmp_path / "out"
    command = ["stats", "--input", str(path), "--output-dir", str(out)]
    assert run_cli(command).returncode == 0
    for _ in range(2):  # a refusal does not mark the finished outputs unfinished
        again = run_cli(command)
        assert again.returncode == 2 and "--overwrite" in again.stderr
    assert sorted(os.listdir(out)) == ["statistics.json"]


@pytest.mark.slow
def test_second_command_into_a_busy_output_dir_is_refused(transformed, tmp_path):
    path, _ = transformed
    out = tmp_path / "out"
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    first = subprocess.Popen([exe, "run", "--input", str(path), "--output-dir", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / ".normpipe.lock").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = run_cli(["stats", "--input", str(path), "--output-dir", str(out), "--overwrite"])
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    assert_user_error(second, f"{out} is in use by another normpipe command (run, pid {first.pid}")
    assert (out / "run.json").exists() and not (out / ".normpipe.lock").exists()


# Scratch that a command makes and removes: under the output directory
# (pipeline temp dirs, the training spool, model and export staging, atomic
# writes' temporaries) and in the system's temp directory.
def _scratch(out, tmpdir):
    mine = [n for n in os.listdir(out) if n.startswith((".tmp-", ".model-", ".export-", ".normpipe.lock"))
            or n.endswith((".tmp", ".old"))] if out.exists() else []
    return mine + [f"$TMPDIR/{n}" for n in os.listdir(tmpdir)]


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, line", [(signal.SIGTERM, 143, "normpipe: terminated"),
                                                  (signal.SIGINT, 130, "normpipe: interrupted")],
                         ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("stage, scratch", [("transform", ".tmp-"), ("train", ".tmp-train-")])
def test_interrupted_run_removes_its_scratch(tmp_path, signum, status, line, stage, scratch):
    """`normpipe run` sent SIGTERM or SIGINT while its scratch exists (the
    Beam pipeline's temp dir, or the training spool): exit 128 + signal, one
    line, no traceback, no scratch left, no output that looks complete."""
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    process = subprocess.Popen([exe, "run", "--input", TAXI_CSV, "--output-dir", str(out), "--label", "fare"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    has_scratch = lambda: out.exists() and any(  # noqa: E731
        n.startswith(scratch) and (scratch != ".tmp-" or not n.startswith(".tmp-train-")) for n in os.listdir(out))
    assert _signal_when(process, has_scratch, signum), process.communicate()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr[-3000:]
    assert stderr.splitlines()[-1] == line and "Traceback" not in stderr, stderr[-3000:]
    assert stdout == ""
    assert _scratch(out, tmpdir) == []
    assert not (out / "run.json").exists() and not (out / "report.html").exists()
    left = sorted(os.listdir(out)) if out.exists() else []  # a directory the run created and left empty is gone
    if left:  # what it published is whole, and marked unfinished for the next run to replace
        assert ".normpipe-unfinished" in left, left
        assert set(left) <= {".normpipe-unfinished", "statistics.json", "transform", "comparison.json",
                             "comparison.md", "comparison.png"}, left
    if (out / "transform").exists():
        assert (out / "transform" / "transform_fn" / "saved_model.pb").exists()
        assert (out / "transform" / "normpipe_transform.json").exists()


def _signal_when(process, ready, signum, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if ready():
            process.send_signal(signum)
            return True
        time.sleep(0.05)
    return False
