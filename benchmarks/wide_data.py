"""Wide data: `normpipe stats` and `normpipe run` on many columns x few
rows against few columns x many rows, the same number of cells.

Each case runs as a whole process (spawn to exit) on a seeded CSV of
standard-normal floats; the script prints the wall times, the pipeline's
own time from its progress line, each stage's time for `run`, and the ratio
wide / narrow per command. The target is that cost scales with the number
of cells, not with columns squared: ratio <= 3 for each command.

Usage: python benchmarks/wide_data.py [--wide 5000x1000] [--narrow 50x100000] [--command stats|run|both]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

VENV_BIN = os.path.dirname(sys.executable)
NORMPIPE = shutil.which("normpipe", path=VENV_BIN) or shutil.which("normpipe") or "normpipe"
TARGET_RATIO = 3.0
# "[normpipe   9.4s] statistics: 5,000 rows analyzed in 9.0s"
_PIPELINE_TIME = re.compile(r"rows analyzed(?: and transformed)? in ([\d.]+)s")
# "[normpipe  42.9s] stage compare: done in 13.2s"
_STAGE_TIME = re.compile(r"stage (\S+): done in ([\d.]+)s")


def shape(text):
    columns, rows = (int(v) for v in text.lower().split("x"))
    return columns, rows


def write_csv(path, columns, rows, seed=0):
    values = np.random.default_rng(seed).normal(size=(rows, columns))
    with open(path, "w", encoding="ascii") as f:
        f.write(",".join(f"c{j}" for j in range(columns)) + "\n")
        np.savetxt(f, values, delimiter=",", fmt="%.9g")


def run_case(command, path, out, timeout):
    start = time.perf_counter()
    result = subprocess.run([NORMPIPE, command, "--input", path, "--output-dir", out], capture_output=True,
                            text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{command} on {path} failed:\n{result.stderr[-2000:]}")
    match = _PIPELINE_TIME.search(result.stderr)
    stages = {name: float(seconds) for name, seconds in _STAGE_TIME.findall(result.stderr)}
    return wall, float(match.group(1)) if match else None, stages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wide", type=shape, default=(5000, 1000), help="COLUMNSxROWS (default 5000x1000)")
    parser.add_argument("--narrow", type=shape, default=(50, 100000), help="COLUMNSxROWS (default 50x100000)")
    parser.add_argument("--command", choices=("stats", "run", "both"), default="both")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    commands = ("stats", "run") if args.command == "both" else (args.command,)
    times, failed = {}, False
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, (columns, rows) in (("narrow", args.narrow), ("wide", args.wide)):
            paths[name] = os.path.join(tmp, f"{name}.csv")
            write_csv(paths[name], columns, rows)
        for command in commands:
            for name, (columns, rows) in (("narrow", args.narrow), ("wide", args.wide)):
                wall, pipeline, stages = run_case(command, paths[name], os.path.join(tmp, f"out-{command}-{name}"),
                                                  args.timeout)
                times[command, name] = wall
                print(f"{command:<5} {name:<7} {columns:>6,} columns x {rows:>7,} rows = {columns * rows:>10,} cells: "
                      f"{wall:8.1f} s process"
                      + (f", {pipeline:.1f} s pipeline" if pipeline is not None else "")
                      + ("".join(f"; {stage} {seconds:.1f} s" for stage, seconds in stages.items())), flush=True)
            ratio = times[command, "wide"] / times[command, "narrow"]
            verdict = "pass" if ratio <= TARGET_RATIO else "FAIL"
            failed = failed or ratio > TARGET_RATIO
            print(f"{command}: ratio wide / narrow: {ratio:.2f}x (target <= {TARGET_RATIO:g}x: {verdict})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
