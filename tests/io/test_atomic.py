"""Atomic outputs get the mode the umask gives, not mkstemp's 0600/mkdtemp's 0700."""

import os
import stat
import tempfile

import pytest

from normpipe.io import atomic
from normpipe.serving import servable_files


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_file_has_the_umask_mode(tmp_path, umask):
    path = tmp_path / "f.json"
    atomic.write_json_atomic(str(path), {"a": 1})
    assert mode(path) == 0o666 & ~umask


def test_atomic_directory_has_the_umask_mode(tmp_path, umask):
    path = tmp_path / "d"
    with atomic.atomic_directory(str(path)) as tmp, open(os.path.join(tmp, "x"), "w", encoding="utf-8") as f:
        f.write("x")
    assert mode(path) == 0o777 & ~umask
    assert mode(path / "x") == 0o666 & ~umask


def test_published_export_version_has_the_umask_mode(tmp_path, umask):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    final = servable_files.publish_version(staging, str(model_dir))
    assert os.path.basename(final) == "1"
    assert mode(final) == 0o777 & ~umask


def test_current_umask_reads_without_changing(umask):
    assert atomic.current_umask() == umask
    assert atomic.current_umask() == umask
