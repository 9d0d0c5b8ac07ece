"""Storage faults: a full disk (a small tmpfs) or a read-only mount under
--output-dir is one line and exit 1 for every command, at whichever stage
it strikes, with nothing left that looks complete and no scratch; a full
TMPDIR does not matter (normpipe's scratch lives beside its outputs).

Each case runs in a private mount namespace (`unshare -m`, as root: CI
names this file in NORMPIPE_NO_SKIP), where a script mounts the tmpfs, runs
the command and reports what it left, as JSON, before the namespace and its
mount go away.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

EXE = os.path.join(os.path.dirname(sys.executable), "normpipe")
ROWS = 60_000

# Inside the namespace: runs argv[2:] (with "{M}" replaced by the mount
# point) and prints {code, stderr, files, bad_json} for the tree under it.
_INSPECT = r"""
import json, os, subprocess, sys
mount = sys.argv[1]
args = [a.replace("{M}", mount) for a in sys.argv[2:]]
result = subprocess.run(args, capture_output=True, text=True)
files, bad_json = [], []
for root, dirs, names in os.walk(mount):
    for name in dirs + names:
        full = os.path.join(root, name)
        files.append(os.path.relpath(full, mount) + ("/" if name in dirs else ""))
        if name.endswith(".json") and name in names:
            try:
                json.load(open(full))
            except ValueError:
                bad_json.append(os.path.relpath(full, mount))
print(json.dumps({"code": result.returncode, "stderr": result.stderr, "files": sorted(files),
                  "bad_json": bad_json}))
"""


def in_namespace(setup: str, mount, *command) -> dict:
    """Runs `setup` (shell, $1 = the mount point) then `command` in a private
    mount namespace; returns what _INSPECT reports."""
    mount.mkdir(exist_ok=True)
    inspect = mount.parent / "inspect.py"
    inspect.write_text(_INSPECT)
    script = f'{setup} || exit 99; shift; exec {sys.executable} {inspect} "$@"'
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(mount), str(mount), *command],
                                capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        pytest.skip("no unshare")
    if result.returncode == 99 or "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
        pytest.skip(f"cannot mount here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def tmpfs(size: str) -> str:
    return f'mount -t tmpfs -o size={size} tmpfs "$1"'


def assert_one_storage_line(report, cause="No space left on device"):
    stderr = report["stderr"]
    assert report["code"] == 1, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("normpipe: error:")]
    assert len(errors) == 1 and cause in errors[0] and "cannot write the outputs in" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr and "requested and" not in stderr


def assert_nothing_looks_complete(report):
    files = report["files"]
    assert report["bad_json"] == [], report["bad_json"]  # no truncated JSON under any name
    scratch = [f for f in files if os.path.basename(f.rstrip("/")).startswith(".tmp-") or f.endswith((".tmp", ".tmp/"))]
    assert scratch == [], scratch
    versions = [f for f in files if f.startswith("out/serving/") and f.rstrip("/").split("/")[-1].isdigit()]
    assert versions == [], versions
    assert not {"out/run.json", "out/report.html"} & set(files), files
    # a directory left behind is marked: the next command replaces it without --overwrite
    assert not [f for f in files if f != "out/"] or "out/.normpipe-unfinished" in files, files


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    """60,000 rows of 4 features and a label (~5.9 MB)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (ROWS, 4))
    y = x @ [1.0, 2.0, -1.0, 0.5] + rng.normal(0, 0.1, ROWS)
    path = tmp_path_factory.mktemp("storage") / "d.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="a,b,c,d,y", comments="", fmt="%.17g")
    return str(path)


@pytest.mark.parametrize("command, size, stage", [
    ("stats", "4k", "statistics"),
    ("transform", "64k", "the transform graph"),
    ("run", "256k", "statistics+transform"),
    ("run", "1m", "the training spool"),
])
def test_full_output_disk_is_one_line_at_every_stage(tmp_path, csv, command, size, stage):
    label = ["--label", "y", "--epochs", "1"] if command == "run" else []
    report = in_namespace(tmpfs(size), tmp_path / "m", EXE, command, "--input", csv, "--output-dir", "{M}/out",
                          *label)
    assert_one_storage_line(report)
    assert_nothing_looks_complete(report)
    if stage == "the training spool":
        assert ".tmp-train-" in report["stderr"] and ".npy: No space left on device" in report["stderr"]


def test_full_disk_during_export_leaves_no_version(tmp_path, csv):
    """A transform output copied onto a tmpfs with 64 KB to spare: the
    SavedModel does not fit."""
    out = tmp_path / "out"
    done = subprocess.run([EXE, "transform", "--input", csv, "--output-dir", str(out), "--label", "y"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    used = sum(os.path.getsize(os.path.join(r, n)) for r, _, names in os.walk(out) for n in names)
    pages = sum(1 + os.path.getsize(os.path.join(r, n)) // 4096 for r, _, names in os.walk(out) for n in names)
    size = (pages + 16) * 4096
    assert size > used
    setup = f'{tmpfs(size)} && cp -a {out} "$1/out"'
    report = in_namespace(setup, tmp_path / "m", EXE, "export", "--output-dir", "{M}/out")
    assert_one_storage_line(report)
    files = report["files"]
    assert not [f for f in files if f.startswith("out/serving/") and f.rstrip("/").split("/")[-1].isdigit()], files
    assert not [f for f in files if ".tmp" in f], files
    assert report["bad_json"] == []


def test_read_only_mount_is_one_line_and_changes_nothing(tmp_path, csv):
    out = tmp_path / "out"
    done = subprocess.run([EXE, "stats", "--input", csv, "--output-dir", str(out)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    before = (out / "statistics.json").read_bytes()
    setup = f'mount --bind {out} "$1" && mount -o remount,ro,bind "$1"'
    report = in_namespace(setup, tmp_path / "m", EXE, "stats", "--input", csv, "--output-dir", "{M}",
                          "--overwrite")
    assert_one_storage_line(report, cause="Read-only file system")
    assert (out / "statistics.json").read_bytes() == before
    assert sorted(os.listdir(out)) == sorted(n.rstrip("/") for n in report["files"] if "/" not in n.rstrip("/"))


def test_full_tmpdir_does_not_matter(tmp_path, csv):
    """TMPDIR on a tmpfs with no room left: `run` finishes, and writes nothing there."""
    out = tmp_path / "out"
    setup = f'{tmpfs("64k")} && (dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null; true)'
    report = in_namespace(setup, tmp_path / "m", "env", "TMPDIR={M}", EXE, "run", "--input", csv, "--output-dir",
                          str(out), "--label", "y", "--epochs", "1", "--no-all-variants")
    assert report["code"] == 0, report["stderr"][-3000:]
    assert report["files"] == ["filler"]
    assert (out / "run.json").exists()
    shutil.rmtree(out)
