"""`normpipe verify` on damaged exports: FAIL lines and exit 1, no traceback."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from normpipe.io import ingest
from normpipe.serving import export, serving_layout
from tests.components.test_transform import run_transform
from tests.conftest import run_cli, write_csv


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    rng = np.random.default_rng(6)
    path = write_csv(tmp / "d.csv", {"a": rng.normal(size=100), "b": rng.lognormal(size=100)})
    spec = ingest.inspect_input(str(path))
    transform_dir, _ = run_transform(tmp, spec, method="zscore")
    rows = np.stack([rng.normal(size=20), rng.lognormal(size=20)], axis=1)
    return export.export_normalization_model(transform_dir, str(tmp / "serving"), "m", sample_rows=rows)


def truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def variables_data(directory):
    return next(os.path.join(directory, "variables", n) for n in os.listdir(os.path.join(directory, "variables"))
            if n.startswith("variables.data"))


# A normalization-only export keeps its constants in the graph, so its
# variables data is not read; the truncated-variables case is tested on a
# trained model's export (tests/pipeline/test_train_cli.py).
DAMAGE = {
    "variables_index_deleted": lambda d: os.unlink(os.path.join(d, "variables", "variables.index")),
    "saved_model_pb_truncated": lambda d: truncate(os.path.join(d, "saved_model.pb")),
    "saved_model_pb_empty": lambda d: truncate(os.path.join(d, "saved_model.pb"), 0),
    "verify_sample_corrupt": lambda d: truncate(os.path.join(d, "assets.extra", serving_layout.VERIFY_SAMPLE), 0.5),
    "warmup_cut_at_a_record": lambda d: truncate(os.path.join(d, "assets.extra", serving_layout.WARMUP_FILE), 0.5),
    "warmup_cut_in_a_record": lambda d: truncate(os.path.join(d, "assets.extra", serving_layout.WARMUP_FILE), 0.53),
}


@pytest.mark.slow
def test_undamaged_export_passes(version_dir):
    result = run_cli(["verify", "--model-dir", version_dir])
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_export_fails_with_fail_lines(version_dir, tmp_path, damage):
    copy = str(tmp_path / "1")
    shutil.copytree(version_dir, copy)
    DAMAGE[damage](copy)
    result = run_cli(["verify", "--model-dir", copy])
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert any(line.startswith("FAIL ") for line in result.stdout.splitlines()), result.stdout


def test_verify_imports_tensorflow_alone():
    # TF Serving loads an export without tf.Transform or Beam; so does verify,
    # and it starts sooner for it
    code = ("import sys; import normpipe.serving.verify; "
            "print(sorted(m for m in ('tensorflow_transform', 'apache_beam', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[-2] == "['tensorflow']"
