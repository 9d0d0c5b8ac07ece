"""normpipe's build: the metadata is in pyproject.toml; the version comes
from normpipe/version.py, read as text so that building does not import
normpipe (nor TensorFlow). A checkout also passes this file to Beam's
--setup_file for remote workers."""

import ast
import pathlib

from setuptools import setup


def read_version() -> str:
    source = pathlib.Path(__file__).resolve().parent.joinpath("normpipe", "version.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise RuntimeError("normpipe/version.py does not assign __version__")


setup(version=read_version())
