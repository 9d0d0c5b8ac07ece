"""What each command writes under --output-dir, and the re-run policy.

A command refuses to run into a directory that already holds any of its
outputs unless --overwrite is given; with it, each output is replaced whole
(written under a temporary name and renamed into place), and outputs that an
earlier run left but this run does not produce (transformed/ after
--no-materialize, model/ after a run without a label) are removed once the run
has succeeded, so old and new artifacts never mix. Export versions under
serving/ are never replaced: each export adds the next version.
"""

import errno
import os
import shutil

from normpipe.components.errors import UserError

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
        raise UserError(f"--output-dir {output_dir}: cannot write in {existing} (read-only or permission denied)")


def storage_error(exc: BaseException):
    """The one-line reason when `exc` (or a cause, or the text a Beam runner
    or TensorFlow wrapped it in) is the disk filling up or turning read-only;
    else None."""
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


_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_STORAGE_TEXTS = tuple(os.strerror(e) for e in _STORAGE_ERRNOS)


def check_output_dir(command: str, output_dir: str, overwrite: bool) -> None:
    """Refuses to mix with an earlier run's outputs unless `overwrite`."""
    if overwrite or not os.path.isdir(output_dir):
        return
    existing = [name for name in OUTPUTS.get(command, ()) if os.path.exists(os.path.join(output_dir, name))]
    if existing:
        raise UserError(
            f"{output_dir} already holds outputs of an earlier run ({', '.join(existing)}); pass --overwrite "
            "to replace them (export versions are kept; a new export adds the next version)"
        )


def remove_stale(command: str, output_dir: str, produced) -> None:
    """After a successful run: drops this command's outputs that an earlier
    run left and this one did not write."""
    for name in OUTPUTS.get(command, ()):
        path = os.path.join(output_dir, name)
        if name not in produced and os.path.exists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
