"""normpipe on a real Apache Flink standalone cluster: a JobManager and two
TaskManagers, each on a host of its own, an SDK worker pool beside each
TaskManager, `--runner=FlinkRunner --flink_master=JMHOST:8081
--parallelism=2` (see tests/pipeline/cluster_cases.py and docs/runners.md).
Root, iproute2, Java and Maven are needed; the tests are skipped without
them (CI names them in NORMPIPE_NO_SKIP).
"""

import http.server
import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.conftest import assert_user_error
from tests.pipeline import cluster_cases as cases

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flink(tmp_path_factory, request):
    cluster = cases.start_cluster("flink", tmp_path_factory.mktemp("flink"))
    request.addfinalizer(cluster.stop)
    return cluster


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    return cases.direct_runs(tmp_path_factory.mktemp("flink_direct"))


def _rest(cluster, path):
    with urllib.request.urlopen(f"http://{cluster.master}:8081{path}", timeout=10) as response:
        return json.load(response)


def _last_job_hosts(cluster) -> set:
    """The hosts of every subtask of the newest job, from Flink's REST API."""
    jobs = sorted(_rest(cluster, "/jobs/overview")["jobs"], key=lambda j: j["start-time"])
    job = _rest(cluster, f"/jobs/{jobs[-1]['jid']}")
    assert job["state"] == "FINISHED", job["state"]
    hosts = set()
    for vertex in job["vertices"]:
        detail = _rest(cluster, f"/jobs/{job['jid']}/vertices/{vertex['id']}")
        hosts |= {subtask["host"].split(":")[0] for subtask in detail["subtasks"]}
    return hosts


def test_stats_on_flink_equals_direct_runner_and_both_taskmanagers_work(tmp_path, flink, direct):
    cases.check_stats(flink, tmp_path, direct)
    assert _last_job_hosts(flink) == {"worker1", "worker2"}


def test_transform_on_flink_equals_direct_runner(tmp_path, flink, direct):
    cases.check_transform(flink, tmp_path, direct)
    assert _last_job_hosts(flink) == {"worker1", "worker2"}


def test_run_on_flink_exports_a_model_that_passes_verify(tmp_path, flink):
    cases.check_run(flink, tmp_path)


def test_flink_master_that_does_not_answer_is_one_line(tmp_path, flink):
    cases.check_master_that_does_not_answer(flink, tmp_path, "no Flink JobManager answered")


def test_job_server_jar_that_cannot_be_found_is_one_line(tmp_path, flink):
    cases.check_job_server_jar_not_found(flink, tmp_path)


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_job_server_jar_that_cannot_be_downloaded_is_one_line(tmp_path, flink):
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/beam-runners-flink-1.19-job-server-2.62.0.jar"
    flags = [f"--flink_job_server_jar={url}" if f.startswith("--flink_job_server_jar") else f
             for f in flink.beam_flags()]
    try:
        result = cases.normpipe(["stats", "--input", cases.copy_input(tmp_path), "--output-dir", "out", "--",
                                 *flags], str(tmp_path))
    finally:
        server.shutdown()
    assert_user_error(result, f"Beam could not download its Flink job server ({url})")


def test_job_server_of_another_flink_version_is_one_line(tmp_path, flink):
    other = tmp_path / "beam-runners-flink-1.20-job-server-2.62.0.jar"
    with open(flink.beam_flags()[2].split("=", 1)[1], "rb") as src:
        other.write_bytes(src.read())
    flags = [f"--flink_job_server_jar={other}" if f.startswith("--flink_job_server_jar") else f
             for f in flink.beam_flags()]
    result = cases.normpipe(["stats", "--input", cases.copy_input(tmp_path), "--output-dir", "out", "--", *flags],
                            str(tmp_path))
    assert_user_error(result, "is Beam's job server for Flink 1.20, but the cluster at")


def test_taskmanager_that_cannot_import_normpipe_is_one_line(tmp_path, flink):
    cases.check_workers_that_cannot_import_normpipe(flink, tmp_path, "a Beam worker cannot import normpipe", 300)


def test_taskmanager_killed_in_the_middle_of_a_job_ends_the_command(tmp_path, flink):
    """Flink fails the job (no restart strategy); the command ends with one line, nothing published."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [os.path.join(cases.VENV_BIN, "normpipe"), "transform", "--input", cases.copy_input(tmp_path),
            "--output-dir", "out", "--label", "tips", "--", *flink.beam_flags()]
    known = {j["jid"] for j in _rest(flink, "/jobs/overview")["jobs"]}
    proc = subprocess.Popen(args, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            running = [j for j in _rest(flink, "/jobs/overview")["jobs"]
                       if j["jid"] not in known and j["state"] == "RUNNING"]
            if running:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(5)  # into the job's work
        flink.kill_worker("worker2")
        _, stderr = proc.communicate(timeout=300)  # ends: Flink fails the job, it does not hang
    finally:
        if proc.poll() is None:
            proc.kill()
        flink.start_worker("worker2")
    result = subprocess.CompletedProcess(args, proc.returncode, "", stderr)
    assert_user_error(result, "the FlinkRunner job")
    assert "ended FAILED" in stderr or "ended CANCELLED" in stderr
    cases.assert_nothing_published(str(tmp_path / "out"))
