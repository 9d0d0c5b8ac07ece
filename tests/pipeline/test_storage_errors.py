"""Which failures are storage faults (one line, exit 1): errno values, the
text TensorFlow and Beam wrap them in, and causes several exceptions deep;
and the one line `normpipe` prints for each, from `main` itself."""

import errno
import os

import numpy as np
import pytest

from normpipe.components import spool
from normpipe.pipeline import cli, outputs


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO])
def test_storage_errnos_are_named_with_their_file(code):
    exc = OSError(code, os.strerror(code), "/out/x.json")
    assert outputs.storage_error(exc) == f"/out/x.json: {os.strerror(code)}"
    wrapped = RuntimeError("stage failed")
    wrapped.__cause__ = exc
    assert outputs.storage_error(wrapped) == f"/out/x.json: {os.strerror(code)}"


def test_storage_text_inside_another_error():
    # what TensorFlow's ResourceExhaustedError or a Beam worker's error carries
    assert outputs.storage_error(RuntimeError("... : No space left on device [while running 'Write']")) == \
        "No space left on device"


@pytest.mark.parametrize("exc", [OSError(errno.ENOENT, "No such file or directory", "x"), ValueError("bad"),
                                 PermissionError(errno.EACCES, "Permission denied", "x")])
def test_other_errors_are_not_storage_faults(exc):
    assert outputs.storage_error(exc) is None


def test_a_full_disk_in_main_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "statistics.json"))

    monkeypatch.setattr(cli, "_run_staged", full)
    code = cli.main(["stats", "--input", str(tmp_path / "d.csv"), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == (f"normpipe: error: cannot write the outputs in {tmp_path / 'out'}: "
                           f"{tmp_path / 'out' / 'statistics.json'}: No space left on device")


def test_spool_write_failure_names_the_file(tmp_path, monkeypatch):
    """numpy's own writer reports a full disk as "N requested and M written";
    the spool's writes go through Python's, which raise with errno and file."""
    calls = []

    class Full:
        def __init__(self, *args):
            pass

        def write(self, data):
            calls.append(len(data))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

    monkeypatch.setattr(spool, "open", Full, raising=False)
    path = str(tmp_path / "train-000000.raw.npy")
    with pytest.raises(OSError) as raised:
        spool.save_npy(path, np.zeros((1000, 4)))
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, path) and calls
    assert outputs.storage_error(raised.value) == f"{path}: No space left on device"


def test_spool_writes_what_numpy_reads(tmp_path):
    values = np.random.default_rng(0).normal(size=(500, 3))
    spool.save_npy(str(tmp_path / "a.npy"), values)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), values)
