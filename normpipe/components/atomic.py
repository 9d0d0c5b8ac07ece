"""Atomic outputs: write to a temporary sibling, then rename into place.

A reader (a person, the next stage, TF Serving) never sees a partial file or
directory under its final name, even if the process is killed mid-write.

`tempfile.mkstemp`/`mkdtemp` create 0600/0700 whatever the umask; an output
renamed into place from one gets the mode `open()`/`mkdir()` would have given
it (0644/0755 under umask 022), so TF Serving or another user can read it.
"""

import contextlib
import json
import os
import shutil
import tempfile


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode `mkdir()` gives a new directory: 0777 less the umask."""
    return 0o777 & ~current_umask()


def make_public_dir(path: str) -> None:
    """Gives a directory from `tempfile.mkdtemp` the umask's mode."""
    os.chmod(path, dir_mode())


def make_public_file(path: str) -> None:
    """Gives a file from `tempfile.mkstemp` the umask's mode."""
    os.chmod(path, file_mode())


def write_text_atomic(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file in the same directory."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, obj) -> None:
    """Writes `obj` as indented JSON (NaN and inf are refused: JSON has none)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yields a temporary directory that replaces `path` whole on success.

    On failure the temporary directory is removed and `path` is left as it was.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        make_public_dir(tmp)
        yield tmp
        if os.path.isdir(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "d"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
