"""What each command writes under --output-dir, and the re-run policy.

A command refuses to run into a directory that already holds any of its
outputs unless --overwrite is given; with it, each output is replaced whole
(written under a temporary name and renamed into place), and outputs that an
earlier run left but this run does not produce (transformed/ after
--no-materialize, model/ after a run without a label) are removed once the run
has succeeded, so old and new artifacts never mix. Export versions under
serving/ are never replaced: each export adds the next version.

--overwrite replaces only what normpipe wrote. A directory output carries the
list of the files normpipe put in it (atomic.FILE_LIST; model/ holds a known
set of files); a command that would replace or remove one holding any other
file (a user's notes in transform/, a directory an earlier normpipe wrote
without a list) is refused before it starts, in one line naming that file:
the user moves it, rather than normpipe guessing. Files beside the outputs
in --output-dir are never touched.

One command at a time writes to a directory: it holds `.normpipe.lock` (its
pid and host) while it runs, and a second command is refused. A lock whose
process is gone was left by a killed run; its outputs are unfinished, so the
next command replaces them without --overwrite and removes the dead run's
scratch. A run that fails leaves `.normpipe-unfinished` for the same reason.

On a URI (object store) the lock is taken by checking that no lock exists
and then writing one: a store has no exclusive create, so two commands
started within the same moment could both proceed. Everything else is the
same, through `normpipe.io.paths`.
"""

import errno
import json
import os
import socket
import time

from normpipe.core.errors import UserError
from normpipe.io import atomic, paths

OUTPUTS = {
    "stats": ("statistics.json",),
    "transform": ("statistics.json", "transform", "transformed"),
    "compare": ("statistics.json", "transform", "transformed", "comparison.json", "comparison.md", "comparison.png"),
    "train": ("statistics.json", "transform", "transformed", "model"),
    "run": ("statistics.json", "transform", "transformed", "comparison.json", "comparison.md", "comparison.png",
            "model", "report.html", "run.json"),
}


def check_writable(output_dir: str) -> None:
    """Refuses an --output-dir that is a file, lies under a file, or sits in
    a directory this process cannot write in; creates nothing.

    URIs (gs://, s3://, ...) are left to their filesystem.
    """
    if "://" in output_dir:
        return
    path = os.path.abspath(output_dir)
    existing = path
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"{existing} is a file"
        raise UserError(f"--output-dir {output_dir}: {where}, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        if os.statvfs(existing).f_flag & os.ST_RDONLY:  # the storage's state, not the user's choice: exit 1
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), existing)
        raise UserError(f"--output-dir {output_dir}: cannot write in {existing} (read-only or permission denied)")


def storage_error(exc: BaseException):
    """The one-line reason when `exc` (or a cause, or the text a Beam runner
    or TensorFlow wrapped it in) is the storage failing: full (ENOSPC, or a
    quota: EDQUOT), read-only (EROFS) or an I/O error (EIO); else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            return f"{exc.filename}: {os.strerror(exc.errno)}" if exc.filename else os.strerror(exc.errno)
        text = str(exc)
        for reason in _STORAGE_TEXTS:
            if reason in text:
                return reason
        exc = exc.__cause__ or exc.__context__
    return None


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
_STORAGE_TEXTS = tuple(os.strerror(e) for e in _STORAGE_ERRNOS)


# Directory outputs: written whole by atomic.publish_directory (with its
# file list), or file by file (model/: these names and their temporaries).
DIRECTORIES = {"transform": None, "transformed": None, "model": {"model.keras", "metrics.json"}}


def foreign_files(output_dir: str, name: str) -> list:
    """Files in the directory output `name` that normpipe did not write there."""
    path = paths.join(output_dir, name)
    if name not in DIRECTORIES or not paths.isdir(path):
        return []
    known = DIRECTORIES[name]
    if known is None:  # published whole: its own list (none: nothing in it is known to be normpipe's)
        known = (atomic.listed_files(path) or set()) | {atomic.FILE_LIST, atomic.INCOMPLETE}
    return [paths.join(path, rel) for rel in paths.walk_files(path)
            if rel not in known and not (rel.startswith(".") and rel.endswith(".tmp"))]  # a killed write's temporary


def check_replaceable(command: str, output_dir: str) -> None:
    """Refuses, before any work, to replace or remove a directory output
    holding a file that normpipe did not write there (module docstring)."""
    for name in OUTPUTS.get(command, ()):
        found = foreign_files(output_dir, name)
        if found:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            raise UserError(
                f"{paths.join(output_dir, name)} holds {found[0]}{more}, which normpipe did not write; "
                "this command would replace that directory: move the file elsewhere first")


def check_output_dir(command: str, output_dir: str, overwrite: bool) -> None:
    """Refuses to mix with an earlier run's outputs unless `overwrite`, and
    to replace a directory output holding a file normpipe did not write."""
    if not paths.isdir(output_dir):
        return
    if overwrite:
        check_replaceable(command, output_dir)
        return
    existing = [name for name in OUTPUTS.get(command, ()) if paths.exists(paths.join(output_dir, name))]
    if existing:
        raise UserError(
            f"{output_dir} already holds outputs of an earlier run ({', '.join(existing)}); pass --overwrite "
            "to replace them (export versions are kept; a new export adds the next version)"
        )


def remove_stale(command: str, output_dir: str, produced) -> None:
    """After a successful run: drops this command's outputs that an earlier
    run left and this one did not write."""
    for name in OUTPUTS.get(command, ()):
        path = paths.join(output_dir, name)
        if name not in produced and paths.exists(path):
            paths.rmtree(path)


LOCK = ".normpipe.lock"
UNFINISHED = ".normpipe-unfinished"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(path: str) -> dict:
    try:
        return json.loads(paths.read_text(path))
    except Exception:  # pylint: disable=broad-except  -- unreadable (OSError, tf's NotFoundError, bad JSON): no holder
        return {}


def _remove_scratch(output_dir: str) -> None:
    """A dead run's scratch: `.tmp-*` directories and atomic writes' temporaries."""
    for name in paths.listdir(output_dir):
        path = paths.join(output_dir, name)
        if (name.startswith(".tmp-") and paths.isdir(path)) or (
            name.startswith(".") and name.endswith((".tmp", ".old")) and name not in (LOCK, UNFINISHED)
        ):
            paths.rmtree(path)


class RunLock:
    """Holds `output_dir/.normpipe.lock` for one command (see the module docstring).

    `unfinished` is True when an earlier command into the directory was
    killed or failed: its outputs may then be replaced without --overwrite.
    """

    def __init__(self, output_dir: str, command: str):
        self.output_dir = output_dir
        self.command = command
        self.path = paths.join(output_dir, LOCK)
        self.unfinished = False
        self._created_dir = False

    def acquire(self) -> "RunLock":
        self._created_dir = not paths.isdir(self.output_dir)
        paths.makedirs(self.output_dir)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                             "started": time.time()})
        for _ in range(3):
            if _create_exclusive(self.path, record):
                break
            self._take_over_stale()
        else:
            raise UserError(f"{self.path}: cannot take the lock; remove it if no normpipe command is running")
        unfinished = paths.join(self.output_dir, UNFINISHED)
        if paths.exists(unfinished):
            self.unfinished = True
        if self.unfinished:
            _remove_scratch(self.output_dir)
        return self

    def _take_over_stale(self) -> None:
        holder = _read_lock(self.path)
        pid, host = holder.get("pid"), holder.get("host")
        if isinstance(pid, int) and (host != socket.gethostname() or _process_alive(pid)):
            raise UserError(
                f"{self.output_dir} is in use by another normpipe command ({holder.get('command', '?')}, pid {pid} "
                f"on {host}); wait for it to finish or choose another --output-dir (if that process is gone, "
                f"delete {self.path})"
            )
        if not holder and time.time() - paths.mtime(self.path) < 5:
            # being written by a command that has just started
            raise UserError(f"{self.output_dir} is in use by another normpipe command that is starting")
        # Left by a killed command: its outputs are unfinished.
        self.unfinished = True
        paths.remove(self.path)

    def release(self, succeeded: bool, started: bool = True) -> None:
        """Drops the lock. A command that `started` writing and did not
        succeed leaves the unfinished marker; one refused before it started
        leaves the directory as it found it."""
        unfinished = paths.join(self.output_dir, UNFINISHED)
        if succeeded and paths.exists(unfinished):
            paths.remove(unfinished)
        elif started and not succeeded and not self._created_dir_is_empty():
            with paths.open(unfinished, "w") as f:
                f.write(f"{self.command} did not finish; the next command may replace its outputs\n")
        paths.remove(self.path)
        if self._created_dir and not paths.listdir(self.output_dir):
            paths.rmtree(self.output_dir)

    def _created_dir_is_empty(self) -> bool:
        return self._created_dir and paths.listdir(self.output_dir) == [LOCK]


def _create_exclusive(path: str, text: str) -> bool:
    """Writes a new file `path`; False if it exists. Exclusive locally
    (O_EXCL); on a URI a check, then a write (see the module docstring)."""
    if not paths.is_local(path):
        if paths.exists(path):
            return False
        with paths.open(path, "w") as f:
            f.write(text)
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True
