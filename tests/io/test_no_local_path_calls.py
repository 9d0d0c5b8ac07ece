"""No `os`/`open`/`shutil` call on a path that can be a URI.

An AST scan of normpipe/: every call that reaches the local filesystem
(`open`, `os.*` file functions, `shutil`, `tempfile`, `glob`, `gzip.open`,
`mmap`, `np.save`/`np.load`, pyarrow's local file openers) must sit in a
function of the allowlist below, each with the reason it is local-only.
Everything else goes through `normpipe.io.paths`, `tf.io.gfile` or Beam's
`FileSystems`. `os.path.join`/`basename`/`splitext` are string operations
that keep `scheme://` intact and are allowed anywhere.
"""

import ast
import os

from tests.conftest import ROOT

PACKAGE = os.path.join(ROOT, "normpipe")

LOCAL_CALLS = ("open", "builtins.open", "io.open", "gzip.open", "mmap.mmap", "glob.glob", "np.save", "np.load", "numpy.save",
               "numpy.load", "pa.memory_map", "pa.input_stream", "pa.OSFile", "pathlib.Path", "Path")
LOCAL_MODULES = ("os.", "shutil.", "tempfile.")
# `os` functions that do not touch a path, or only build one as a string.
NOT_PATH_CALLS = ("os.path.join", "os.path.basename", "os.path.splitext", "os.getpid", "os.cpu_count",
                  "os.strerror", "os.kill", "os.environ.get", "os.environ.setdefault", "os.umask")

# (module, function): why its local calls never see a URI.
ALLOWED = {
    ("io/paths.py", "*"): "the helper itself: each local call is the is_local() branch",
    ("io/atomic.py", "current_umask"): "/proc/self/status, a local system file",
    ("io/atomic.py", "make_public_dir"): "guarded by paths.is_local",
    ("io/atomic.py", "make_public_file"): "guarded by paths.is_local",
    ("io/atomic.py", "write_bytes_atomic"): "local branch; a URI returns earlier through paths",
    ("io/atomic.py", "_replace_local"): "called only when src and dst are local",
    ("io/atomic.py", "atomic_directory"): "mkdtemp: local scratch (beside a local path, else system temp)",
    ("io/csv_lines.py", "is_gzip"): "called only on local files (plan_ranges, open_bytes, _read_sample)",
    ("io/csv_lines.py", "lines_before"): "callers check is_local first",
    ("io/csv_lines.py", "open_bytes"): "local branch; a URI goes to FileSystems.open",
    ("io/csv_reader.py", "_holds_quote"): "plan_ranges returns earlier for a URI",
    ("io/csv_reader.py", "plan_ranges"): "getsize after the is_local check",
    ("io/csv_reader.py", "_open_range"): "byte ranges exist only for local files (end >= 0)",
    ("io/input_files.py", "expand_input"): "local branch; a URI goes to _expand_uri (Beam FileSystems)",
    ("io/input_spec.py", "_csv_sample"): "getsize after the is_local check",
    ("io/input_spec.py", "_read_sample"): "pa.input_stream after the is_local check",
    ("components/spool.py", "*"): "training spool: private local scratch (pipeline/train.py _spool_dir)",
    ("serving/servable_files.py", "publish_version"): "os.rename in the is_local branch",
    ("serving/export.py", "export_model"): "removes the local staging scratch (paths.local_temp_dir)",
    ("pipeline/train.py", "_save_keras"): "local scratch (paths.local_temp_dir), published with copy_file_atomic",
    ("pipeline/train.py", "train_and_export"): "removes the local spool scratch",
    ("pipeline/outputs.py", "check_writable"): "returns earlier for a URI",
    ("pipeline/exits.py", "_silence"): "points the process's own closed stdout or stderr at os.devnull",
    ("pipeline/outputs.py", "_create_exclusive"): "O_EXCL in the local branch",
    ("pipeline/staging.py", "*"): "the installed package's own files and a private temp dir, always local",
}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _is_local_call(name: str) -> bool:
    if name in NOT_PATH_CALLS:
        return False
    return name in LOCAL_CALLS or name.startswith(LOCAL_MODULES)


def local_calls():
    """Yields (module, function, line, call) for every local-filesystem call in normpipe/."""
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, PACKAGE)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            yield from _calls_in(tree, module)


def _calls_in(tree, module):
    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call) and _is_local_call(_dotted(child.func)):
                yield module, function, child.lineno, _dotted(child.func)
            yield from visit(child, inner)

    yield from visit(tree, "<module>")


def test_no_local_filesystem_call_outside_the_allowlist():
    offending = [f"normpipe/{m}:{line} {call}() in {fn}" for m, fn, line, call in local_calls()
                 if (m, fn) not in ALLOWED and (m, "*") not in ALLOWED]
    assert not offending, "use normpipe.io.paths (or tf.io.gfile / Beam FileSystems):\n" + "\n".join(offending)


def test_every_allowlist_entry_is_still_needed():
    used = {(m, fn) for m, fn, _, _ in local_calls()} | {(m, "*") for m, _, _, _ in local_calls()}
    assert not sorted(set(ALLOWED) - used)


def test_the_scan_finds_a_local_call():
    tree = ast.parse("def f(p):\n    with open(p) as x:\n        return os.path.exists(p)\n")
    assert [c[3] for c in _calls_in(tree, "m.py")] == ["open", "os.path.exists"]
