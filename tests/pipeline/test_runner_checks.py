"""A --runner Beam cannot create, a job server jar that is not there and a
cluster master that does not answer: one line and exit 2, before any work.
(The same on live clusters: tests/pipeline/test_cluster_flink.py, test_cluster_spark.py.)"""

import socket
import time

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from normpipe.pipeline import runner_checks
from tests.conftest import TAXI_CSV, assert_user_error, run_cli


@pytest.mark.parametrize(
    "runner, expected",
    [
        ("NoSuchRunner", "--runner=NoSuchRunner: Beam has no runner of that name (known: "),
        ("a.dotted.path.ThatDoesNotImport", "--runner=a.dotted.path.ThatDoesNotImport: cannot import a.dotted.path "
                                            "(No module named 'a')"),
        ("apache_beam.runners.NoSuchRunner", "--runner=apache_beam.runners.NoSuchRunner: apache_beam.runners has no "
                                             "NoSuchRunner"),
        ("apache_beam.options.pipeline_options.PipelineOptions", "is not a Beam PipelineRunner"),
    ],
)
def test_runner_beam_cannot_create_is_one_line(tmp_path, runner, expected):
    result = run_cli(["stats", "--input", TAXI_CSV, "--output-dir", str(tmp_path / "out"), f"--runner={runner}"])
    assert_user_error(result, expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("runner", ["DirectRunner", "flink", "Spark", "PortableRunner",
                                    "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"])
def test_runners_beam_knows_pass(runner):
    runner_checks.check_runner(runner)


@pytest.mark.parametrize("kind", ["flink", "spark"])
def test_job_server_jar_that_is_not_there_is_one_line_with_where_to_get_it(tmp_path, kind):
    jar = tmp_path / "job-server.jar"
    result = run_cli(["stats", "--input", TAXI_CSV, "--output-dir", str(tmp_path / "out"),
                      f"--runner={kind.capitalize()}Runner", f"--{kind}_job_server_jar={jar}"])
    artifact = "beam-runners-flink-2.2-job-server:" if kind == "flink" else "beam-runners-spark-3-job-server:"
    assert_user_error(result, f"--{kind}_job_server_jar={jar}: no such file; get Beam's {kind.capitalize()} job server "
                              f"with `mvn dependency:get -Dtransitive=false -Dartifact=org.apache.beam:{artifact}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["flink", "spark"])
def test_master_that_does_not_answer_is_one_line_within_the_wait(tmp_path, kind):
    port = _closed_port()
    master = f"--flink_master=127.0.0.1:{port}" if kind == "flink" else f"--spark_master_url=spark://127.0.0.1:{port}"
    start = time.monotonic()
    result = run_cli(["stats", "--input", TAXI_CSV, "--output-dir", str(tmp_path / "out"),
                      f"--runner={kind.capitalize()}Runner", master, "--job_server_timeout=2"])
    what = "Flink JobManager" if kind == "flink" else "Spark master"
    assert_user_error(result, f"no {what} answered at {master} within 2 s")
    assert time.monotonic() - start < 30
    assert not (tmp_path / "out").exists()


def test_local_masters_and_job_endpoints_are_not_probed():
    for flags in (["--runner=FlinkRunner", "--flink_master=[local]"], ["--runner=SparkRunner"],
                  ["--runner=FlinkRunner", "--job_endpoint=localhost:1"]):
        runner_checks.check_cluster_master(PipelineOptions(flags), wait=0)


def test_a_job_the_cluster_failed_is_one_line_naming_the_runner():
    exc = RuntimeError("Pipeline BeamApp-root-1 failed in state FAILED: java.lang.Exception: TaskManager lost\n"
                       "\tat org.apache.flink...")
    line = runner_checks.job_failure(exc, PipelineOptions(["--runner=FlinkRunner"]))
    assert line == "the FlinkRunner job BeamApp-root-1 ended FAILED: java.lang.Exception: TaskManager lost"
    assert runner_checks.job_failure(exc, PipelineOptions([])) is None  # the local runner raises its own errors


def test_a_job_that_waited_for_an_sdk_worker_says_what_to_check():
    exc = RuntimeError("Pipeline BeamApp-2 failed in state FAILED: java.util.concurrent.TimeoutException: Waited 3 "
                       "minutes (plus 1 nanoseconds delay) for SettableFuture@1[status=PENDING]")
    line = runner_checks.job_failure(exc, PipelineOptions(["--runner=SparkRunner"]))
    assert line.startswith("the SparkRunner job BeamApp-2 ended FAILED: java.util.concurrent.TimeoutException: Waited")
    assert line.endswith("check that normpipe imports in the workers' Python; the worker pool's log says why)")
