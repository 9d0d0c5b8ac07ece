"""--output-dir that cannot hold the outputs: a file, under a file, read-only,
or a full disk. One line, exit 2, nothing partial left."""

import contextlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli, write_csv

EXE = os.path.join(os.path.dirname(sys.executable), "normpipe")


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    rng = np.random.default_rng(2)
    return write_csv(tmp_path_factory.mktemp("outdir") / "d.csv", {"a": rng.normal(size=200), "b": rng.normal(size=200)})


@pytest.mark.slow
def test_output_dir_that_is_a_file(tmp_path, csv_path):
    target = tmp_path / "out"
    target.write_text("not a directory")
    result = run_cli(["stats", "--input", str(csv_path), "--output-dir", str(target)])
    assert_user_error(result, f"--output-dir {target}: is a file, not a directory")
    assert target.read_text() == "not a directory"


@pytest.mark.slow
def test_output_dir_under_a_file(tmp_path, csv_path):
    target = tmp_path / "out" / "sub"
    (tmp_path / "out").write_text("x")
    result = run_cli(["transform", "--input", str(csv_path), "--output-dir", str(target)])
    assert_user_error(result, f"{tmp_path / 'out'} is a file, not a directory")


@contextlib.contextmanager
def read_only_directory(path):
    """A directory this process cannot write in, even as root (immutable)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a directory read-only for root here (chattr +i)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.slow
def test_read_only_output_dir(tmp_path, csv_path):
    with read_only_directory(tmp_path / "ro") as ro:
        result = run_cli(["stats", "--input", str(csv_path), "--output-dir", str(ro / "out")])
        assert_user_error(result, f"--output-dir {ro / 'out'}: cannot write in {ro}")
        assert os.listdir(ro) == []


@pytest.mark.slow
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, csv_path):
    # A 64 KB tmpfs in a private mount namespace: tf.Transform's SavedModel
    # does not fit, and TensorFlow raises ResourceExhaustedError inside Beam.
    mount = tmp_path / "small"
    mount.mkdir()
    script = 'mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; "$2" transform --input "$3" --output-dir "$1/out"; ' \
             'code=$?; find "$1" -mindepth 1 >&2; exit $code'
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(mount), EXE, str(csv_path)],
                                capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        pytest.skip("no unshare")
    if result.returncode == 99 or "unshare failed" in result.stderr:
        pytest.skip("cannot mount a small tmpfs here")
    # the storage's fault: exit 1, one line (tests/pipeline/test_storage_faults_cli.py covers every command)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("normpipe: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in result.stderr
    # `find` lists what is left: the output directory itself at most
    left = [l for l in result.stderr.splitlines() if l.startswith(str(mount))]
    assert left in ([], [str(mount / "out")]), left
