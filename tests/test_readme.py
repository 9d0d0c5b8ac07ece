"""README's "Use it from Python" example runs as written."""

import os
import re

import pytest

from tests.conftest import ROOT


def _python_example(section):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


@pytest.mark.slow
def test_use_it_from_python_example_runs(tmp_path, monkeypatch, capsys):
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_example("Use it from Python"), "README.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out
    assert "15002 " in printed and "(256, 3) (256,)" in printed
    assert (tmp_path / "out" / "py" / "serving" / "taxi_norm" / "1" / "saved_model.pb").exists()
    assert "PASS transform_skew" in printed


def test_public_api_names_resolve():
    import normpipe

    for name in normpipe.__all__:
        assert getattr(normpipe, name) is not None, name
