"""What a user meets on a cluster, refused in one line before any work.

- a `--runner` that Beam does not know, or a dotted path that does not
  import or names no runner;
- a Flink or Spark job server jar (`--flink_job_server_jar`,
  `--spark_job_server_jar`) that is not there, with where to get one;
- a Flink JobManager (`--flink_master`) or Spark master
  (`--spark_master_url`) that does not accept a connection.

And after the work, `job_failure`: a job that a cluster failed or cancelled
(a TaskManager lost, say) is one line naming the runner and the cluster's
first line of cause.
"""

import importlib
import re
import socket
import time

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PortableOptions,
    SparkRunnerOptions,
    StandardOptions,
)
from apache_beam.runners.runner import PipelineRunner
from apache_beam.version import __version__ as beam_version

from normpipe.core.errors import UserError
from normpipe.pipeline import beam_options

# Beam's own runner names, as `--runner` takes them (`flink`, `FlinkRunner`, a dotted path).
_KNOWN = {path.rsplit(".", 1)[-1].lower(): path for path in StandardOptions.ALL_KNOWN_RUNNERS}
# `--flink_master` values that start no cluster connection.
_FLINK_LOCAL = ("[local]", "[auto]")


def runner_class_name(runner) -> str:
    """The class name of a --runner value (a name, a dotted path or a runner object)."""
    name = runner if isinstance(runner, str) else type(runner).__name__
    path = _KNOWN.get(name.lower(), _KNOWN.get(name.lower() + "runner", name))
    return path.rsplit(".", 1)[-1]


def check_runner(runner) -> None:
    """Refuses a --runner Beam cannot create: an unknown name, a dotted path
    that does not import, or one that names no PipelineRunner."""
    if runner is None or not isinstance(runner, str):
        return
    path = _KNOWN.get(runner.lower(), _KNOWN.get(runner.lower() + "runner", runner))
    if "." not in path:
        known = ", ".join(sorted(StandardOptions.KNOWN_RUNNER_NAMES))
        raise UserError(f"--runner={runner}: Beam has no runner of that name (known: {known}; or the dotted "
                        "path of a runner class)")
    module, name = path.rsplit(".", 1)
    try:
        found = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise UserError(f"--runner={runner}: cannot import {module} ({exc})") from None
    except AttributeError:
        raise UserError(f"--runner={runner}: {module} has no {name}") from None
    if not (isinstance(found, type) and issubclass(found, PipelineRunner)):
        raise UserError(f"--runner={runner}: {path} is not a Beam PipelineRunner")


def _job_server_jar_hint(kind: str, flag: str, version: str) -> str:
    artifact = (f"org.apache.beam:beam-runners-flink-{version}-job-server:{beam_version}" if kind == "Flink"
                else f"org.apache.beam:beam-runners-spark-3-job-server:{beam_version}")
    which = " (with your cluster's Flink minor version)" if kind == "Flink" else ""
    return (f"get Beam's {kind} job server with `mvn dependency:get -Dtransitive=false -Dartifact={artifact}`"
            f"{which} and pass its path with {flag}=PATH (docs/runners.md)")


def check_job_server_jar(options) -> None:
    """Refuses a --flink_job_server_jar / --spark_job_server_jar that is neither a file nor a URL."""
    name = runner_class_name(options.view_as(StandardOptions).runner or "")
    if name == "FlinkRunner":
        jar, flag, kind = options.view_as(FlinkRunnerOptions).flink_job_server_jar, "--flink_job_server_jar", "Flink"
        version = options.view_as(FlinkRunnerOptions).flink_version
    elif name == "SparkRunner":
        jar, flag, kind = options.view_as(SparkRunnerOptions).spark_job_server_jar, "--spark_job_server_jar", "Spark"
        version = "3"
    else:
        return
    from normpipe.io import paths  # pylint: disable=import-outside-toplevel

    if jar and "://" not in jar and not paths.exists(jar):
        raise UserError(f"{flag}={jar}: no such file; {_job_server_jar_hint(kind, flag, version)}")


def _host_port(address: str, default_port: int):
    address = re.sub(r"^[a-z]+://", "", address.strip()).rstrip("/")
    host, _, port = address.rpartition(":")
    if not host:
        return address, default_port
    return host.strip("[]"), int(port) if port.isdigit() else default_port


def _answers(host: str, port: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.5, min(5.0, deadline - time.monotonic()))):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def _flink_version(host: str, port: int, wait: float):
    """The Flink version that the JobManager's REST API (GET /config) reports,
    or None when nothing answers as a JobManager within `wait` seconds."""
    import json  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel

    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/config", timeout=5) as response:
                return str(json.load(response)["flink-version"])
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)


def check_cluster_master(options, wait: float) -> None:
    """Refuses a Flink JobManager or Spark master that does not answer within
    `wait` seconds (Flink's client would retry for minutes), and a Flink job
    server jar of another Flink minor version than the cluster's. Not probed:
    a job server given by --job_endpoint (checked on its own), Flink's
    `[local]`/`[auto]` and Spark's `local[...]`.

    Flink is asked over its REST API (GET /config), so an address that
    accepts connections but is no JobManager is refused too; Spark's master
    port speaks Spark's own RPC, so a connection is all that is checked.
    """
    if options.view_as(PortableOptions).job_endpoint:
        return
    name = runner_class_name(options.view_as(StandardOptions).runner or "")
    if name == "FlinkRunner":
        flink = options.view_as(FlinkRunnerOptions)
        if flink.flink_master in _FLINK_LOCAL:
            return
        version = _flink_version(*_host_port(flink.flink_master, 8081), wait)
        if version is None:
            raise UserError(f"no Flink JobManager answered at --flink_master={flink.flink_master} within {wait:g} s "
                            "(its REST address, HOST:8081 by default; check it and that the cluster is running)")
        jar_minor = re.search(r"flink-(\d+\.\d+)-job-server", flink.flink_job_server_jar or "")
        if jar_minor and not version.startswith(jar_minor.group(1) + "."):
            raise UserError(f"--flink_job_server_jar={flink.flink_job_server_jar} is Beam's job server for Flink "
                            f"{jar_minor.group(1)}, but the cluster at --flink_master={flink.flink_master} runs Flink "
                            f"{version}: use the job server of the cluster's Flink minor version")
    elif name == "SparkRunner":
        master = options.view_as(SparkRunnerOptions).spark_master_url
        if master.startswith("spark://") and not _answers(*_host_port(master, 7077), wait):
            raise UserError(f"no Spark master answered at --spark_master_url={master} within {wait:g} s (check the "
                            "address, the port and that the cluster is running)")


_FAILED_JOB = re.compile(r"Pipeline (\S+) failed in state (FAILED|CANCELLED)(?::\s*(.*))?", re.DOTALL)
_JAR_DOWNLOAD = re.compile(r"(https?://\S+?\.jar)")


def job_failure(exc: BaseException, options):
    """One line for a job that the runner reports FAILED or CANCELLED, or for a
    job server jar Beam could not download; else None."""
    text = str(exc)
    name = runner_class_name(options.view_as(StandardOptions).runner or "")
    match = _FAILED_JOB.search(text)
    if match and name and not beam_options.is_local_runner(options):
        cause = (match.group(3) or "no cause given").strip().splitlines()[0][:300]
        if "TimeoutException" in cause and "Waited" in cause:
            # Beam's Spark runner waits 3 minutes for an SDK worker that died
            # (one that cannot import normpipe, say) and reports only the wait.
            cause += (" (the runner waited for an SDK worker that did not start or answer: check that normpipe "
                      "imports in the workers' Python; the worker pool's log says why)")
        return f"the {name} job {match.group(1)} ended {match.group(2)}: {cause}"
    download = _JAR_DOWNLOAD.search(text)
    if download and name in ("FlinkRunner", "SparkRunner") and type(exc).__name__ in (
            "URLError", "HTTPError", "RuntimeError", "OSError"):
        kind = "Flink" if name == "FlinkRunner" else "Spark"
        flag = f"--{kind.lower()}_job_server_jar"
        version = options.view_as(FlinkRunnerOptions).flink_version if kind == "Flink" else "3"
        return (f"Beam could not download its {kind} job server ({download.group(1)}); "
                f"{_job_server_jar_hint(kind, flag, version)}")
    return None
