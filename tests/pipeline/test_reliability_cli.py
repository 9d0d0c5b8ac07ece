"""`normpipe run` end to end on the edge cases of issue 15: columns with no
value or with values near the float64 limit, one row, identical rows; the
modes of everything it writes; progress on stderr, results on stdout."""

import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import write_csv


def run_with_umask(args, umask=0o022, timeout=600):
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    # subprocess's own umask (no preexec_fn: that would make it fork() rather than vfork())
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, umask=umask)


def strict_json(path):
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")

    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=refuse)


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge")
    rng = np.random.default_rng(11)
    n = 200
    path = write_csv(tmp / "edge.csv", {
        "a": rng.normal(size=n),
        "all_missing": np.full(n, np.nan),
        "huge": np.where(np.arange(n) % 2, 1e308, -1e308),
        "y": rng.normal(size=n),
    })
    out = tmp / "out"
    result = run_with_umask(["run", "--input", str(path), "--output-dir", str(out), "--label", "y", "--epochs", "1"])
    return result, out


@pytest.mark.slow
def test_run_with_all_missing_and_huge_columns_exports_and_verifies(edge_run):
    result, out = edge_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    run = strict_json(out / "run.json")
    assert run["verified"] is True
    records = strict_json(out / "comparison.json")["records"]
    assert {r["feature"] for r in records} == {"a", "all_missing", "huge"}
    stats = strict_json(out / "statistics.json")["features"]
    assert stats["all_missing"]["count"] == 0 and stats["all_missing"]["mean"] is None
    assert stats["huge"]["min"] == -1e308 and stats["huge"]["max"] == 1e308
    assert os.path.isfile(os.path.join(run["export"], "saved_model.pb"))


@pytest.mark.slow
def test_every_output_is_readable_by_others_under_umask_022(edge_run):
    # TF Serving or a teammate running as another user must read the export
    # and models.config: files 0644, directories 0755 under umask 022.
    result, out = edge_run
    assert result.returncode == 0, result.stderr[-3000:]
    wrong = []
    for root, dirs, files in os.walk(out):
        for name in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o755:
                wrong.append((os.path.join(root, name), oct(mode)))
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o644:
                wrong.append((os.path.join(root, name), oct(mode)))
    assert os.path.isfile(out / "serving" / "models.config")
    assert not wrong, wrong


@pytest.mark.slow
def test_keras_progress_goes_to_stderr(edge_run):
    result, _ = edge_run
    assert result.returncode == 0, result.stderr[-3000:]
    # Keras' per-epoch line: "2/2 - 1s - 332ms/step - batch_loss: ... - loss: ..."
    assert re.search(r"/step - .*\bloss: ", result.stderr)
    assert "/step" not in result.stdout and "Epoch" not in result.stdout
    assert result.stdout.startswith("report:")


@pytest.mark.slow
@pytest.mark.parametrize("rows", [[(1.5, 2.5)], [(1.5, 2.5), (1.5, 2.5)]], ids=["single_row", "two_identical_rows"])
def test_run_on_one_row_or_identical_rows_exports(tmp_path, rows):
    path = write_csv(tmp_path / "d.csv", {"a": [r[0] for r in rows], "b": [r[1] for r in rows]})
    out = tmp_path / "out"
    result = run_with_umask(["run", "--input", str(path), "--output-dir", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert strict_json(out / "run.json")["verified"] is True
    # zscore of a constant feature is 0.0 for every row: every per-batch error is 0
    errors = {r["mean_abs_error"] for r in strict_json(out / "comparison.json")["records"]}
    assert errors == {0.0}
    with open(out / "comparison.png", "rb") as f:
        assert f.read(4) == b"\x89PNG"
