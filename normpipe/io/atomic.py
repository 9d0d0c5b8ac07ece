"""Atomic outputs: a reader never sees a partial file or directory under its
final name, even if the writing process is killed.

Local paths: write to a temporary sibling, then rename into place (POSIX
rename is atomic).

URIs (object stores, where a rename is a copy and a delete, and a directory
is only a common prefix of object names):

- A file is written to a temporary name and renamed: a store's rename copies
  one object server-side, and an object appears whole or not at all (GCS and
  S3 make an object visible only once its upload or copy has completed).
- A directory cannot appear at once, so it is published by copy and marked:
  `publish_directory` first writes the marker `.normpipe-incomplete` into the
  destination, then removes what an earlier run left there, copies the new
  files (those named in `last`, such as a SavedModel's `saved_model.pb`,
  after all others), and deletes the marker last. A copy that stops at any
  point leaves the marker; readers call `check_complete` (or `is_complete`)
  and refuse such a directory. A directory without the marker (one written
  by TFX, or by hand) counts as complete. TF Serving does not know the
  marker; with `saved_model.pb` copied last, a version it finds mid-copy
  fails to load and is retried (--max_num_load_retries) once it is whole.

Modes: `tempfile.mkstemp`/`mkdtemp` create 0600/0700 whatever the umask; a
local output renamed into place from one gets the mode `open()`/`mkdir()`
would have given it (0644/0755 under umask 022), so TF Serving or another
user can read it.
"""

import contextlib
import json
import os
import shutil
import tempfile
import uuid

from normpipe.core.errors import UserError
from normpipe.io import paths

INCOMPLETE = ".normpipe-incomplete"
# In every directory publish_directory writes: the files it holds, one
# '/'-separated relative path per line. A later --overwrite replaces the
# directory only if it holds nothing else (pipeline/outputs.py), so a file a
# user put there is never deleted.
FILE_LIST = ".normpipe-files"


def listed_files(path: str):
    """The files `publish_directory` recorded in directory `path`, or None
    where it holds no list (written by hand, by TFX, or by an earlier normpipe)."""
    try:
        with paths.open(paths.join(path, FILE_LIST), "r") as f:
            return {line for line in f.read().splitlines() if line}
    except Exception:  # pylint: disable=broad-except  -- absent or unreadable (OSError, tf's NotFoundError): no list
        return None


def _write_file_list(directory: str) -> None:
    files = sorted(rel for rel in paths.walk_files(directory) if rel != FILE_LIST)
    with paths.open(paths.join(directory, FILE_LIST), "w") as f:
        f.write("".join(f"{rel}\n" for rel in files))
    make_public_file(paths.join(directory, FILE_LIST))


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
    """Gives a local directory from `tempfile.mkdtemp` the umask's mode."""
    if paths.is_local(path):
        os.chmod(path, dir_mode())


def make_public_file(path: str) -> None:
    """Gives a local file from `tempfile.mkstemp` the umask's mode."""
    if paths.is_local(path):
        os.chmod(path, file_mode())


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file in the same directory."""
    directory = paths.dirname(path)
    paths.makedirs(directory)
    if not paths.is_local(path):
        tmp = paths.join(directory, f".{paths.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with paths.open(tmp, "wb") as f:
                f.write(data)
            paths.rename(tmp, path)
        finally:
            paths.remove(tmp)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    """Writes `text` (UTF-8) to `path` via a temporary file in the same directory."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj) -> None:
    """Writes `obj` as indented JSON (NaN and inf are refused: JSON has none)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def copy_file_atomic(src: str, dst: str) -> None:
    """Copies a finished file to `dst` (either may be a URI) so that it appears whole."""
    with paths.open(src, "rb") as f:
        write_bytes_atomic(dst, f.read())


def is_complete(path: str) -> bool:
    """False for a directory whose publishing copy did not finish."""
    return not paths.exists(paths.join(path, INCOMPLETE))


def check_complete(path: str, what: str) -> None:
    """Refuses a directory that `publish_directory` left half-copied."""
    if not paths.is_local(path) and not is_complete(path):
        raise UserError(f"{path}: incomplete {what} (copying it was interrupted; it holds {INCOMPLETE}); "
                        "run the stage that writes it again")


def publish_directory(src: str, dst: str, last=(), listed: bool = True) -> None:
    """Moves the finished directory `src` to `dst`, replacing an older `dst` whole.

    Local (same filesystem): renames. URI: copy and mark (module docstring);
    files whose name is in `last` are copied after all others. `src` is
    removed afterwards. With `listed`, the directory carries the list of its
    files (FILE_LIST); a directory that is never replaced (an export
    version) goes without.
    """
    if listed:
        _write_file_list(src)
    if paths.is_local(src) and paths.is_local(dst):
        _replace_local(src, dst)
        return
    marker = paths.join(dst, INCOMPLETE)
    paths.makedirs(dst)
    with paths.open(marker, "w") as f:
        f.write("being copied; not complete until this file is gone\n")
    for name in paths.listdir(dst):
        if name != INCOMPLETE:
            paths.rmtree(paths.join(dst, name))
    files = sorted(paths.walk_files(src), key=lambda rel: (paths.basename(rel) in last, rel))
    for rel in files:
        target = paths.join(dst, rel)
        paths.makedirs(paths.dirname(target))
        paths.copy(paths.join(src, rel), target)
    paths.remove(marker)
    paths.rmtree(src)


def _replace_local(src: str, dst: str) -> None:
    """Renames local directory `src` onto `dst`; an older `dst` goes whole."""
    make_public_dir(src)
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(dst):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", suffix=".old", dir=parent)
        os.replace(dst, os.path.join(old, "d"))
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yields a temporary directory that replaces `path` whole on success.

    Local: a hidden sibling of `path`, renamed into place. URI: a local
    scratch directory, published with `publish_directory`. On failure the
    temporary directory is removed and `path` is left as it was (on a URI,
    a copy that fails midway leaves `path` marked incomplete).
    """
    parent = paths.dirname(path)
    local_parent = parent if paths.is_local(path) else None
    if local_parent:
        os.makedirs(local_parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{paths.basename(path)}.", suffix=".tmp", dir=local_parent)
    try:
        make_public_dir(tmp)
        yield tmp
        publish_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
