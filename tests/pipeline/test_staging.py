"""normpipe stages its own wheel for remote workers."""

import os
import subprocess
import sys
import zipfile

import pytest

import normpipe
from normpipe.pipeline import staging

PORTABLE = ["--runner=PortableRunner", "--job_endpoint=host:8099"]


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], False),
        (["--runner=DirectRunner", "--direct_running_mode=multi_processing"], False),
        (PORTABLE + ["--environment_type=LOOPBACK"], False),
        (PORTABLE + ["--environment_type=EXTERNAL", "--environment_config=host:50000"], True),
        (PORTABLE, True),
        (["--runner=DataflowRunner", "--project=p", "--region=r"], True),
        (["--runner=FlinkRunner", "--flink_master=host:8081"], True),
        (PORTABLE + ["--setup_file=./setup.py"], False),
        (PORTABLE + ["--extra_package", "mine.whl"], False),
        (PORTABLE + ["--sdk_container_image=registry/image:tag"], False),
    ],
)
def test_wheel_is_staged_only_for_remote_workers_without_user_staging(flags, expected):
    assert staging.needs_staging(flags) is expected
    with staging.staged(flags) as staged:
        added = [a for a in staged if a not in flags]
        if expected:
            assert len(added) == 1 and added[0].startswith("--extra_package=") and added[0].endswith(".whl")
            assert os.path.isfile(added[0].split("=", 1)[1])
        else:
            assert staged == flags
    if expected:
        assert not os.path.exists(added[0].split("=", 1)[1])


def test_wheel_installs_and_imports_without_a_checkout(tmp_path):
    """The wheel holds every module of the running normpipe; installed into an
    empty target it is the normpipe a fresh interpreter imports."""
    wheel = staging.build_wheel(str(tmp_path))
    package = os.path.dirname(normpipe.__file__)
    modules = {os.path.relpath(os.path.join(d, f), os.path.dirname(package)).replace(os.sep, "/")
               for d, _, files in os.walk(package) for f in files if f.endswith(".py")}
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert modules <= names
    assert "Requires-Dist: apache-beam[gcp]==2.77.*" in metadata
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--target", str(target), wheel], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import normpipe.io.parquet_reader as m, normpipe.pipeline.cli; print(m.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(target / "normpipe" / "io" / "parquet_reader.py")
