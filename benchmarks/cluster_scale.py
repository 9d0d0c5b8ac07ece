"""What a Flink or Spark cluster costs `normpipe stats` and `normpipe transform`, per run and per row.

Runs each command as a whole process (the `normpipe` console script, spawn to
exit) on seeded synthetic CSVs of two sizes n1 < n2 (the 8 features of
synthetic_data.py plus a `label` column, which `transform --label` keeps out
of the normalization), on:

  DirectRunner          no runner flags: normpipe's default
  Flink, 1 and 2 TMs    clusters.Cluster("flink", workers=N): one slot per TaskManager, --parallelism=N
  Spark, 1 and 2        clusters.Cluster("spark", workers=N): one core per worker

One cluster at a time: start it, run every command and size on it, stop it.
Every daemon of a cluster runs on a host of its own (a network namespace) of
THIS machine, so the figures show what a cluster adds to each run (job
submission, Beam's job server starting in a JVM, SDK workers starting and
importing TensorFlow), not a speed-up. A user plans with

  marginal rate = (n2 - n1) / (t2 - t1)          rows/s once the run is going
  fixed cost    = t1 - n1 * (t2 - t1) / (n2 - n1)  seconds every run pays
  t(n)         ~= fixed cost + n / marginal rate

Before the timed sizes, each command runs once on --probe-rows rows (10,000 by
default): it warms the cluster and the page cache, and its time is the fixed
cost measured rather than extrapolated. Each cluster run also records how many
SDK workers each worker host's pool started ("Starting worker" in its log),
to show that every TaskManager or Spark worker did work.

A failed run is recorded with normpipe's error lines and the cluster logs'
OutOfMemoryError, ERROR and `Caused by` lines; that command's larger sizes are
skipped on that setup, and the exit status is 1. A JVM thread that runs out of
heap can leave its job waiting forever: the job is cancelled through the
master's REST API OOM_GRACE_S after an OutOfMemoryError appears in the logs.
`--report RESULTS` redoes the fits and tables of a results JSON without
running anything.

Usage: python benchmarks/cluster_scale.py [--quick] [--sizes 1000000,5000000] [--setups direct,flink1,...]
"""

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import clusters
import measure
import synthetic_data

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_BIN = os.path.dirname(sys.executable)
NORMPIPE = shutil.which("normpipe", path=VENV_BIN) or shutil.which("normpipe") or "normpipe"
COMMANDS = ("stats", "transform")
# "[normpipe  56.2s] statistics: 20,000 rows analyzed in 56.1s"; transform: "analyzed and transformed in"
_PIPELINE_TIME = re.compile(r"rows analyzed(?: and transformed)? in ([\d.]+)s")
POOL_STARTED = "Starting worker"
_ERROR_LINE = re.compile(r"Exception|Error|ERROR|SEVERE|Caused by")
OOM = "java.lang.OutOfMemoryError"
# A JVM thread that runs out of heap (a TaskManager's gRPC data plane, say)
# dies alone: the job then waits forever. The run's job is cancelled this
# long after the first OutOfMemoryError in the cluster's logs.
OOM_GRACE_S = 60


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where the commands run: DirectRunner (kind None) or a cluster of `workers` workers."""

    key: str
    runner: str
    kind: str | None
    workers: int
    name: str | None  # the cluster's name: never "flink" or "spark", which the tests use


SETUPS = {
    s.key: s
    for s in (
        Setup("direct", "DirectRunner", None, 1, None),
        Setup("flink1", "Flink", "flink", 1, "benchf1"),
        Setup("flink2", "Flink", "flink", 2, "benchf2"),
        Setup("spark1", "Spark", "spark", 1, "benchs1"),
        Setup("spark2", "Spark", "spark", 2, "benchs2"),
    )
}


def _setups(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"setups are {', '.join(SETUPS)}. Received: {text!r}")
    return names


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=measure.parse_sizes, help="row counts (default 1000000,5000000; --quick: 100000,300000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 100k and 300k rows")
    p.add_argument("--setups", type=_setups, default=list(SETUPS), help=f"subset of {','.join(SETUPS)}")
    p.add_argument("--probe-rows", type=int, default=10_000,
                   help="rows of the first, warming run of each command on each setup (0: none; default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", help="CSVs and outputs (default: a new temporary directory, removed afterwards)")
    p.add_argument("--results", help="results JSON (default benchmarks/results/cluster_scale[_quick].json)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before one run is killed")
    p.add_argument("--report", metavar="RESULTS", help="run nothing: redo the fits and tables of a results JSON")
    return p


def finish_args(args):
    args.sizes = args.sizes or ([100_000, 300_000] if args.quick else [1_000_000, 5_000_000])
    name = "cluster_scale_quick.json" if args.quick else "cluster_scale.json"
    args.results = args.results or os.path.join(HERE, "results", name)
    return args


# ---------------------------------------------------------------- running


def command_line(command, csv, out_dir, cluster):
    cmd = [NORMPIPE, command, "--input", csv, "--output-dir", out_dir]
    if command == "transform":
        cmd += ["--label", synthetic_data.LABEL]
    return cmd + (cluster.beam_flags() if cluster else [])


def pool_starts(cluster):
    """{worker host: SDK workers its pool has started so far}, or None on DirectRunner."""
    if cluster is None:
        return None
    return {w: cluster.pool_log(w).count(POOL_STARTED) for w in cluster.workers_names}


class LogWatch(threading.Thread):
    """What a cluster's daemons log during one run (every `*.log` and Spark executor `stderr` under
    its folder); cancels the cluster's jobs OOM_GRACE_S after a JVM logs an OutOfMemoryError."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.text, self.cancelled = cluster, "", []
        self._offsets = {path: os.path.getsize(path) for path in self._files()}
        self._done = threading.Event()

    def _files(self):
        for folder, _, names in os.walk(self.cluster.folder):
            yield from (os.path.join(folder, n) for n in names if n.endswith(".log") or n == "stderr")

    def _read_new(self):
        for path in self._files():
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(self._offsets.get(path, 0))
                self.text += f.read()
                self._offsets[path] = f.tell()

    def run(self):
        oom_at = None
        while not self._done.wait(5):
            self._read_new()
            if oom_at is None and OOM in self.text:
                oom_at = time.monotonic()
            if oom_at is not None and not self.cancelled and time.monotonic() - oom_at > OOM_GRACE_S:
                try:
                    self.cancelled = cancel_jobs(self.cluster)
                except (OSError, ValueError, KeyError) as exc:
                    self.cancelled = [f"cancelling failed: {exc}"]

    def stop(self):
        self._done.set()
        self.join()
        self._read_new()

    def errors(self, limit=12):
        """The OutOfMemoryError lines first, then other ERROR and `Caused by` lines."""
        lines = self.text.splitlines()
        ooms = [line for line in lines if OOM in line]
        others = [line for line in lines if re.search(r"\bERROR\b|^Caused by", line)
                  and OOM not in line and "cuda" not in line]  # TensorFlow finding no GPU
        return _unique(ooms + others)[:limit]


def _http(url, method="GET", data=None):
    request = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response) if method == "GET" else None


def cancel_jobs(cluster):
    """Cancels the cluster's running jobs through its master's REST API; the ids cancelled."""
    master = cluster.master
    if cluster.kind == "flink":
        jobs = [j["jid"] for j in _http(f"http://{master}:8081/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
        for jid in jobs:
            _http(f"http://{master}:8081/jobs/{jid}?mode=cancel", method="PATCH")
    else:
        jobs = [a["id"] for a in _http(f"http://{master}:8080/json/")["activeapps"]]
        for app in jobs:
            _http(f"http://{master}:8080/app/kill/", method="POST", data=f"id={app}&terminate=true".encode())
    log(f"  {OOM} in the cluster's logs: cancelled {', '.join(jobs) or 'no running job'}")
    return jobs or ["none running"]


def _cluster_side(watch):
    if watch is None:
        return ""
    cancelled = f"\njob cancelled by the benchmark after {OOM}: {watch.cancelled}" if watch.cancelled else ""
    return cancelled + "\ncluster logs:\n" + "\n".join(watch.errors())


def run_one(command, csv, rows, cluster, args):
    """One command on one CSV, a whole process; raises RuntimeError with the stderr tail (and the
    cluster's error lines) if it fails."""
    out_dir = os.path.join(args.work_dir, "out", command)
    shutil.rmtree(out_dir, ignore_errors=True)
    env = {**os.environ, **(cluster.client_env() if cluster else {})}
    before, watch = pool_starts(cluster), LogWatch(cluster) if cluster else None
    if watch:
        watch.start()
    try:
        run = measure.run_measured(command_line(command, csv, out_dir, cluster), env=env, timeout=args.timeout)
        failed = None if run.returncode == 0 else f"exited {run.returncode}:\n{failure_text(run.stderr)}"
    except subprocess.TimeoutExpired:
        failed = f"killed after {args.timeout:g} s"
    finally:
        if watch:
            watch.stop()
    after = pool_starts(cluster)
    shutil.rmtree(out_dir, ignore_errors=True)
    if failed:
        raise RuntimeError(f"normpipe {command} on {rows:,} rows {failed}{_cluster_side(watch)}")
    match = _PIPELINE_TIME.search(run.stderr)
    started = {w: after[w] - before[w] for w in after} if cluster else None
    return {
        "command": command, "rows": rows, "wall_s": run.wall_s, "rows_per_s": rows / run.wall_s,
        "pipeline_s": float(match.group(1)) if match else None,
        "client_cpu_s": run.cpu_s, "other_cpu_s": run.other_cpu_s, "loadavg_1m": os.getloadavg()[0],
        "client_peak_rss_mb": run.peak_rss_mb, "client_tree_rss_mb": run.tree_rss_mb,
        "sdk_workers_started": started, "oom_in_cluster_logs": OOM in watch.text if watch else None,
        "every_worker_did_work": all(n > 0 for n in started.values()) if cluster else None,
    }


def failure_text(stderr):
    """The error lines of a failed run (a job server's own come before Python's traceback), then its tail."""
    lines = [line for line in stderr.strip().splitlines() if "cuda" not in line]  # TensorFlow finding no GPU
    errors = [line for line in lines if _ERROR_LINE.search(line) and not line.startswith(" ")]
    return "\n".join(_unique(errors)[:15] + ["..."] + lines[-12:])


def _unique(lines, width=400):
    """The lines in order, each once, each cut to `width` characters."""
    return list(dict.fromkeys(line[:width] for line in lines))


def failure_reason(error):
    """One line for the table: the first OutOfMemoryError, normpipe's error line, or the first line."""
    lines = error.splitlines()
    oom = next((line for line in lines if line.startswith(OOM)), None)  # a cluster log's own line
    if oom:
        return oom.split(". ")[0] + " (in the cluster's logs)"
    for marker in ("normpipe: error", "killed after"):
        found = next((line for line in lines if marker in line), None)
        if found:
            return found.strip()[:200]
    return lines[0][:200]


def _log_run(setup, r):
    used = "" if r["sdk_workers_started"] is None else "  SDK workers started " + ", ".join(
        f"{w} {n}" for w, n in r["sdk_workers_started"].items())
    log(f"  {setup.key:<7} {r['command']:<9} {r['rows']:>10,} rows: {r['wall_s']:7.1f} s  "
        f"{r['rows_per_s']:>9,.0f} rows/s  load {r['loadavg_1m']:.1f}{used}")


def measure_setup(setup, csvs, args):
    """Every command and size on one setup: the cluster started for it and stopped after."""
    result = {"runner": setup.runner, "workers": setup.workers, "cluster": setup.name, "runs": [], "errors": {}}
    cluster = None
    try:
        if setup.kind:
            start = time.perf_counter()
            cluster = clusters.Cluster(setup.kind, workers=setup.workers, name=setup.name).start()
            result["cluster_start_s"] = time.perf_counter() - start
            log(f"{setup.key}: {setup.runner} cluster {setup.name!r} with {setup.workers} worker(s) "
                f"up in {result['cluster_start_s']:.1f} s; flags {' '.join(cluster.beam_flags())}")
        for rows, csv, probe in csvs:
            for command in COMMANDS:
                if command in result["errors"]:  # its larger sizes would fail alike
                    continue
                try:
                    run = run_one(command, csv, rows, cluster, args)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    log(f"  {setup.key} {command} FAILED: {exc}")
                    result["errors"][command] = str(exc)
                    continue
                run["probe"] = probe
                result["runs"].append(run)
                _log_run(setup, run)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"{setup.key}: cluster FAILED: {exc}")
        result["errors"]["cluster"] = str(exc)
    finally:
        if cluster:
            cluster.stop()
    return result


def fit(runs):
    """{marginal rows/s, fixed s, from_rows: [n1, n2]} from the smallest and largest timed size that ran,
    or, with one of them left, from the first (probe) run and it; None without two sizes or when
    t2 <= t1 (noise larger than the work)."""
    timed = sorted((r["rows"], r["wall_s"]) for r in runs if not r["probe"])
    probe = [(r["rows"], r["wall_s"]) for r in runs if r["probe"]]
    points = [timed[0], timed[-1]] if len(timed) > 1 else probe + timed
    if len(points) < 2 or points[1][1] <= points[0][1]:
        return None
    (n1, t1), (n2, t2) = points
    return {"marginal_rows_per_s": (n2 - n1) / (t2 - t1), "fixed_s": t1 - n1 * (t2 - t1) / (n2 - n1),
            "from_rows": [n1, n2]}


def add_fits(results):
    """Each setup's per-command marginal rate and fixed cost, and the fixed cost over DirectRunner's."""
    for result in results.values():
        result["fits"] = {}
        for command in COMMANDS:
            runs = [r for r in result["runs"] if r["command"] == command]
            found = fit(runs) or {"marginal_rows_per_s": None, "fixed_s": None, "from_rows": None}
            probe = next((r["wall_s"] for r in runs if r["probe"]), None)
            result["fits"][command] = {**found, "probe_s": probe}
    direct = results.get("direct", {}).get("fits", {})
    for result in results.values():
        for command, f in result["fits"].items():
            base = direct.get(command, {}).get("fixed_s")
            f["fixed_over_direct_s"] = None if base is None or f["fixed_s"] is None else f["fixed_s"] - base


# ---------------------------------------------------------------- reporting


def log(message):
    print(message, flush=True)


def _rows(n):
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def _num(value, fmt):
    return "n/a" if value is None else format(value, fmt)


def headline(config):
    load = f"load average {config['loadavg_at_start'][0]:.1f} at the start"
    if "loadavg_at_end" in config:
        load += f", {config['loadavg_at_end'][0]:.1f} at the end"
    return (f"ONE machine with {config['cpus']} CPUs, busy with other work at the same time ({load}): "
            "every cluster host is a network namespace "
            "of this machine, so these figures show what a cluster ADDS to each run (job submission, Beam's "
            "job server starting, SDK workers starting), not a speed-up. Plan with the fixed cost and the "
            "marginal rate: t(n) ~= fixed + n / marginal.")


def _workers_cell(run):
    started = run["sdk_workers_started"]
    return "-" if started is None else " / ".join(str(n) for n in started.values())


def runs_table(results):
    lines = ["| runner | workers | command | rows | seconds | rows/s | SDK workers started per worker |",
             "|---|---:|---|---:|---:|---:|---|"]
    for r in results.values():
        for run in r["runs"]:
            rows = f"{run['rows']:,}" + (" (first run)" if run["probe"] else "")
            lines.append(f"| {r['runner']} | {r['workers']} | {run['command']} | {rows} | {run['wall_s']:.1f} | "
                         f"{run['rows_per_s']:,.0f} | {_workers_cell(run)} |")
        for command, error in r["errors"].items():
            lines.append(f"| {r['runner']} | {r['workers']} | {command} | FAILED | | | {failure_reason(error)} |")
    return "\n".join(lines)


def fits_table(results, sizes, probe_rows):
    span = f"{_rows(sizes[0])}-{_rows(sizes[-1])}"
    lines = [f"| runner | workers | command | fixed s | fixed over DirectRunner s | marginal rows/s | "
             f"fitted on | seconds at {probe_rows:,} rows | cluster start s |",
             "|---|---:|---|---:|---:|---:|---|---:|---:|"]
    for r in results.values():
        for command, f in r.get("fits", {}).items():
            pair = f["from_rows"] and "-".join(_rows(n) for n in f["from_rows"])
            on = "n/a" if not pair else pair if pair == span else f"{pair} (not {span}: a size failed)"
            lines.append(f"| {r['runner']} | {r['workers']} | {command} | {_num(f['fixed_s'], '.1f')} | "
                         f"{_num(f['fixed_over_direct_s'], '+.1f')} | {_num(f['marginal_rows_per_s'], ',.0f')} | "
                         f"{on} | {_num(f['probe_s'], '.1f')} | {_num(r.get('cluster_start_s'), '.1f')} |")
    return "\n".join(lines)


def figures(results):
    """throughput_report.py's shape: rows/s per setup and command; fixed and per-row time of each run."""
    lines, stages = {}, {}
    for r in results.values():
        for run in (x for x in r["runs"] if not x["probe"]):
            label = f"{r['runner']} {r['workers']}w {run['command']}"
            lines.setdefault(label, []).append([run["rows"], run["rows_per_s"]])
            fixed = r["fits"][run["command"]]["fixed_s"]
            if fixed is not None:
                stages[f"{label}\n{_rows(run['rows'])}"] = {
                    "fixed cost (estimated)": fixed, "rows": run["wall_s"] - fixed}
    return {"throughput": lines, "stages": stages}


def _git(*args):
    done = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def environment(args):
    import apache_beam  # pylint: disable=import-outside-toplevel

    return {
        "machine_note": "machine busy with other work (the test suite ran its own clusters at the same time)",
        "sizes": args.sizes, "probe_rows": args.probe_rows, "seed": args.seed, "setups": args.setups,
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "apache_beam": apache_beam.__version__, "beam_job_server": clusters.BEAM_JAVA,
        "flink": clusters.FLINK, "spark": clusters.SPARK,
        "git_head": _git("rev-parse", "HEAD"),
        "modified_at_start": _git("status", "--porcelain", "normpipe", "benchmarks/clusters.py").splitlines(),
        "loadavg_at_start": list(os.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write(results, args):
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


def prepare_csvs(args):
    """[(rows, path, is the probe)], the probe first; generated into the work directory."""
    sizes = ([(args.probe_rows, True)] if args.probe_rows else []) + [(n, False) for n in args.sizes]
    log(f"seeded CSVs ({', '.join(f'{n:,}' for n, _ in sizes)} rows) in {args.work_dir}")
    csvs = [(n, synthetic_data.ensure_labelled_csv(args.work_dir, n, args.seed), probe) for n, probe in sizes]
    for _, csv, _ in csvs:
        measure.warm_page_cache(csv)
    return csvs


def main(argv=None) -> int:
    args = finish_args(build_parser().parse_args(argv))
    if args.report:
        with open(args.report, encoding="utf-8") as f:
            doc = json.load(f)
        args.results = args.report
        return report(doc, args)
    own_dir = args.work_dir is None
    args.work_dir = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="cluster_scale-"))
    doc = {"config": environment(args), "setups": {}}
    log(headline(doc["config"]) + "\n")
    try:
        csvs = prepare_csvs(args)
        for key in args.setups:
            doc["setups"][key] = measure_setup(SETUPS[key], csvs, args)
            write(doc, args)  # what is done so far survives a later failure
    finally:
        if own_dir:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    doc["config"]["loadavg_at_end"] = list(os.getloadavg())
    return report(doc, args)


def report(doc, args):
    """Fits, tables and figures from the runs; printed and written to args.results. Exit status."""
    add_fits(doc["setups"])
    config = doc["config"]
    doc["headline"] = headline(config)
    doc["markdown"] = runs_table(doc["setups"]) + "\n\n" + fits_table(doc["setups"], config["sizes"],
                                                                      config["probe_rows"])
    doc["figures"] = figures(doc["setups"])
    log("\n" + doc["headline"] + "\n\n" + doc["markdown"])
    write(doc, args)
    log(f"\nwrote {os.path.relpath(args.results)}")
    failed = {k: list(r["errors"]) for k, r in doc["setups"].items() if r["errors"]}
    if failed:
        log(f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
