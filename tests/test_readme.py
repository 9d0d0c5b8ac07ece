"""The documentation's examples run as written, and its links resolve.

Every ```python block of README.md and docs/*.md runs here: the blocks of one
page in order, in one namespace (a block may use an earlier one's names),
from a temporary directory holding a symlink to the bundled data. A block
that imports TFX runs on its own, where TFX imports. Every relative link of
README.md, CONTRIBUTING.md, docs/*.md and benchmarks/README.md names a file
that exists, and a `#fragment` a heading of that page.
"""

import collections
import glob
import os
import re

import pytest

from tests.conftest import ROOT

EXAMPLE_PAGES = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINKED_PAGES = EXAMPLE_PAGES + ["CONTRIBUTING.md", os.path.join("benchmarks", "README.md")]

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
# A block that runs a Beam pipeline or exports a model takes tens of seconds.
_SLOW = re.compile(r"normpipe\.(transform|compute_statistics|export_model|export_normalization_model|verify)\(")
_NEEDS_TFX = re.compile(r"^\s*(from tfx\b|import tfx\b)", re.M)

# What a page's examples print and leave behind, checked besides the asserts inside them.
_PRINTED = {"README.md": ("15002 ", "(256, 3) (256,)", "PASS transform_skew")}
_WRITTEN = {"README.md": ("out/py/serving/taxi_norm/1/saved_model.pb", "out/py/transform/transform_fn")}


def _read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def python_blocks(page):
    """[(first line number, code)] of the page's ```python blocks, in order."""
    text = _read(page)
    return [(text.count("\n", 0, m.start(2)), m.group(2)) for m in _FENCE.finditer(text) if m.group(1) == "python"]


def _cases():
    for page in EXAMPLE_PAGES:
        blocks = python_blocks(page)
        plain = [b for b in blocks if not _NEEDS_TFX.search(b[1])]
        if plain:
            slow = any(_SLOW.search(code) for _, code in plain)
            yield pytest.param(page, plain, id=page, marks=[pytest.mark.slow] if slow else [])
        for n, block in enumerate(b for b in blocks if _NEEDS_TFX.search(b[1])):
            yield pytest.param(page, [block], id=f"{page}:tfx{n}")


def _run_blocks(page, blocks):
    namespace = {"__name__": "__doc_example__"}
    for line, code in blocks:
        # Leading newlines keep a traceback's line numbers those of the page.
        exec(compile("\n" * line + code, os.path.join(ROOT, page), "exec"), namespace)


@pytest.mark.parametrize("page, blocks", list(_cases()))
def test_python_examples_run(page, blocks, tmp_path, monkeypatch, capsys):
    if any(_NEEDS_TFX.search(code) for _, code in blocks):
        try:
            from tfx import v1  # noqa: F401
        except Exception as exc:  # pylint: disable=broad-except  -- any import failure means: no TFX here
            pytest.skip(f"TFX does not import here ({type(exc).__name__}); run with a Python that has TFX 1.21")
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    _run_blocks(page, blocks)
    if _NEEDS_TFX.search(blocks[0][1]):
        return
    printed = capsys.readouterr().out
    for expected in _PRINTED.get(page, ()):
        assert expected in printed, (page, expected, printed[-2000:])
    for path in _WRITTEN.get(page, ()):
        assert (tmp_path / path).exists(), (page, path)


def test_every_page_has_examples_collected():
    assert python_blocks("README.md"), "README.md has no ```python block: the fence pattern no longer matches"
    assert len(EXAMPLE_PAGES) > 1, "no docs/*.md found"


def _slug(heading):
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page):
    text = _FENCE.sub("", _read(page))
    seen = collections.Counter()
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = _slug(heading)
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def _relative_links(text):
    text = _FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)  # a code span is not a link
    for target in re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text):
        if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            yield target


def broken_links(page, text):
    """The relative links of `text` (the text of `page`) that name no file, or no heading of it."""
    broken = []
    for target in _relative_links(text):
        path, _, fragment = target.partition("#")
        resolved = os.path.join(ROOT, page)
        if path:
            resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path))
        if not os.path.exists(resolved):
            broken.append(f"{target}: no such file")
        elif fragment and resolved.endswith(".md") and fragment not in _anchors(os.path.relpath(resolved, ROOT)):
            broken.append(f"{target}: no heading #{fragment}")
    return broken


@pytest.mark.parametrize("page", LINKED_PAGES)
def test_relative_links_resolve(page):
    assert os.path.exists(os.path.join(ROOT, page)), f"{page} is missing"
    broken = broken_links(page, _read(page))
    assert not broken, f"{page}: " + "; ".join(broken)


def test_a_broken_link_is_caught():
    text = (
        "[ok](docs/serving.md#verify) ![plot](docs/images/comparison.png) [web](https://example.com/x)\n"
        "[gone](docs/nothing.md) [no heading](docs/serving.md#nowhere) `[in code](nothing.md)`\n"
        "```\n[in a block](nothing.md)\n```\n"
    )
    assert broken_links("README.md", text) == [
        "docs/nothing.md: no such file",
        "docs/serving.md#nowhere: no heading #nowhere",
    ]


def _expand_braces(path):
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [p for alt in match.group(1).split(",")
            for p in _expand_braces(path[: match.start()] + alt + path[match.end():])]


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_named_source_files_and_tests_exist(page):
    """A claim that cites a module or a test cites one that is there."""
    missing = []
    pattern = r"`((?:normpipe|tests|benchmarks)/[\w/{},.]+?\.py)(?:::(\w+))?(?:[:`])"
    for path, test_name in re.findall(pattern, _read(page)):
        for one in _expand_braces(path):
            if not os.path.isfile(os.path.join(ROOT, one)):
                missing.append(one)
            elif test_name and f"def {test_name}(" not in _read(one):
                missing.append(f"{one}::{test_name}")
    assert not missing, f"{page} names what does not exist: {missing}"


@pytest.mark.parametrize("page", EXAMPLE_PAGES[1:])
def test_each_docs_page_opens_with_a_summary_that_links_back(page):
    text = _read(page)
    title, _, rest = text.partition("\n\n")
    summary = rest.split("\n\n", 1)[0]
    assert title.startswith("# ") and not summary.startswith("#"), f"{page}: no summary paragraph under the title"
    assert "(../README.md" in summary, f"{page}: the summary does not link back to the README"


def test_public_api_names_resolve():
    import normpipe

    for name in normpipe.__all__:
        assert getattr(normpipe, name) is not None, name
