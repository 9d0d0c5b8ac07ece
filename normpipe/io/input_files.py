"""Which files an --input names: a file, a directory, or a pattern.

A path that names an existing file is read as that file, even when its name
holds the pattern characters `*`, `?` or `[` (`dir/data[1].csv`, a file
named `run*.csv`); a path is a pattern only when no such file exists. A
directory stands for its visible files (names not starting with `.` or
`_`). The same holds for a URI (`gs://`, `s3://`, ...), through Beam's
FileSystems.
"""

import glob
import os
from typing import Tuple

from normpipe.core.errors import UserError

GLOB_CHARACTERS = "*?["


def expand_input(path: str) -> Tuple[str, ...]:
    """A file, a directory (its visible files) or a glob, as sorted file paths.

    A path that names an existing file is that file, even when its name holds
    `*`, `?` or `[` (`data[1].csv`); it is a pattern only when no such file
    exists. Local paths and URIs alike.
    """
    if "://" in path:
        files = _expand_uri(path)
    elif os.path.isdir(path):
        files = [os.path.join(path, n) for n in os.listdir(path) if not n.startswith((".", "_"))]
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise UserError(f"{path}: directory holds no input files")
    elif os.path.isfile(path):
        files = [path]
    elif any(c in path for c in GLOB_CHARACTERS):
        files = [f for f in glob.glob(path) if os.path.isfile(f)]
        if not files:
            raise UserError(f"{path}: pattern matches no files")
    else:
        raise UserError(f"{path}: no such file or directory")
    for f in files:
        if "://" not in f and not os.access(f, os.R_OK):
            raise UserError(f"{f}: file is not readable")
    return tuple(sorted(files))


def _expand_uri(path: str) -> list:
    """A URI's files through Beam's FileSystems: the object itself when it
    exists (FileSystems.match would read `[`, `*`, `?` in its name as a
    pattern), else a match; a trailing '/' lists the directory."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    if not path.endswith("/") and any(c in path for c in GLOB_CHARACTERS) and FileSystems.exists(path):
        return [path]
    pattern = path.rstrip("/") + "/*" if path.endswith("/") else path
    files = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    if not files:
        raise UserError(f"{path}: no such file, or no file matches")
    return files
