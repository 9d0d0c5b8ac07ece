"""normpipe on a real Apache Spark standalone cluster: a master and two
workers, each on a host of its own, an SDK worker pool beside each worker,
`--runner=SparkRunner --spark_master_url=spark://MASTER:7077` (see
tests/pipeline/cluster_cases.py and docs/runners.md). Root, iproute2, Java
and Maven are needed; the tests are skipped without them (CI names them in
NORMPIPE_NO_SKIP).
"""

import json
import urllib.request

import pytest

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
    cases.check_stats(spark, tmp_path, direct)
    assert _workers_that_ran_the_last_app(spark) == set(spark.workers_names)


def test_transform_on_spark_equals_direct_runner(tmp_path, spark, direct):
    cases.check_transform(spark, tmp_path, direct)
    assert _workers_that_ran_the_last_app(spark) == set(spark.workers_names)


def test_run_on_spark_exports_a_model_that_passes_verify(tmp_path, spark):
    cases.check_run(spark, tmp_path)


def test_spark_master_that_does_not_answer_is_one_line(tmp_path, spark):
    cases.check_master_that_does_not_answer(spark, tmp_path, "no Spark master answered")


def test_job_server_jar_that_cannot_be_found_is_one_line(tmp_path, spark):
    cases.check_job_server_jar_not_found(spark, tmp_path)


def test_spark_worker_that_cannot_import_normpipe_is_one_line(tmp_path, spark):
    """Beam's Spark runner does not pass the worker's error on: it waits 3
    minutes for the SDK worker, and the job fails with that wait."""
    result = cases.check_workers_that_cannot_import_normpipe(
        spark, tmp_path, "ended FAILED: java.util.concurrent.TimeoutException: Waited 3 minutes", 420)
    assert "check that normpipe imports in the workers' Python" in result.stderr  # what to look at
