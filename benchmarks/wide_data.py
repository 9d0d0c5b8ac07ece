"""Wide data: `normpipe stats` and `normpipe run` on many columns x few
rows against few columns x many rows, the same number of cells.

Each case runs as a whole process (spawn to exit) on a seeded CSV of
standard-normal floats; the script prints the wall times, the pipeline's
own time from its progress line, each stage's time for `run`, and the ratio
wide / narrow per command. The target is that cost scales with the number
of cells, not with columns squared: ratio <= 3 for each command. After the
wide `run` (whose export has matrix signatures: more than 256 features), a
fresh process loads its export with the TF1 session loader, as TF Serving
and `normpipe verify` do, and the script prints the load time and each
signature's first request (the one that pays for Grappler's optimization of
its graph). The figures go to benchmarks/results/wide_data.json.

Usage: python benchmarks/wide_data.py [--wide 5000x1000] [--narrow 50x100000] [--command stats|run|both]
"""

import argparse
import json
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


HERE = os.path.dirname(os.path.abspath(__file__))
# Run in a fresh process: load an export as TF Serving does, then one first
# request per signature, each timed; prints one JSON line.
_LOAD_TIMING = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import tensorflow as tf
from normpipe.serving import verify
imported = time.perf_counter() - t0
version = sys.argv[1]
t0 = time.perf_counter()
server = verify.ServingSession(version)
load = time.perf_counter() - t0
sample, rows = verify.load_sample(version)
feed = verify._columns(sample, rows[:1])
example = tf.train.Example(features=tf.train.Features(feature={
    n: tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
    for n, v in zip(sample["features"], rows[0]) if not np.isnan(v)})).SerializeToString()
calls = {}
for name, definition in sorted(server.signatures.items()):
    if name.startswith("__"):
        continue  # __saved_model_init_op runs at load
    inputs = {k: (np.array([example], dtype=object) if v.dtype == tf.string.as_datatype_enum else None)
              for k, v in definition.inputs.items()}
    inputs = {k: (feed[k] if v is None else v) for k, v in inputs.items()}
    t0 = time.perf_counter()
    server.run(name, inputs)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    server.run(name, inputs)
    calls[name] = {"first_s": first, "second_s": time.perf_counter() - t0}
print(json.dumps({"import_s": imported, "load_s": load, "signatures": calls,
                  "serving_inputs": sample.get("serving_inputs", "named")}))
"""


def load_timing(version_dir, timeout):
    result = subprocess.run([sys.executable, "-c", _LOAD_TIMING, version_dir], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        sys.exit(f"loading {version_dir} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _version_dir(out):
    serving = os.path.join(out, "serving", "normpipe")
    return os.path.join(serving, max(os.listdir(serving), key=int))


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
    parser.add_argument("--results", default=os.path.join(HERE, "results", "wide_data.json"))
    args = parser.parse_args(argv)
    commands = ("stats", "run") if args.command == "both" else (args.command,)
    times, failed, figures = {}, False, {"cases": [], "targets": [], "loader": None}
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
                figures["cases"].append({"command": command, "shape": name, "columns": columns, "rows": rows,
                                         "wall_s": wall, "pipeline_s": pipeline, "stages_s": stages})
                if command == "run" and name == "wide":
                    figures["loader"] = load_timing(_version_dir(os.path.join(tmp, f"out-{command}-{name}")),
                                                    args.timeout)
                print(f"{command:<5} {name:<7} {columns:>6,} columns x {rows:>7,} rows = {columns * rows:>10,} cells: "
                      f"{wall:8.1f} s process"
                      + (f", {pipeline:.1f} s pipeline" if pipeline is not None else "")
                      + ("".join(f"; {stage} {seconds:.1f} s" for stage, seconds in stages.items())), flush=True)
            ratio = times[command, "wide"] / times[command, "narrow"]
            verdict = "pass" if ratio <= TARGET_RATIO else "FAIL"
            failed = failed or ratio > TARGET_RATIO
            print(f"{command}: ratio wide / narrow: {ratio:.2f}x (target <= {TARGET_RATIO:g}x: {verdict})", flush=True)
            figures["targets"].append({"target": f"{command} wide / narrow <= {TARGET_RATIO:g}x", "value": ratio,
                                       "pass": ratio <= TARGET_RATIO})
    loader = figures["loader"]
    if loader:
        print(f"TF Serving's loader (TF1 session loader, fresh process) on the wide export "
              f"({loader['serving_inputs']} inputs): import {loader['import_s']:.1f} s, load {loader['load_s']:.1f} s; "
              "first request / second: " + ", ".join(f"{n} {c['first_s']:.2f} s / {c['second_s'] * 1e3:.1f} ms"
                                                      for n, c in loader["signatures"].items()), flush=True)
    for t in figures["targets"]:
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['value']:.2f}x")
    figures["config"] = {"wide": args.wide, "narrow": args.narrow, "cpus": os.cpu_count(),
                         "loadavg_at_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2)
    print(f"wrote {os.path.relpath(args.results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
