"""Whole-process measurements: wall clock from spawn to exit, peak RSS, CPU time.

Peak RSS comes from GNU `/usr/bin/time -v` ("Maximum resident set size")
when it exists; otherwise from `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`
read by a fresh wrapper process whose only child is the measured command.
Either way it is the peak of the largest single process of the tree (the
kernel's maxrss of a reaped child is the max over it and its own reaped
children, not their sum). A sampler also sums the RSS of the whole process
tree every 0.2 s, which is what matters when a runner starts worker
processes; being sampled, it can miss a short spike, and it counts pages
shared between processes once per process. The same sampler sums the tree's
PSS (proportional set size, /proc/PID/smaps_rollup): a page shared by n
processes counts 1/n in each, so forked workers sharing their parent's
libraries are counted once; this is the tree's real footprint. CPU time (user + sys) and major
page faults of the tree come from the same rusage: a run whose wall time grew
while its CPU time did not was waiting, often on files paged out of memory.
`other_cpu_s` is the CPU time the rest of the machine used during the run
(/proc/stat busy time minus the run's own): other work competing for cores.
"""

import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

TIME_BIN = "/usr/bin/time"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write("Maximum resident set size (kbytes): %d\\n" % usage.ru_maxrss)
    f.write("User time (seconds): %.2f\\nSystem time (seconds): %.2f\\n" % (usage.ru_utime, usage.ru_stime))
    f.write("Major (requiring I/O) page faults: %d\\n" % usage.ru_majflt)
sys.exit(code)
"""


@dataclasses.dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    tree_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float = float("nan")
    major_faults: int = -1
    other_cpu_s: float = float("nan")
    tree_pss_mb: float = float("nan")


def rss_tool() -> str:
    return "/usr/bin/time -v" if os.access(TIME_BIN, os.X_OK) else "getrusage(RUSAGE_CHILDREN) wrapper"


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _tree_memory_bytes(root: int):
    """(sum of RSS, sum of PSS) over the process tree under `root`."""
    children, stack, rss, pss = _children_map(), [root], 0, 0
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                rss += int(f.read().split()[1]) * _PAGE
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                match = re.search(rb"^Pss:\s+(\d+) kB", f.read(), re.M)
            pss += int(match.group(1)) * 1024 if match else 0
        except (OSError, IndexError, ValueError):
            pass
    return rss, pss


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self._pid, self._interval = pid, interval
        self._done = threading.Event()
        self.peak = self.peak_pss = 0

    def run(self):
        while not self._done.is_set():
            rss, pss = _tree_memory_bytes(self._pid)
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            self._done.wait(self._interval)

    def stop(self):
        self._done.set()
        self.join()


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not iowait) since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # guest time is already in user
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _field(text: str, label: str) -> float:
    match = re.search(re.escape(label) + r": ([0-9.]+)", text)
    return float(match.group(1)) if match else float("nan")


def run_measured(cmd, env=None, timeout=None) -> Run:
    """Runs `cmd` to exit; wall clock, peak RSS (MB) and captured output."""
    fd, report = tempfile.mkstemp(prefix="rss-", suffix=".txt")
    os.close(fd)
    if os.access(TIME_BIN, os.X_OK):
        wrapped = [TIME_BIN, "-v", "-o", report, *cmd]
    else:
        wrapped = [sys.executable, "-c", _WRAPPER, report, *cmd]
    try:
        busy_before = _busy_cpu_s()
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the measured command and all it started
            proc.communicate()
            raise
        finally:
            wall = time.perf_counter() - start
            busy = _busy_cpu_s() - busy_before
            sampler.stop()
        with open(report, encoding="utf-8") as f:
            text = f.read()
    finally:
        os.unlink(report)
    cpu = _field(text, "User time (seconds)") + _field(text, "System time (seconds)")
    return Run(
        wall,
        _field(text, "Maximum resident set size (kbytes)") / 1024,
        sampler.peak / (1 << 20),
        proc.returncode,
        stdout,
        stderr,
        cpu_s=cpu,
        major_faults=int(_field(text, "Major (requiring I/O) page faults")),
        other_cpu_s=max(0.0, busy - cpu),
        tree_pss_mb=sampler.peak_pss / (1 << 20),
    )


def parse_sizes(text):
    """argparse type for --sizes: two or more distinct positive row counts, sorted."""
    import argparse  # pylint: disable=import-outside-toplevel

    try:
        sizes = sorted({int(float(v)) for v in text.split(",") if v.strip()})
    except ValueError:
        sizes = []
    if len(sizes) < 2 or sizes[0] <= 0:
        raise argparse.ArgumentTypeError(f"need two or more positive row counts. Received: {text!r}")
    return sizes


def warm_page_cache(path):
    """Reads a file once so that every measured run finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass
