"""normpipe on a real Apache Spark standalone cluster: a master and two
workers, each on a host of its own, an SDK worker pool beside each worker,
`--runner=SparkRunner --spark_master_url=spark://MASTER:7077` (see
tests/pipeline/cluster_cases.py and docs/runners.md). Root, iproute2, Java
and Maven are needed; the tests are skipped without them (CI names them in
NORMPIPE_NO_SKIP).
"""

import json
import time
import urllib.request

import pytest

from tests.conftest import assert_user_error
from tests.pipeline import cluster_cases as cases

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark(tmp_path_factory, request):
    cluster = cases.start_cluster("spark", tmp_path_factory.mktemp("spark"))
    request.addfinalizer(cluster.stop)
    return cluster


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    return cases.direct_runs(tmp_path_factory.mktemp("spark_direct"))


def _json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _workers_that_ran_the_last_app(cluster) -> set:
    """The workers that ran an executor of the newest finished application:
    the master's JSON page names it, each worker's JSON page its executors."""
    apps = _json(f"http://{cluster.master}:8080/json/")["completedapps"]
    assert apps
    app = max(apps, key=lambda a: a["starttime"])["id"]
    ran = set()
    for worker in cluster.workers_names:
        page = _json(f"http://{cluster.hosts.address[worker]}:8081/json/")
        if any(e["appid"] == app for e in page["executors"] + page["finishedexecutors"]):
            ran.add(worker)
    return ran


def test_stats_on_spark_equals_direct_runner_and_both_workers_work(tmp_path, spark, direct):
    data = cases.copy_input(tmp_path)
    before = cases.workers_started(spark)
    result = cases.on(spark, ["stats", "--input", data, "--output-dir", "out"], str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    cases.assert_same_statistics(tmp_path / "out", direct["stats"])
    after = cases.workers_started(spark)
    assert all(after[w] > before[w] for w in spark.workers_names), (before, after)
    assert _workers_that_ran_the_last_app(spark) == set(spark.workers_names)


def test_transform_on_spark_equals_direct_runner(tmp_path, spark, direct):
    data = cases.copy_input(tmp_path)
    before = cases.workers_started(spark)
    result = cases.on(spark, ["transform", "--input", data, "--output-dir", "out", "--label", "tips"],
                      str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    cases.assert_same_statistics(tmp_path / "out", direct["transform"])
    cases.assert_same_examples(tmp_path / "out", direct["transform"])
    after = cases.workers_started(spark)
    assert all(after[w] > before[w] for w in spark.workers_names), (before, after)


def test_run_on_spark_exports_a_model_that_passes_verify(tmp_path, spark):
    data = cases.copy_input(tmp_path)
    result = cases.on(spark, ["run", "--input", data, "--output-dir", "out", "--label", "tips", "--epochs", "1"],
                      str(tmp_path))
    cases.assert_run_passes_verify(result, str(tmp_path / "out"))


def test_spark_master_that_does_not_answer_is_one_line(tmp_path, spark):
    url = f"spark://{spark.master}:9"
    flags = [f"--spark_master_url={url}" if f.startswith("--spark_master_url") else f for f in spark.beam_flags()]
    result = cases.normpipe(["stats", "--input", cases.copy_input(tmp_path), "--output-dir", "out", "--", *flags,
                             "--job_server_timeout=3"], str(tmp_path), spark.client_env())
    assert_user_error(result, f"no Spark master answered at --spark_master_url={url} within 3 s")
    cases.assert_nothing_published(str(tmp_path / "out"))


def test_job_server_jar_that_cannot_be_found_is_one_line(tmp_path, spark):
    missing = str(tmp_path / "beam-runners-spark-3-job-server-2.62.0.jar")
    flags = [f"--spark_job_server_jar={missing}" if f.startswith("--spark_job_server_jar") else f
             for f in spark.beam_flags()]
    result = cases.normpipe(["stats", "--input", cases.copy_input(tmp_path), "--output-dir", "out", "--", *flags],
                            str(tmp_path), spark.client_env())
    assert_user_error(result, f"--spark_job_server_jar={missing}: no such file; get Beam's Spark job server with "
                              "`mvn dependency:get -Dtransitive=false -Dartifact=org.apache.beam:beam-runners-spark-3")


def test_spark_worker_that_cannot_import_normpipe_is_one_line(tmp_path, spark):
    start = time.monotonic()
    result = cases.on(spark, ["stats", "--input", cases.copy_input(tmp_path), "--output-dir", "out"],
                      str(tmp_path), pool_port=cases.BLOCKED_POOL_PORT, timeout=600)
    assert_user_error(result, "a Beam worker cannot import normpipe")
    assert time.monotonic() - start < 300
    cases.assert_nothing_published(str(tmp_path / "out"))
