"""--overwrite replaces only what normpipe wrote: a user's file beside the
outputs survives, one inside a directory output makes the command refuse
(one line naming the file, nothing replaced), and a run without
--overwrite refuses as before."""

import os

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli, write_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 400)
    return str(write_csv(tmp_path_factory.mktemp("data") / "d.csv",
                         {"x": x, "z": rng.uniform(0, 5, 400), "y": 2 * x + rng.normal(0, 0.1, 400)}))


def ok(args):
    result = run_cli(args, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def user_file(path, text="my notes\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, folder)] = f.read()
    return found


def test_stats_keeps_a_file_beside_its_output(tmp_path, csv):
    out = str(tmp_path / "out")
    ok(["stats", "--input", csv, "--output-dir", out])
    beside = user_file(os.path.join(out, "notes.txt"))
    assert_user_error(run_cli(["stats", "--input", csv, "--output-dir", out]), "pass --overwrite")
    ok(["stats", "--input", csv, "--output-dir", out, "--overwrite"])
    assert open(beside).read() == "my notes\n"


@pytest.mark.parametrize("inside", ["transform/notes.txt", "transformed/sub/mine.csv"])
def test_transform_refuses_to_replace_a_directory_holding_a_user_file(tmp_path, csv, inside):
    out = str(tmp_path / "out")
    ok(["transform", "--input", csv, "--output-dir", out, "--label", "y"])
    beside = user_file(os.path.join(out, "beside.txt"))
    mine = user_file(os.path.join(out, inside))
    before = snapshot(out)
    result = run_cli(["transform", "--input", csv, "--output-dir", out, "--label", "y", "--overwrite"])
    assert_user_error(result, f"holds {mine}, which normpipe did not write")
    assert snapshot(out) == before  # nothing replaced, nothing removed
    assert_user_error(run_cli(["transform", "--input", csv, "--output-dir", out, "--label", "y"]),
                      "pass --overwrite")
    os.remove(mine)
    ok(["transform", "--input", csv, "--output-dir", out, "--label", "y", "--overwrite"])
    assert open(beside).read() == "my notes\n"
    listed = open(os.path.join(out, "transform", ".normpipe-files")).read().splitlines()
    assert "transform_fn/saved_model.pb" in listed


def test_run_refuses_for_a_user_file_in_model_and_export_keeps_serving_files(tmp_path, csv):
    out = str(tmp_path / "out")
    ok(["run", "--input", csv, "--output-dir", out, "--label", "y", "--epochs", "1", "--no-all-variants"])
    mine = user_file(os.path.join(out, "model", "README.md"))
    served = user_file(os.path.join(out, "serving", "normpipe", "NOTES.txt"))
    result = run_cli(["run", "--input", csv, "--output-dir", out, "--label", "y", "--epochs", "1",
                      "--no-all-variants", "--overwrite"])
    assert_user_error(result, f"holds {mine}, which normpipe did not write")
    os.remove(mine)
    # `run` without a label would remove model/: refused while it holds a user file
    user_file(mine)
    assert_user_error(run_cli(["run", "--input", csv, "--output-dir", out, "--overwrite"]),
                      f"holds {mine}, which normpipe did not write")
    os.remove(mine)
    ok(["export", "--output-dir", out])
    assert open(served).read() == "my notes\n"
    versions = sorted(n for n in os.listdir(os.path.join(out, "serving", "normpipe")) if n.isdigit())
    assert len(versions) == 2  # a new version beside the first; none replaced
