"""Flink and Spark standalone clusters on this machine, every daemon on a host of its own.

    python benchmarks/clusters.py fetch flink|spark      # packages and job server, into the cache
    python benchmarks/clusters.py start flink|spark      # prints the flags to give normpipe
    python benchmarks/clusters.py stop flink|spark

A host is a network namespace with its own address on a bridge (`ip netns`,
root needed); the machine's own namespace is the client, where normpipe and
Beam's job server run. Flink: a JobManager and N TaskManagers (one slot
each); Spark: a master and N workers (one core each). Beside every
TaskManager or Spark worker runs Beam's SDK worker pool
(`python -m apache_beam.runners.worker.worker_pool_main`) from normpipe's
Python, the sidecar that `--environment_type=EXTERNAL
--environment_config=localhost:50000` names. The hosts share the file system
(the storage every host reaches).

What is fetched (see docs/runners.md for the versions and why):

- Flink from PyPI's `apache-flink` + `apache-flink-libraries` and Spark from
  `pyspark`, each `pip install --no-deps --target` into a directory of its
  own (apache-flink pins an older apache-beam: never into normpipe's venv);
- Beam's job server for each runner from Maven Central. Its shaded
  `...-job-server` jar is not served there, so `mvn dependency:copy-dependencies`
  fetches the runner (`beam-runners-flink-1.19`, `beam-runners-spark-3`) with
  everything it needs into `lib/`, and a jar of one manifest (Main-Class and
  Class-Path, nothing else) makes it a `java -jar` job server that
  `--flink_job_server_jar` / `--spark_job_server_jar` take. Spark's runner
  leaves Spark itself to the cluster (`provided`): the job server's
  Class-Path names the cluster's own Spark jars.

The tests (tests/pipeline/test_clusters.py) start and stop clusters through
this module: the recipe and the tests are one thing.
"""

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

BEAM_JAVA = "2.62.0"
FLINK = "1.19.3"
FLINK_MINOR = "1.19"
SPARK = "3.5.9"
POOL_PORT = 50000
CACHE = os.environ.get("NORMPIPE_CLUSTER_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "normpipe-clusters"))
RUNNER_ARTIFACT = {"flink": f"beam-runners-flink-{FLINK_MINOR}", "spark": "beam-runners-spark-3"}
MAIN_CLASS = {"flink": "org.apache.beam.runners.flink.FlinkJobServerDriver",
              "spark": "org.apache.beam.runners.spark.SparkJobServerDriver"}
# Each cluster's subnet (10.78.N.0/24, N from its name), so that clusters of
# other names can run side by side.
SUBNET = {"flink": 1, "spark": 2}


def _run(*args, check=True, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=kwargs.pop("timeout", 900),
                          **kwargs)


def engine_home(kind: str) -> str:
    """FLINK_HOME or SPARK_HOME inside the pip target directory."""
    if kind == "flink":
        return os.path.join(CACHE, f"flink-{FLINK}", "pyflink")
    return os.path.join(CACHE, f"spark-{SPARK}", "pyspark")


def job_server_jar(kind: str) -> str:
    """The job server jar for --flink_job_server_jar / --spark_job_server_jar."""
    name = f"{RUNNER_ARTIFACT[kind]}-job-server-{BEAM_JAVA}"
    return os.path.join(CACHE, name, f"{name}.jar")


def _fetch_engine(kind: str) -> None:
    home = engine_home(kind)
    if os.path.isdir(os.path.join(home, "bin")):
        return
    target = os.path.dirname(home)
    packages = [f"apache-flink=={FLINK}", f"apache-flink-libraries=={FLINK}"] if kind == "flink" else [
        f"pyspark=={SPARK}"]
    shutil.rmtree(target, ignore_errors=True)
    _run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target + ".part", *packages)
    os.rename(target + ".part", target)


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>normpipe.clusters</groupId><artifactId>{artifact}-job-server</artifactId><version>{version}</version>
  <dependencies>
    <dependency><groupId>org.apache.beam</groupId><artifactId>{artifact}</artifactId><version>{version}</version></dependency>{logging}
  </dependencies>
</project>
"""


def _manifest(main_class: str, class_path: list) -> bytes:
    """A JAR manifest; its lines are at most 72 bytes, longer ones continued after a space."""
    lines = []
    for key, value in (("Manifest-Version", "1.0"), ("Main-Class", main_class),
                       ("Class-Path", " ".join(class_path))):
        line = f"{key}: {value}".encode()
        lines.append(line[:72])
        lines.extend(b" " + line[i:i + 71] for i in range(72, len(line), 71))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _artifact_name(jar: str) -> str:
    """`jackson-core-2.15.2.jar` -> `jackson-core`: the name without its version."""
    stem, parts = os.path.basename(jar)[:-4], []
    for part in stem.split("-"):
        if part[:1].isdigit():
            break
        parts.append(part)
    return "-".join(parts)


def _version(jar: str) -> tuple:
    """`guava-33.3.1-android.jar` -> (33, 3, 1)."""
    rest = os.path.basename(jar)[len(_artifact_name(jar)) + 1:]
    digits = rest.split("-")[0].split(".")
    return tuple(int(d) if d.isdigit() else 0 for d in digits)


def _fetch_job_server(kind: str) -> None:
    jar = job_server_jar(kind)
    if os.path.exists(jar):
        return
    folder = os.path.dirname(jar)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "pom.xml"), "w") as f:
        # The job server logs through slf4j; Beam's shaded jar binds it to
        # java.util.logging (Spark's jars bring a binding of their own).
        logging = "" if kind == "spark" else (
            "\n    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-jdk14</artifactId>"
            "<version>1.7.30</version></dependency>")
        f.write(POM.format(artifact=RUNNER_ARTIFACT[kind], version=BEAM_JAVA, logging=logging))
    lib = os.path.join(folder, "lib")
    result = _run("mvn", "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
                  f"-DoutputDirectory={lib}", cwd=folder, check=False)
    if result.returncode:
        raise SystemExit(f"mvn could not fetch {RUNNER_ARTIFACT[kind]}:{BEAM_JAVA}: "
                         f"{(result.stdout + result.stderr)[-1500:]}")
    entries = [os.path.join("lib", name) for name in sorted(os.listdir(lib))]
    if kind == "spark":
        # Spark is the cluster's (`provided` in Beam's runner): its jars join
        # the Class-Path, and of a library both bring, the newer version is
        # kept, as Gradle resolves Beam's own shaded job server (Spark's
        # guava 14 cannot serve Beam's gRPC; Beam's slf4j 1.7 not Spark 3.5).
        jars = os.path.join(engine_home("spark"), "jars")
        spark = {_artifact_name(n): os.path.relpath(os.path.join(jars, n), folder) for n in os.listdir(jars)}
        beam = {_artifact_name(e): e for e in entries}
        for name in set(spark) & set(beam):
            older = min((beam[name], spark[name]), key=_version)
            (beam if older == beam[name] else spark).pop(name)
        entries = sorted(beam.values()) + sorted(spark.values())
    with zipfile.ZipFile(jar + ".part", "w") as out:
        out.writestr("META-INF/MANIFEST.MF", _manifest(MAIN_CLASS[kind], entries))
    os.rename(jar + ".part", jar)


def spark_conf() -> dict:
    """The settings of Spark's driver, in Beam's Spark job server:

    - the address it gives executors is one they reach (SPARK_LOCAL_IP, set
      beside these);
    - a job waits for every worker's executor before it starts (else a small
      job runs on whichever registers first);
    - a task starts on any free executor at once (`spark.locality.wait=0s`):
      each stage of a Beam job reads its input from the previous stage's
      shuffle, and Spark would hold every task of it for up to 3 s for the
      executor that wrote most of that output, so a small job's tasks all
      ran on one worker while the other stayed idle;
    - as the Flink cluster here runs without a restart strategy, a job fails
      at a task's first failure (Spark's 4 attempts would each wait up to 3
      minutes for an SDK worker that cannot start);
    - executors put Beam's guava before Spark's guava 14: Beam's Google Cloud
      Storage support (gcsio, loaded by Beam's filesystem registrars) needs
      guava 32 or newer and fails the first task on each executor otherwise
      (NoSuchMethodError in GoogleCloudStorageReadOptions). The jars must be
      at that path on every worker (here the hosts share the file system).
    """
    lib = os.path.join(os.path.dirname(job_server_jar("spark")), "lib")
    guava = sorted(n for n in os.listdir(lib) if n.startswith(("guava-", "failureaccess-")))
    return {"spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
            "spark.locality.wait": "0s",
            "spark.task.maxFailures": "1",
            "spark.executor.extraClassPath": os.pathsep.join(os.path.join(lib, n) for n in guava)}


def fetch(kind: str) -> None:
    """Downloads the engine and builds its job server jar, once (kept in CACHE)."""
    _fetch_engine(kind)
    _fetch_job_server(kind)


class Hosts:
    """Network namespaces on one bridge; the machine's namespace is the client (.1)."""

    def __init__(self, name: str, roles: list):
        if not (name.isalnum() and len(name) <= 10):
            raise ValueError(f"a cluster name is at most 10 letters or digits. Received: {name!r}")
        self.name, self.roles = name, roles
        subnet = f"10.78.{SUBNET.get(name, sum(map(ord, name)) % 200 + 20)}"
        self.bridge, self.veth = f"br-{name}", f"{name}-v"
        self.gateway = f"{subnet}.1"
        self.address = {role: f"{subnet}.{i + 2}" for i, role in enumerate(roles)}
        self.namespace = {role: f"np-{name}-{role}" for role in roles}

    def up(self) -> None:
        self.down()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        names = "\n".join(f"{self.address[r]} {r}.{self.name}.normpipe.test" for r in self.roles)
        client = f"{self.gateway} client.{self.name}.normpipe.test {socket.gethostname()}"
        for i, role in enumerate(self.roles):
            ns, outer, inner = self.namespace[role], f"{self.veth}{i}", "eth0"
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
            _run("ip", "link", "set", outer, "master", self.bridge)
            _run("ip", "link", "set", outer, "up")
            for cmd in (("ip", "addr", "add", f"{self.address[role]}/24", "dev", inner),
                        ("ip", "link", "set", inner, "up"), ("ip", "link", "set", "lo", "up"),
                        ("ip", "route", "add", "default", "via", self.gateway)):
                _run("ip", "netns", "exec", ns, *cmd)
            # `ip netns exec` mounts /etc/netns/NS/hosts over /etc/hosts: each
            # host knows the others by name, and the machine's own name is the
            # client's address (where Spark's driver runs).
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as f:
                f.write(f"127.0.0.1 localhost\n{names}\n{client}\n")

    def down(self) -> None:
        """Kills every process of these hosts, then removes their links and namespaces."""
        pids = []
        for role in self.roles:
            pids += _run("ip", "netns", "pids", self.namespace[role], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for i, role in enumerate(self.roles):
            _run("ip", "link", "del", f"{self.veth}{i}", check=False)
            _run("ip", "netns", "del", self.namespace[role], check=False)
            shutil.rmtree(f"/etc/netns/{self.namespace[role]}", ignore_errors=True)
        _run("ip", "link", "del", self.bridge, check=False)

    def start(self, role: str, args: list, log: str, env: dict) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(["ip", "netns", "exec", self.namespace[role], *args], stdout=out,
                                    stderr=subprocess.STDOUT, cwd="/", env=env, start_new_session=True)


def _env(extra: dict) -> dict:
    """The daemons' environment: normpipe's Python first on PATH (worker pools start `python`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLINK_CONF_DIR", "SPARK_HOME")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("JAVA_HOME", os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("java")))))
    env.update(extra)
    return env


def _flink_conf(folder: str, jobmanager: str, host: str) -> str:
    """A FLINK_CONF_DIR for one host: Flink's own files, addresses set for a cluster."""
    conf = os.path.join(folder, "conf")
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(os.path.join(engine_home("flink"), "conf"), conf)
    settings = {
        "jobmanager.rpc.address": jobmanager, "jobmanager.bind-host": "0.0.0.0",
        "rest.address": jobmanager, "rest.bind-address": "0.0.0.0",
        "taskmanager.host": host, "taskmanager.bind-host": "0.0.0.0",
        "taskmanager.numberOfTaskSlots": "1", "jobmanager.memory.process.size": "1024m",
        "taskmanager.memory.process.size": "2048m",
        "taskmanager.memory.network.min": "512m", "taskmanager.memory.network.max": "512m", "parallelism.default": "1",
        "heartbeat.timeout": "20000", "restart-strategy.type": "none",
    }
    with open(os.path.join(conf, "config.yaml")) as f:
        lines = f.read().splitlines()
    # Flink's config.yaml is nested YAML and also reads flat dotted keys:
    # keep its `env:` block (the JVM flags Flink needs on Java 17) and set
    # the rest flat.
    kept, inside = [], False
    for line in lines:
        if line and not line[0].isspace() and not line.startswith("#"):
            inside = line.startswith("env:")
        if inside:
            kept.append(line)
    with open(os.path.join(conf, "config.yaml"), "w") as f:
        f.write("\n".join(kept) + "\n" + "".join(f"{k}: {v}\n" for k, v in settings.items()))
    return conf


def _wait_port(address: str, port: int, proc, log: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log}: exited {proc.returncode}: {open(log).read()[-2000:]}")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing listens on {address}:{port} after {timeout:g} s: {open(log).read()[-2000:]}")


def _wait_registered(url: str, key, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if key(json.load(response)) >= count:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url}: fewer than {count} workers registered after {timeout:g} s")


class Cluster:
    """A running cluster: its hosts, processes, logs and the flags that reach it."""

    def __init__(self, kind: str, workers: int = 2, name: str | None = None, folder: str | None = None):
        self.kind, self.workers = kind, workers
        self.workers_names = [f"worker{i + 1}" for i in range(workers)]
        self.hosts = Hosts(name or kind, ["master", *self.workers_names])
        self.folder = folder or os.path.join(CACHE, f"run-{name or kind}")
        self.procs, self.logs = {}, {}

    @property
    def master(self) -> str:
        return self.hosts.address["master"]

    def _start(self, name: str, role: str, args: list, env: dict):
        log = os.path.join(self.folder, f"{name}.log")
        self.logs[name] = log
        self.procs[name] = self.hosts.start(role, args, log, env)
        return self.procs[name], log

    def start(self) -> "Cluster":
        fetch(self.kind)
        os.makedirs(self.folder, exist_ok=True)
        self.hosts.up()
        try:
            self._start_daemons()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daemons(self) -> None:
        for worker in self.workers_names:
            self.start_pool(worker)
        home = engine_home(self.kind)
        if self.kind == "flink":
            conf = _flink_conf(os.path.join(self.folder, "master"), self.master, self.master)
            env = _env({"FLINK_CONF_DIR": conf, "FLINK_LOG_DIR": os.path.join(self.folder, "master")})
            proc, log = self._start("jobmanager", "master",
                                    [os.path.join(home, "bin", "jobmanager.sh"), "start-foreground"], env)
            _wait_port(self.master, 8081, proc, log)
        else:
            env = _env({"SPARK_HOME": home, "SPARK_LOG_DIR": self.folder, "SPARK_NO_DAEMONIZE": "1"})
            proc, log = self._start("master", "master", [os.path.join(home, "bin", "spark-class"),
                                                         "org.apache.spark.deploy.master.Master", "--host",
                                                         self.master, "--port", "7077", "--webui-port", "8080"], env)
            _wait_port(self.master, 7077, proc, log)
        for worker in self.workers_names:
            self.start_worker(worker, wait=False)
        self._wait_workers()
        for worker in self.workers_names:
            _wait_port(self.hosts.address[worker], POOL_PORT, self.procs[f"{worker}-pool"],
                       self.logs[f"{worker}-pool"])

    def start_pool(self, worker: str, port: int = POOL_PORT, env: dict | None = None, name: str = "pool"):
        """Beam's SDK worker pool on `worker`'s host, from normpipe's Python;
        `env` adds to its environment. Returns its log's path."""
        proc, log = self._start(f"{worker}-{name}", worker, ["python", "-m",
                                                            "apache_beam.runners.worker.worker_pool_main",
                                                            f"--service_port={port}"], _env(env or {}))
        if port != POOL_PORT:
            _wait_port(self.hosts.address[worker], port, proc, log)
        return log

    def start_worker(self, worker: str, wait: bool = True) -> None:
        """Starts (or starts again) the TaskManager or Spark worker on `worker`'s host."""
        home, folder = engine_home(self.kind), os.path.join(self.folder, worker)
        os.makedirs(folder, exist_ok=True)
        if self.kind == "flink":
            conf = _flink_conf(folder, self.master, self.hosts.address[worker])
            env = _env({"FLINK_CONF_DIR": conf, "FLINK_LOG_DIR": folder})
            self._start(worker, worker, [os.path.join(home, "bin", "taskmanager.sh"), "start-foreground"], env)
        else:
            env = _env({"SPARK_HOME": home, "SPARK_LOG_DIR": folder, "SPARK_NO_DAEMONIZE": "1"})
            self._start(worker, worker, [os.path.join(home, "bin", "spark-class"),
                                         "org.apache.spark.deploy.worker.Worker", "--host",
                                         self.hosts.address[worker], "--cores", "1", "--memory", "2g",
                                         "--work-dir", folder, f"spark://{self.master}:7077"], env)
        if wait:
            self._wait_workers()

    def _wait_workers(self) -> None:
        if self.kind == "flink":
            _wait_registered(f"http://{self.master}:8081/taskmanagers", lambda d: len(d["taskmanagers"]),
                             self.workers)
        else:
            _wait_registered(f"http://{self.master}:8080/json/",
                             lambda d: sum(w["state"] == "ALIVE" for w in d["workers"]), self.workers)

    def beam_flags(self) -> list:
        """The flags that run a normpipe command on this cluster."""
        common = ["--environment_type=EXTERNAL", f"--environment_config=localhost:{POOL_PORT}"]
        if self.kind == "flink":
            return ["--runner=FlinkRunner", f"--flink_master={self.master}:8081",
                    f"--flink_job_server_jar={job_server_jar('flink')}", f"--parallelism={self.workers}",
                    *common]
        return ["--runner=SparkRunner", f"--spark_master_url=spark://{self.master}:7077",
                f"--spark_job_server_jar={job_server_jar('spark')}", *common]

    def client_env(self) -> dict:
        """Extra environment of the normpipe process, for Spark's driver (in
        Beam's job server, a JVM that normpipe starts). SparkConf reads
        `spark.*` system properties, which JAVA_TOOL_OPTIONS sets for that
        JVM; see spark_conf for what they are and why."""
        if self.kind != "spark":
            return {}
        return {"SPARK_LOCAL_IP": self.hosts.gateway,
                "JAVA_TOOL_OPTIONS": " ".join(f"-D{key}={value}" for key, value in spark_conf().items())}

    def pool_log(self, worker: str) -> str:
        with open(self.logs[f"{worker}-pool"]) as f:
            return f.read()

    def kill_worker(self, worker: str) -> None:
        """Kills one TaskManager or Spark worker (its whole process group)."""
        os.killpg(self.procs[worker].pid, signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.hosts.down()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fetch", "start", "stop"])
    parser.add_argument("kind", choices=["flink", "spark"])
    parser.add_argument("--workers", type=int, default=2, help="TaskManagers or Spark workers (default 2)")
    parser.add_argument("--name", help="the cluster's name (default: its kind); clusters of other names run "
                        "side by side")
    args = parser.parse_args(argv)
    if args.action == "fetch":
        fetch(args.kind)
        print(f"{args.kind}: {engine_home(args.kind)}\njob server: {job_server_jar(args.kind)}")
        return 0
    cluster = Cluster(args.kind, args.workers, name=args.name)
    if args.action == "stop":
        cluster.hosts.down()
        return 0
    cluster.start()
    print(f"{args.kind} cluster up; logs in {cluster.folder}")
    print("pass normpipe these flags:\n  " + " ".join(cluster.beam_flags()))
    if cluster.client_env():
        print("in the environment of normpipe's process:")
    for key, value in cluster.client_env().items():
        print(f"  export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
