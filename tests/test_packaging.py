"""One import name: normpipe, and nothing generic at the top level."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import write_csv


def _python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_only_normpipe_is_importable_from_outside_the_checkout(tmp_path):
    for name in ("pipeline", "components"):
        result = _python(f"import {name}", tmp_path)
        assert result.returncode == 1 and f"No module named '{name}'" in result.stderr
    result = _python("import normpipe, normpipe.tfx; print(sorted(normpipe.__all__)[:3])", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def _shadowing_packages(directory):
    """A user's own `pipeline` and `components` packages, which fail loudly if imported."""
    for name in ("pipeline", "components"):
        os.makedirs(directory / name)
        (directory / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")


@pytest.mark.slow
def test_run_from_a_directory_with_its_own_pipeline_and_components(tmp_path):
    _shadowing_packages(tmp_path)
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 3, 600), rng.uniform(0, 1e4, 600)
    write_csv(tmp_path / "data.csv", {"a": a, "b": b, "y": 0.5 * a + b / 1e4 + rng.normal(0, 0.1, 600)})
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "normpipe"), "run", "--input", "data.csv", "--output-dir",
         "out", "--label", "y", "--epochs", "1", "--batch-sizes", "1,32"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "verify: PASS transform_skew" in result.stderr
    assert (tmp_path / "out" / "report.html").exists()
