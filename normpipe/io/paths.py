"""Paths that may be URIs (`gs://`, `s3://`, `hdfs://`, `ram://`).

One place chooses between the local filesystem and a remote one:

- a local path takes the `os` route: POSIX rename is atomic, and new files
  and directories get the umask's modes;
- a URI goes through `tf.io.gfile`, because tf.Transform and Keras write
  their outputs through it too: an --output-dir must be on a filesystem
  TensorFlow can write (local, `gs://`, `ram://`; `s3://` and `hdfs://` with
  tensorflow-io installed).

Inputs are read by the Beam pipeline through Beam's `FileSystems` (local,
`gs://`, `s3://` with apache-beam[aws], `hdfs://`); `open_input` and
`match_input` are the same route outside the pipeline, so an --input that
Beam can read is read the same way everywhere.
"""

import builtins
import glob as _glob
import os
import shutil
import tempfile
import uuid


def is_local(path: str) -> bool:
    """True for a path on the local filesystem (no `scheme://`)."""
    return "://" not in str(path)


def _gfile():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  -- only for URIs: the CLI starts faster

    return tf.io.gfile


def join(base: str, *parts: str) -> str:
    """`os.path.join` for a local path; for a URI, parts joined by one '/'."""
    if is_local(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts if p])


def dirname(path: str) -> str:
    """The parent of `path`; a URI's scheme and bucket are kept (`gs://b/x` -> `gs://b`)."""
    if is_local(path):
        return os.path.dirname(os.path.abspath(path))
    head, _, _ = path.rstrip("/").rpartition("/")
    return head if not head.endswith(":/") else path.rstrip("/")


def basename(path: str) -> str:
    return str(path).rstrip("/").rpartition("/")[2]


def absolute(path: str) -> str:
    """A local path made absolute (`~` expanded); a URI as it is."""
    return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path


def exists(path: str) -> bool:
    return os.path.exists(path) if is_local(path) else _gfile().exists(path)


def isdir(path: str) -> bool:
    return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def isfile(path: str) -> bool:
    if is_local(path):
        return os.path.isfile(path)
    return _gfile().exists(path) and not _gfile().isdir(path)


def makedirs(path: str) -> None:
    """Creates `path` and its parents; an existing directory is fine."""
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def listdir(path: str) -> list:
    """Names in a directory (without a trailing '/'), sorted."""
    if is_local(path):
        return sorted(os.listdir(path))
    return sorted(name.rstrip("/") for name in _gfile().listdir(path))


def walk_files(path: str):
    """Yields the path of every file under directory `path`, relative to it ('/'-separated)."""
    for name in listdir(path):
        full = join(path, name)
        if isdir(full):
            yield from (f"{name}/{rest}" for rest in walk_files(full))
        else:
            yield name


def glob(pattern: str) -> list:
    return sorted(_glob.glob(pattern) if is_local(pattern) else _gfile().glob(pattern))


def remove(path: str) -> None:
    """Deletes a file; a missing one is fine."""
    if is_local(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    elif _gfile().exists(path):
        _gfile().remove(path)


def rmtree(path: str) -> None:
    """Deletes a directory and everything under it, or a file; errors are ignored."""
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else remove(path)
        return
    try:
        gfile = _gfile()
        if gfile.isdir(path):
            gfile.rmtree(path)
        elif gfile.exists(path):
            gfile.remove(path)
    except Exception:  # pylint: disable=broad-except  -- cleanup: leave what cannot be removed
        pass


def copy(src: str, dst: str) -> None:
    """Copies one file (either side may be a URI), replacing `dst`."""
    if is_local(src) and is_local(dst):
        shutil.copyfile(src, dst)
    else:
        _gfile().copy(src, dst, overwrite=True)


def rename(src: str, dst: str) -> None:
    """Renames a file, replacing `dst` (on an object store: a copy, then a delete)."""
    if is_local(src) and is_local(dst):
        os.replace(src, dst)
    else:
        _gfile().rename(src, dst, overwrite=True)


def mtime(path: str) -> float:
    """Seconds since the epoch of the last change, 0.0 if unknown."""
    try:
        if is_local(path):
            return os.path.getmtime(path)
        return _gfile().stat(path).mtime_nsec / 1e9
    except Exception:  # pylint: disable=broad-except  -- unknown is an answer
        return 0.0


def open(path: str, mode: str = "r"):  # noqa: A001  (paths.open: the module's open for paths and URIs)
    """A file object: text (UTF-8) or binary ('b' in `mode`)."""
    if is_local(path):
        return builtins.open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    return _gfile().GFile(path, mode)


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def make_temp_dir(parent: str, prefix: str) -> str:
    """A new, uniquely named directory under `parent` (created if missing).

    Local: `tempfile.mkdtemp` (mode 0700, private scratch). URI: a name that
    no other process picks (an object store has no exclusive create).
    """
    makedirs(parent)
    if is_local(parent):
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    path = join(parent, f"{prefix}{uuid.uuid4().hex}")
    makedirs(path)
    return path


def local_temp_dir(prefix: str, near: str) -> str:
    """Private local scratch: under `near` when that is a local directory
    (same filesystem, so a rename publishes it), else in the system's temp
    directory (for an output on a URI). A local `near` is created if missing."""
    if not is_local(near):
        return tempfile.mkdtemp(prefix=prefix)
    os.makedirs(near, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=near)


def open_input(path: str):
    """A binary file object for an input file, read through Beam's
    FileSystems, as the pipeline reads it (no decompression)."""
    from apache_beam.io.filesystems import CompressionTypes, FileSystems  # pylint: disable=import-outside-toplevel

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def match_input(pattern: str) -> list:
    """Files matching a URI pattern, through Beam's FileSystems, sorted."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def open_text_input(path: str):
    """An input file as text (UTF-8, a byte-order mark dropped, newlines as
    they are, for the csv module): local directly, a URI through `open_input`."""
    if is_local(path):
        return builtins.open(path, newline="", encoding="utf-8-sig")
    import io  # pylint: disable=import-outside-toplevel

    return io.TextIOWrapper(open_input(path), encoding="utf-8-sig", newline="")
