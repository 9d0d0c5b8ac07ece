"""normpipe's own code for Beam workers on other machines.

A remote runner's workers unpickle normpipe's DoFns, so they must import
normpipe. A checkout has `setup.py` for `--setup_file`; a pip-installed
normpipe has none. For a runner whose workers are not this process or its
children, normpipe therefore builds a wheel of the normpipe it is running
(the package files as imported, with the installed version and
dependencies) and passes it with `--extra_package`, which Beam stages with
the job and its SDK container installs before the worker starts. Nothing
is added when the user chose how the code gets there (`--setup_file`,
`--extra_package(s)`, `--sdk_container_image`, `--requirements_file`), or
for a worker that runs in this process (`--environment_type=LOOPBACK`).
"""

import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from importlib import metadata

from apache_beam.options.pipeline_options import PortableOptions

from normpipe.pipeline import beam_options
from normpipe.version import __version__

# Flags with which the user says how normpipe reaches the workers.
USER_STAGING_FLAGS = ("--setup_file", "--extra_package", "--extra_packages", "--sdk_container_image",
                      "--requirements_file", "--worker_harness_container_image")
_TAG = "py3-none-any"


def needs_staging(beam_args) -> bool:
    """Whether a run with these (checked) Beam flags should stage normpipe's wheel."""
    if any(a.split("=", 1)[0] in USER_STAGING_FLAGS for a in beam_args):
        return False
    options = beam_options.make_options(beam_args)
    if beam_options.is_local_runner(options):
        return False
    return (options.view_as(PortableOptions).environment_type or "").upper() != "LOOPBACK"


def _requirements():
    try:
        return [r for r in (metadata.requires("normpipe") or []) if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        return []


def _package_files():
    """(path on disk, path in the wheel) for every file of the imported normpipe package."""
    import normpipe  # pylint: disable=import-outside-toplevel

    root = os.path.dirname(os.path.abspath(normpipe.__file__))
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                path = os.path.join(folder, name)
                yield path, "normpipe/" + os.path.relpath(path, root).replace(os.sep, "/")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(dest_dir: str) -> str:
    """Writes normpipe-<version>-py3-none-any.whl of the running normpipe into dest_dir; returns its path."""
    version = __version__
    info = f"normpipe-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", "Name: normpipe", f"Version: {version}", "Requires-Python: >=3.10,<3.13"]
    meta += [f"Requires-Dist: {r}" for r in _requirements()]
    extra = {
        f"{info}/METADATA": "\n".join(meta) + "\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: normpipe\nRoot-Is-Purelib: true\nTag: {_TAG}\n",
        f"{info}/entry_points.txt": "[console_scripts]\nnormpipe = normpipe.pipeline.cli:main\n",
    }
    path = os.path.join(dest_dir, f"normpipe-{version}-{_TAG}.whl")
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for source, name in _package_files():
            with open(source, "rb") as f:
                data = f.read()
            wheel.writestr(name, data)
            records.append(_record_line(name, data))
        for name, text in extra.items():
            wheel.writestr(name, text)
            records.append(_record_line(name, text.encode("utf-8")))
        records.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


@contextlib.contextmanager
def staged(beam_args):
    """The Beam flags plus `--extra_package=<normpipe wheel>` when needed (see the module docstring).

    The wheel lives in a temporary directory until the block ends.
    """
    beam_args = list(beam_args)
    if not needs_staging(beam_args):
        yield beam_args
        return
    folder = tempfile.mkdtemp(prefix="normpipe-stage-")
    try:
        yield beam_args + [f"--extra_package={build_wheel(folder)}"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
