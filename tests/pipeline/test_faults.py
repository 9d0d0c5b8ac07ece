"""Faults: a run killed with SIGKILL leaves no partial output under its final name."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.conftest import run_cli, write_csv

# Runs an export whose SavedModel writer pauses after writing, so that the
# test can kill the process while the version is complete but not yet published.
_SLOW_EXPORT = textwrap.dedent("""
    import sys, time
    from normpipe.components import export
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
