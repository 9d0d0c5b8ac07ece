"""normpipe on Beam's portable runner with its job server and its SDK workers
on two other hosts: each in its own network namespace with its own address,
sharing only the file system (the storage both can reach).

The job server runs Beam's LocalJobServicer listening on its namespace's
address (netns_job_server.py); the workers are Beam's own worker pool
(`python -m apache_beam.runners.worker.worker_pool_main`), which starts each
SDK worker as `python -c ...` from its PATH: this venv's Python, where
normpipe is installed. A second pool runs where normpipe cannot be imported.
Root and `ip netns` are needed; the test is skipped without them.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import TAXI_CSV, assert_user_error
from tests.pipeline.cluster_cases import BLOCKER, examples

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
JOB_PORT, POOL_PORT, BLOCKED_POOL_PORT = 18099, 50000, 50001


def _sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def _wait_for(address, port, proc, log, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{address}:{port} exited {proc.returncode}: {open(log).read()[-2000:]}")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"nothing listens on {address}:{port} after {timeout}s: {open(log).read()[-2000:]}")


class Cluster:
    """Two namespaces on a bridge: the job server host and the worker host."""

    def __init__(self, tmp):
        tag = os.getpid() % 10000
        subnet = f"10.77.{os.getpid() % 200 + 20}"
        self.tmp = tmp
        self.bridge = f"npbr{tag}"
        self.namespaces = {"js": f"np-js-{tag}", "wk": f"np-wk-{tag}"}
        self.addresses = {"js": f"{subnet}.2", "wk": f"{subnet}.3"}
        self.gateway = f"{subnet}.1"
        self.procs, self.links, self.made = [], [], []

    def up(self):
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        _sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        hostname = socket.gethostname()
        for role, ns in self.namespaces.items():
            _sh("ip", "netns", "add", ns)
            self.made.append(ns)
            outer, inner = f"{self.bridge}{role}", f"v{role}{self.bridge}"[:15]
            _sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            self.links.append(outer)
            _sh("ip", "link", "set", inner, "netns", ns)
            _sh("ip", "link", "set", outer, "master", self.bridge)
            _sh("ip", "link", "set", outer, "up")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addresses[role]}/24", "dev", inner)
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            # `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts: each
            # host knows itself and the job server by name, as DNS would tell
            # them. Beam gives workers the runner's address as its host name.
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as f:
                f.write(f"127.0.0.1 localhost\n{self.addresses['js']} jobs.normpipe.test"
                        + (f" {hostname}\n" if role == "js" else "\n")
                        + f"{self.addresses['wk']} workers.normpipe.test" + (f" {hostname}\n" if role == "wk" else "\n"))

    def start(self, role, args, name, env=None):
        log = str(self.tmp / f"{name}.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.namespaces[role], *args], stdout=out,
                                    stderr=subprocess.STDOUT, cwd="/", env=env, start_new_session=True)
        self.procs.append(proc)
        return proc, log

    def down(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        for link in self.links:
            _sh("ip", "link", "del", link, check=False)
        for ns in self.made:
            _sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` command")
    tmp = tmp_path_factory.mktemp("cluster")
    net = Cluster(tmp)
    request.addfinalizer(net.down)
    try:
        net.up()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"`{' '.join(exc.cmd)}` failed: {exc.stderr.strip()}")
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    env.pop("PYTHONPATH", None)
    job, job_log = net.start("js", [sys.executable, os.path.join(HERE, "netns_job_server.py"),
                                    net.addresses["js"], str(JOB_PORT)], "job_server", env)
    pool, pool_log = net.start("wk", [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                                      f"--service_port={POOL_PORT}"], "worker_pool", env)
    blocked = tmp / "no_normpipe"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text(BLOCKER)
    blocked_env = {**env, "PYTHONPATH": str(blocked)}
    blocked_pool, blocked_log = net.start("wk", [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                                                 f"--service_port={BLOCKED_POOL_PORT}"], "blocked_pool", blocked_env)
    _wait_for(net.addresses["js"], JOB_PORT, job, job_log)
    _wait_for(net.addresses["wk"], POOL_PORT, pool, pool_log)
    _wait_for(net.addresses["wk"], BLOCKED_POOL_PORT, blocked_pool, blocked_log)
    net.pool_log = pool_log
    return net


def _portable(net, pool_port):
    return ["--", "--runner=PortableRunner", f"--job_endpoint={net.addresses['js']}:{JOB_PORT}",
            "--environment_type=EXTERNAL", f"--environment_config={net.addresses['wk']}:{pool_port}"]


def _normpipe(args, cwd, timeout=900):
    """The console script with relative paths, from `cwd` (the workers run in /)."""
    exe = os.path.join(VENV_BIN, "normpipe")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


@pytest.mark.slow
def test_stats_and_transform_on_workers_in_other_namespaces_equal_direct_runner(tmp_path, cluster):
    (tmp_path / "in").mkdir()
    shutil.copy(TAXI_CSV, tmp_path / "in" / "taxi.csv")
    flags = {"local": ["--runner=DirectRunner"], "remote": _portable(cluster, POOL_PORT)}
    documents = {}
    for command in ("stats", "transform"):
        for where, beam_flags in flags.items():
            out = f"{command}_{where}"
            result = _normpipe([command, "--input", "in/taxi.csv", "--output-dir", out, "--label", "tips",
                                *beam_flags], cwd=str(tmp_path))
            assert result.returncode == 0, result.stderr[-3000:]
            with open(tmp_path / out / "statistics.json") as f:
                documents[command, where] = json.load(f)
        assert documents[command, "remote"]["features"] == documents[command, "local"]["features"]
        assert documents[command, "remote"]["num_examples"] == documents[command, "local"]["num_examples"] == 15002
    local, remote = examples(tmp_path / "transform_local"), examples(tmp_path / "transform_remote")
    assert len(local) == 15002 and remote == local
    with open(cluster.pool_log) as f:
        assert "Starting worker" in f.read()  # the pool in the worker namespace ran the SDK workers


@pytest.mark.slow
def test_worker_that_cannot_import_normpipe_is_one_line(tmp_path, cluster):
    start = time.monotonic()
    result = _normpipe(["stats", "--input", TAXI_CSV, "--output-dir", "out", *_portable(cluster, BLOCKED_POOL_PORT)],
                       cwd=str(tmp_path), timeout=600)
    assert_user_error(result, "a Beam worker cannot import normpipe")
    assert time.monotonic() - start < 300
