"""`normpipe compare` at scale: wall time and flat memory from 250k to 1M rows.

Runs `normpipe compare --method both` as a whole process (spawn to exit) on
seeded synthetic CSVs of each --sizes row count (8 float features on mixed
scales, some empty cells; see synthetic_data.py), then once more at the
largest size with --no-materialize. Peak RSS is the largest single process
(`/usr/bin/time -v` "Maximum resident set size"; see measure.py); tree RSS
sums the sampled process tree.

A streaming pipeline keeps memory flat while rows grow, so

  RSS ratio = peak RSS(n) / peak RSS(smallest n)      ~1 when memory is flat

Targets: the largest size finishes in < 5 minutes; its peak RSS is < 1.3x the
smallest size's. See benchmarks/README.md.

Usage: python benchmarks/compare_scale.py [--sizes 250000,1000000] [--method both]
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

import measure
import synthetic_data

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
NORMPIPE = shutil.which("normpipe", path=VENV_BIN) or shutil.which("normpipe") or "normpipe"
TARGET_WALL_S = 300.0
TARGET_RSS_RATIO = 1.3
# "[normpipe   4.8s] transform: 50,000 rows analyzed and transformed in 4.7s"
_STAGE = re.compile(r"\] (transform|compare): .* in ([\d.]+)s")



def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=measure.parse_sizes, default=[250_000, 1_000_000], help="row counts (default 250000,1000000)")
    p.add_argument("--method", choices=("zscore", "minmax", "both"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"), help="generated CSVs and outputs (git-ignored)")
    p.add_argument("--keep-data", action="store_true", help="keep the CSVs this run generated")
    p.add_argument("--results", default=os.path.join(HERE, "results", "compare_scale.json"))
    p.add_argument("--timeout", type=float, default=1800, help="seconds before one run is killed")
    return p


# ---------------------------------------------------------------- running



def _dir_mb(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total / (1 << 20)


def stage_times(stderr):
    """Seconds per stage from normpipe's progress lines: {'transform': s, 'compare': s}."""
    return {m.group(1): float(m.group(2)) for m in _STAGE.finditer(stderr)}


def run_compare(path, rows, materialize, args):
    tag = f"compare_scale_{rows}" + ("" if materialize else "_nomat")
    out_dir = os.path.join(args.data_dir, "out", tag)
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [NORMPIPE, "compare", "--input", path, "--output-dir", out_dir, "--method", args.method]
    if not materialize:
        cmd.append("--no-materialize")
    measure.warm_page_cache(path)
    try:
        run = measure.run_measured(cmd, timeout=args.timeout)
        if run.returncode != 0:
            tail = "\n".join(run.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"normpipe compare on {path} exited {run.returncode}:\n{tail}")
        with open(os.path.join(out_dir, "statistics.json"), encoding="utf-8") as f:
            num_examples = json.load(f)["num_examples"]
        output_mb = _dir_mb(out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "rows": rows,
        "materialize": materialize,
        "num_examples": num_examples,
        "wall_s": run.wall_s,
        "rows_per_s": rows / run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "tree_rss_mb": run.tree_rss_mb,
        "stages_s": stage_times(run.stderr),
        "output_mb": output_mb,
    }


def measure_all(args):
    """One run per size (materialized), then the largest size with --no-materialize."""
    plan = [(n, True) for n in args.sizes] + [(args.sizes[-1], False)]
    created, runs = [], []
    try:
        for rows, materialize in plan:
            path = synthetic_data.csv_path(args.data_dir, rows, args.seed)
            if not os.path.exists(path):
                created.append(path)
            path = synthetic_data.ensure_csv(args.data_dir, rows, args.seed)
            run = run_compare(path, rows, materialize, args)
            runs.append(run)
            log(f"  {rows:>11,} rows{'' if materialize else ' --no-materialize'}: {run['wall_s']:7.1f} s  "
                f"peak RSS {run['peak_rss_mb']:6.0f} MB  tree {run['tree_rss_mb']:6.0f} MB  stages {run['stages_s']}")
    finally:
        for path in created if not args.keep_data else ():
            for suffix in ("", ".ref.json"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
    return runs


def log(message):
    print(message, flush=True)


# ---------------------------------------------------------------- reporting


def _rows(n):
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def _label(run):
    return _rows(run["rows"]) + ("" if run["materialize"] else " --no-materialize")


def add_ratios(runs):
    """peak and tree RSS of each run over the smallest materialized run's."""
    base = runs[0]
    for run in runs:
        run["rss_ratio"] = run["peak_rss_mb"] / base["peak_rss_mb"]
        run["tree_rss_ratio"] = run["tree_rss_mb"] / base["tree_rss_mb"]
        run["rows_ratio"] = run["rows"] / base["rows"]


def targets(runs):
    small, large = runs[0], next(r for r in reversed(runs) if r["materialize"])
    wall, ratio = large["wall_s"], large["rss_ratio"]
    return [
        {"target": f"{_rows(large['rows'])} rows finish in < 5 min", "value": wall,
         "pass": wall < TARGET_WALL_S, "shown": f"{wall:.1f} s"},
        {"target": f"peak RSS at {_rows(large['rows'])} < {TARGET_RSS_RATIO:g}x peak RSS at {_rows(small['rows'])}",
         "value": ratio, "pass": ratio < TARGET_RSS_RATIO,
         "shown": f"{large['peak_rss_mb']:.0f} MB / {small['peak_rss_mb']:.0f} MB = {ratio:.2f}x"},
    ]


def table(runs):
    head = ("| run | rows | wall (s) | rows/s | peak RSS (MB) | RSS ratio | tree RSS (MB) | "
            "transform stage (s) | compare stage (s) | output (MB) |")
    lines = [head, "|" + "---|" * 10]
    for r in runs:
        s = r["stages_s"]
        lines.append(
            f"| {_label(r)} | {r['rows']:,} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_ratio']:.2f}x (rows {r['rows_ratio']:g}x) | {r['tree_rss_mb']:.0f} | "
            f"{s.get('transform', float('nan')):.1f} | {s.get('compare', float('nan')):.1f} | {r['output_mb']:.0f} |"
        )
    return "\n".join(lines)


def environment(args):
    return {
        "sizes": args.sizes,
        "method": args.method,
        "seed": args.seed,
        "rss_tool": measure.rss_tool(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    log(f"normpipe compare --method {args.method}: sizes {', '.join(f'{n:,}' for n in args.sizes)}, "
        f"then {args.sizes[-1]:,} with --no-materialize; peak RSS by {measure.rss_tool()}")
    try:
        runs = measure_all(args)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"compare_scale: {exc}", file=sys.stderr)
        return 1
    add_ratios(runs)
    results = {"config": environment(args), "runs": runs, "targets": targets(runs), "markdown": table(runs)}
    print("\n" + results["markdown"] + "\n")
    for t in results["targets"]:
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['shown']}")
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {os.path.relpath(args.results)}")
    return 0 if all(t["pass"] for t in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
