"""`normpipe --version`: normpipe's version and its stack's, without importing the stack."""

import os
import platform
import subprocess
import sys

import apache_beam
import keras
import tensorflow as tf
import tensorflow_transform as tft

import normpipe
from tests.conftest import run_cli


def _lines(stdout):
    return dict(line.split(" ", 1) for line in stdout.splitlines())


def test_version_flag_prints_normpipe_and_its_stack():
    result = run_cli(["--version"])
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    lines = _lines(result.stdout)
    package_dir = os.path.dirname(os.path.abspath(normpipe.__file__))
    assert lines["normpipe"] == f"{normpipe.__version__} ({package_dir})"
    assert lines["tensorflow"] == tf.__version__
    assert lines["tensorflow-transform"] == tft.__version__
    assert lines["apache-beam"] == apache_beam.__version__
    assert lines["keras"] == keras.__version__
    assert lines["python"] == platform.python_version()
    assert next(iter(lines)) == "normpipe"


def test_version_flag_imports_neither_tensorflow_nor_beam():
    code = ("import sys\nfrom normpipe.pipeline.cli import main\ntry:\n    main(['--version'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('imported:', [m for m in ('tensorflow', 'tensorflow_transform', 'apache_beam', 'keras') "
            "if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "imported: []"
