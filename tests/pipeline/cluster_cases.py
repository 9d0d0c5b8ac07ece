"""What tests/pipeline/test_cluster_flink.py and test_cluster_spark.py share.

Each starts a real cluster with benchmarks/clusters.py (the recipe of
docs/runners.md): a master and two workers, each on a host of its own (a
network namespace with its own address), a Beam SDK worker pool beside each
worker, and the normpipe command in the machine's own namespace. DirectRunner
runs the same commands on the same file for the reference.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import TAXI_CSV, assert_user_error

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import clusters  # noqa: E402  pylint: disable=wrong-import-position

VENV_BIN = os.path.dirname(sys.executable)
BLOCKED_POOL_PORT = 50001
# A sitecustomize that makes `import normpipe` fail: a worker pool whose
# workers cannot import normpipe.
BLOCKER = '''
import importlib.abc, sys
class _NoNormpipe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "normpipe" or name.startswith("normpipe."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoNormpipe())
'''


def start_cluster(kind: str, tmp) -> "clusters.Cluster":
    """A started cluster with, beside the normal pools, pools on BLOCKED_POOL_PORT that cannot import normpipe."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    for tool in ("ip", "java", "mvn"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs `{tool}`")
    cluster = clusters.Cluster(kind, workers=2, folder=str(tmp)).start()
    blocked = tmp / "no_normpipe"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text(BLOCKER)
    try:
        for worker in cluster.workers_names:
            cluster.start_pool(worker, BLOCKED_POOL_PORT, {"PYTHONPATH": str(blocked)}, name="blocked")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def normpipe(args, cwd, env=None, timeout=1200):
    """The console script, from `cwd`, with the cluster's client environment."""
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(env or {})
    return subprocess.run([os.path.join(VENV_BIN, "normpipe"), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=full)


def on(cluster, args, cwd, pool_port=None, timeout=1200):
    flags = cluster.beam_flags()
    if pool_port:
        flags = [f"--environment_config=localhost:{pool_port}" if f.startswith("--environment_config") else f
                 for f in flags]
    return normpipe([*args, "--", *flags], cwd, cluster.client_env(), timeout)


def copy_input(tmp) -> str:
    (tmp / "in").mkdir(exist_ok=True)
    shutil.copy(TAXI_CSV, tmp / "in" / "taxi.csv")
    return "in/taxi.csv"


def split_input(tmp, parts: int = 6) -> str:
    """The taxi sample as `parts` CSV files, each with the header: a directory
    that the reader spreads over the workers (one file is one byte range)."""
    with open(TAXI_CSV) as f:
        header, *rows = f.readlines()
    folder = tmp / "in_parts"
    folder.mkdir(exist_ok=True)
    for k in range(parts):
        (folder / f"part-{k:05d}.csv").write_text(header + "".join(rows[k::parts]))
    return "in_parts"


def direct_runs(tmp):
    """stats and transform of the taxi sample on DirectRunner: {command: output dir}."""
    data = copy_input(tmp)
    outs = {}
    for command in ("stats", "transform"):
        outs[command] = str(tmp / f"{command}_direct")
        label = ["--label", "tips"] if command == "transform" else []
        result = normpipe([command, "--input", data, "--output-dir", outs[command], *label, "--runner=DirectRunner"],
                          str(tmp))
        assert result.returncode == 0, result.stderr[-3000:]
    return outs


def features(folder) -> dict:
    with open(os.path.join(folder, "statistics.json")) as f:
        document = json.load(f)
    assert document["num_examples"] == 15002
    return document["features"]


def assert_same_statistics(cluster_dir, direct_dir) -> None:
    """Counts, min and max exact; mean, var and std within 1e-15 relative."""
    got, want = features(cluster_dir), features(direct_dir)
    assert got.keys() == want.keys()
    for name, expected in want.items():
        for key, value in expected.items():
            if isinstance(value, float) and key in ("mean", "var", "std"):
                assert got[name][key] == pytest.approx(value, rel=1e-15, abs=0), (name, key)
            else:
                assert got[name][key] == value, (name, key)


def examples(folder):
    """Every transformed tf.train.Example as a sorted tuple of (feature, values): a multiset of rows."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    rows = []
    files = sorted(glob.glob(os.path.join(folder, "transformed", "*.tfrecord.gz")))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        rows.append(tuple(sorted((k, tuple(v.float_list.value) or tuple(v.int64_list.value))
                                 for k, v in example.features.feature.items())))
    return sorted(rows)


def assert_same_examples(cluster_dir, direct_dir) -> None:
    got, want = examples(cluster_dir), examples(direct_dir)
    assert len(want) == 15002 and len(got) == len(want)
    # float32 features of the same float64 statistics: equal to the last bit,
    # or to float32's rounding of a 1e-15 difference in the statistics.
    for row_got, row_want in zip(got, want):
        assert [k for k, _ in row_got] == [k for k, _ in row_want]
        for (_, a), (_, b) in zip(row_got, row_want):
            np.testing.assert_allclose(np.array(a, np.float64), np.array(b, np.float64), rtol=1e-6, atol=1e-12)


def workers_started(cluster) -> dict:
    """SDK workers each pool has started so far: {worker host: count}."""
    return {w: cluster.pool_log(w).count("Starting worker") for w in cluster.workers_names}


def assert_run_passes_verify(result, out_dir) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = [line for line in result.stderr.splitlines() if "verify: " in line and (" PASS " in line or
                                                                                       " FAIL " in line)]
    assert verdicts and all(" PASS " in line for line in verdicts), "\n".join(verdicts)
    assert any("transform_skew" in line for line in verdicts)
    versions = glob.glob(os.path.join(out_dir, "serving", "*", "[0-9]*", "saved_model.pb"))
    assert len(versions) == 1, versions


def assert_nothing_published(out_dir) -> None:
    if os.path.isdir(out_dir):
        left = sorted(n for n in os.listdir(out_dir) if not n.startswith("."))
        assert not {"statistics.json", "transform", "transformed", "serving"} & set(left), left


def _replace_flag(cluster, name: str, value: str) -> list:
    return [f"{name}={value}" if f.startswith(name + "=") else f for f in cluster.beam_flags()]


def check_stats(cluster, tmp, direct) -> None:
    """`stats` on the cluster of the sample split in files: DirectRunner's
    statistics of the one file, SDK workers started beside every worker."""
    before = workers_started(cluster)
    result = on(cluster, ["stats", "--input", split_input(tmp), "--output-dir", "out"], str(tmp))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_statistics(tmp / "out", direct["stats"])
    after = workers_started(cluster)
    assert all(after[w] > before[w] for w in cluster.workers_names), (before, after)


def check_transform(cluster, tmp, direct) -> None:
    """`transform` on the cluster: DirectRunner's statistics and transformed examples."""
    result = on(cluster, ["transform", "--input", copy_input(tmp), "--output-dir", "out", "--label", "tips"],
                str(tmp))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_statistics(tmp / "out", direct["transform"])
    assert_same_examples(tmp / "out", direct["transform"])


def check_run(cluster, tmp) -> None:
    """`run --label` on the cluster: an export that passes every verify check."""
    result = on(cluster, ["run", "--input", copy_input(tmp), "--output-dir", "out", "--label", "tips",
                          "--epochs", "1"], str(tmp))
    assert_run_passes_verify(result, str(tmp / "out"))


def check_master_that_does_not_answer(cluster, tmp, expected: str) -> None:
    """The master's port closed: one line within --job_server_timeout, nothing published."""
    name, value = (("--flink_master", f"{cluster.master}:9") if cluster.kind == "flink"
                   else ("--spark_master_url", f"spark://{cluster.master}:9"))
    result = normpipe(["stats", "--input", copy_input(tmp), "--output-dir", "out", "--",
                       *_replace_flag(cluster, name, value), "--job_server_timeout=3"], str(tmp), cluster.client_env())
    assert_user_error(result, f"{expected} at {name}={value} within 3 s")
    assert_nothing_published(str(tmp / "out"))


def check_job_server_jar_not_found(cluster, tmp) -> None:
    name = f"--{cluster.kind}_job_server_jar"
    missing = str(tmp / os.path.basename(clusters.job_server_jar(cluster.kind)))
    result = normpipe(["stats", "--input", copy_input(tmp), "--output-dir", "out", "--",
                       *_replace_flag(cluster, name, missing)], str(tmp), cluster.client_env())
    artifact = "flink-" if cluster.kind == "flink" else "spark-3-job-server"
    assert_user_error(result, f"{name}={missing}: no such file; get Beam's {cluster.kind.capitalize()} job server "
                              f"with `mvn dependency:get -Dtransitive=false -Dartifact=org.apache.beam:beam-runners-"
                              f"{artifact}")


def check_workers_that_cannot_import_normpipe(cluster, tmp, expected: str, seconds: float):
    """Workers whose Python cannot import normpipe: one line within `seconds`, nothing published. Returns the run."""
    start = time.monotonic()
    result = on(cluster, ["stats", "--input", copy_input(tmp), "--output-dir", "out"], str(tmp),
                pool_port=BLOCKED_POOL_PORT, timeout=600)
    assert_user_error(result, expected)
    assert time.monotonic() - start < seconds
    assert_nothing_published(str(tmp / "out"))
    return result
