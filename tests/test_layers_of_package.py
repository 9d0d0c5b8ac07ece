"""The package's folders are layers: a module imports only its own layer and those below.

core < io < components < serving < pipeline < tfx, as each folder's
__init__.py docstring states. Every import statement is checked, the ones
inside functions included (they are how normpipe keeps start-up cheap).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "normpipe"
ORDER = ("core", "io", "components", "serving", "pipeline", "tfx")
# What each layer may import, besides itself.
ALLOWED = {layer: set(ORDER[: i + 1]) for i, layer in enumerate(ORDER)}
ALLOWED["pipeline"] = set(ORDER[:5])
ALLOWED["tfx"] = set(ORDER)


def _layer(module: str):
    parts = module.split(".")
    if parts[0] != "normpipe" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ORDER else None


def imported_modules(source: str):
    """(line, imported module) for each normpipe import of a module's source."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "normpipe" or node.module in {f"normpipe.{layer}" for layer in ORDER}:
                for alias in node.names:
                    yield node.lineno, f"{node.module}.{alias.name}"
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def violations(layer: str, source: str, filename: str):
    found = []
    for line, module in imported_modules(source):
        target = _layer(module)
        if target is not None and target not in ALLOWED[layer]:
            found.append(f"{filename}:{line}: {layer} imports {module} ({target} is above it)")
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) > 1 and rel.parts[0] in ORDER:
            yield rel.parts[0], path


# Folders of package data, not code.
DATA_FOLDERS = {"data"}


def test_every_folder_is_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(ORDER) | DATA_FOLDERS
    for folder in DATA_FOLDERS:
        assert not list((PACKAGE / folder).rglob("*.py")), f"normpipe/{folder} holds data, not modules"
    for layer in ORDER:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "import" in doc, f"normpipe/{layer}/__init__.py must say what it may import"


def test_no_module_imports_a_higher_layer():
    found = []
    for layer, path in _modules():
        found += violations(layer, path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "layer, source",
    [
        ("core", "from normpipe.io import paths"),
        ("io", "def f():\n    from normpipe.components import statistics"),
        ("components", "import normpipe.serving.export"),
        ("serving", "from normpipe.pipeline.cli import main"),
        ("pipeline", "from normpipe import tfx"),
        ("pipeline", "from normpipe.tfx import run_fn"),
    ],
)
def test_an_upward_import_is_caught(layer, source):
    assert violations(layer, source, "x.py")


def test_module_sizes_stay_under_the_guide():
    too_long = [
        f"{p.relative_to(PACKAGE.parent)}: {n} lines"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 350
    ]
    assert not too_long, "\n".join(too_long)
