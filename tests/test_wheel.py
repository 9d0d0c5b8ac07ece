"""The built wheel works without the checkout.

`python -m build` makes the sdist and, from it, the wheel; the wheel is
installed alone (`--no-deps`) into a fresh virtual environment in a
temporary directory, and the installed normpipe runs there with its working
directory outside the checkout: `normpipe --version`, `import normpipe,
normpipe.tfx`, `normpipe demo` and `normpipe verify` on the demo's export.
An editable install would hide package data left out of the wheel and
imports that only resolve from the source tree; this does not.

normpipe's dependencies (TensorFlow, Beam, ... about 3 GB) are not installed
again: a .pth file in the fresh environment appends this environment's
site-packages to its sys.path, after its own. Python does not run the .pth
files of a directory named in a .pth file, so this environment's editable
normpipe stays invisible there and every normpipe file comes from the
wheel; the test checks that the wheel's declared requirements are met by
the versions it runs against.
"""

import email.parser
import glob
import json
import os
import site
import subprocess
import sys
import tarfile
import zipfile

import pytest
from packaging.specifiers import SpecifierSet

from normpipe.version import __version__
from tests.conftest import ROOT

# What the installed demo needs that is not a module.
PACKAGE_DATA = ("normpipe/data/chicago_taxi_15k.csv", "normpipe/data/README.md")

CHECK_REQUIREMENTS = """
from importlib import metadata
from packaging.requirements import Requirement
for line in metadata.requires("normpipe"):
    req = Requirement(line)
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        version = metadata.version(req.name)
        assert req.specifier.contains(version, prereleases=True), (line, version)
print("requirements met")
"""


def _run(cmd, cwd, env=None, timeout=900):
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _build(dist):
    """sdist and wheel into dist (no build isolation: this environment's setuptools and no download)."""
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT], cwd=ROOT)
    (sdist,), (wheel,) = glob.glob(f"{dist}/normpipe-*.tar.gz"), glob.glob(f"{dist}/normpipe-*.whl")
    return sdist, wheel


def _check_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"normpipe-{__version__}.dist-info"
        meta = email.parser.Parser().parsestr(zf.read(f"{info}/METADATA").decode("utf-8"))
    assert set(PACKAGE_DATA) <= names and f"{info}/licenses/LICENSE" in names
    assert {n.split("/", 1)[0] for n in names} == {"normpipe", info}  # no tests/, benchmarks/, data/
    assert meta["License-Expression"] == "Apache-2.0" and meta["Version"] == __version__
    assert SpecifierSet(meta["Requires-Python"]) == SpecifierSet(">=3.10,<3.13")
    assert set(meta.get_all("Provides-Extra")) == {"test", "benchmarks", "tfx"}


def _fresh_venv(path, wheel):
    """A virtual environment with only the wheel installed, seeing this environment's dependencies."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
         cwd=path.parent)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=path.parent)
    here = [p for p in site.getsitepackages() if os.path.isdir(p)]
    (path.joinpath(purelib.stdout.strip(), "normpipe_test_dependencies.pth")).write_text("\n".join(here) + "\n")
    return python, purelib.stdout.strip()


@pytest.mark.slow
def test_the_built_wheel_runs_the_demo_outside_the_checkout(tmp_path):
    sdist, wheel = _build(tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    assert {"LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py", "normpipe/version.py", *PACKAGE_DATA} <= members
    _check_wheel_contents(wheel)

    python, purelib = _fresh_venv(tmp_path / "venv", wheel)
    installed = os.path.join(purelib, "normpipe")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    normpipe = python.parent / "normpipe"

    version = _run([normpipe, "--version"], cwd=work, env=env).stdout.splitlines()
    assert version[0] == f"normpipe {__version__} ({installed})"
    imported = _run([python, "-c", "import normpipe, normpipe.tfx; print(normpipe.__file__); "
                     "print(normpipe.tfx.__file__); print(normpipe.__version__)"], cwd=work, env=env)
    assert imported.stdout.split() == [f"{installed}/__init__.py", f"{installed}/tfx/__init__.py", __version__]
    assert _run([python, "-c", CHECK_REQUIREMENTS], cwd=work, env=env).stdout.strip() == "requirements met"

    demo = _run([normpipe, "demo", "--output-dir", "demo"], cwd=work, env=env)
    assert "verify: all checks passed" in demo.stdout
    out = work / "demo"
    assert (out / "report.html").stat().st_size > 0
    run = json.loads((out / "run.json").read_text())
    assert run["verified"] is True and run["versions"]["normpipe"] == __version__
    assert run["command_line"][1:3] == ["run", "--input"]
    assert run["command_line"][3] == os.path.join(installed, "data", "chicago_taxi_15k.csv")
    # The failure the demo exists to show: a one-row request to the per-batch variant.
    variants = json.loads((out / "model" / "metrics.json").read_text())["variants"]
    assert variants["batch"]["batch_1"]["mae"] > 2 * variants["tft"]["batch_1"]["mae"]

    verify = _run([normpipe, "verify", "--model-dir", out / "serving" / "taxi_fare"], cwd=work, env=env)
    checks = [line.split(" ", 1)[0] for line in verify.stdout.splitlines() if line.split(" ", 1)[0] in ("PASS", "FAIL")]
    assert checks and set(checks) == {"PASS"} and "PASS transform_skew" in verify.stdout
