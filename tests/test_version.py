"""One version, written in normpipe/version.py and read everywhere else."""

import re
import subprocess
import sys
from importlib import metadata

import normpipe
from normpipe.version import __version__
from tests.conftest import ROOT

CHANGELOG_SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def _read(name):
    with open(f"{ROOT}/{name}", encoding="utf-8") as f:
        return f.read()


def test_setup_py_reads_the_version_file():
    result = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == __version__ == normpipe.__version__


def test_the_version_is_written_once():
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    for name in ("setup.py", "pyproject.toml", "normpipe/__init__.py", "normpipe/pipeline/staging.py"):
        assert __version__ not in _read(name), name


def test_installed_metadata_has_the_version():
    # `make install` reinstalls when normpipe/version.py changes.
    assert metadata.version("normpipe") == __version__


def test_changelog_has_the_version_in_keep_a_changelog_shape():
    text = _read("CHANGELOG.md")
    releases = re.findall(r"^## \[(\d+)\.(\d+)\.(\d+)\] - (?:\d{4}-\d{2}-\d{2}|Unreleased)$", text, re.M)
    assert len(releases) == len(re.findall(r"^## ", text, re.M)), "every version heading is `## [x.y.z] - date`"
    versions = [tuple(map(int, r)) for r in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert versions[0] == tuple(map(int, __version__.split(".")))  # noqa: RUF048  (the version is X.Y.Z)
    assert {(0, 1, 0), (0, 2, 0)} <= set(versions)
    assert set(re.findall(r"^### (.+)$", text, re.M)) <= CHANGELOG_SECTIONS
