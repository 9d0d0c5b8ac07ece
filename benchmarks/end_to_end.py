"""`normpipe run` end to end against `normpipe stats` and a Keras user's script.

For each --sizes row count, on one seeded synthetic CSV (the 8 mixed-scale
features of synthetic_data.py plus a label they predict), each as a whole
process (spawn to exit, peak RSS by measure.py), in this order:

  stats     normpipe stats --input F --output-dir D --label label
  run       normpipe run   --input F --output-dir D --label label   (4 variants)
  run_one   normpipe run   ... --no-all-variants                    (tft only)
  keras     peers/keras_train.py: pandas read_csv, Normalization.adapt, the
            same model, epochs and batch size (the one `run` chose), export

`run` trains the exported variant (tft) on every training row for --epochs
and the variants trained only for the comparison on the first
--comparison-rows training rows per epoch (normpipe's default, 1M).

Targets (PASS/FAIL, exit status 0 only if all pass):
  run <= 4x stats at every size, with every variant trained and evaluated
  (beside it the floor: the Keras script's fit alone, over stats)
  peak RSS of run at the largest size <= 1.25x at the smallest
  run_one <= 1.5x keras at every size of FIXED_COST_ROWS rows or more; below
  it the script prints instead the fixed cost normpipe adds (its Beam +
  tf.Transform stage, the comparison, the verify process)

Usage: python benchmarks/end_to_end.py [--quick] [--sizes 1000000,5000000,20000000]
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import measure
import synthetic_data

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
NORMPIPE = shutil.which("normpipe", path=VENV_BIN) or shutil.which("normpipe") or "normpipe"
LABEL = synthetic_data.LABEL
TARGET_RUN_OVER_STATS = 4.0
TARGET_RSS_RATIO = 1.25
TARGET_RUN_OVER_KERAS = 1.5
# Below this many rows `run --no-all-variants` against the Keras script is
# its fixed cost, printed as such rather than held to a ratio.
FIXED_COST_ROWS = 5_000_000
VARIANTS = ("tft", "constant", "learned", "batch")



def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=measure.parse_sizes, help="row counts (default 1000000,5000000; --quick: 50000,250000)")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 epoch")
    p.add_argument("--epochs", type=int, help="epochs for run and the peer (default 5; --quick: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"), help="generated CSVs and outputs (git-ignored)")
    p.add_argument("--keep-data", action="store_true", help="keep the CSVs this run generated")
    p.add_argument("--results", help="default benchmarks/results/end_to_end.json (_quick.json with --quick)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before one run is killed")
    return p


def log(message):
    print(message, flush=True)



def _measured(cmd, what, args):
    run = measure.run_measured(cmd, timeout=args.timeout)
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} exited {run.returncode}:\n{tail}")
    return run


def _figures(run):
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb, "tree_rss_mb": run.tree_rss_mb,
            "other_cpu_s": run.other_cpu_s}


def run_normpipe(path, rows, out, args, extra=()):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [NORMPIPE, "run", "--input", path, "--output-dir", out, "--label", LABEL, "--model-name", "e2e",
           "--epochs", str(args.epochs), *extra]
    try:
        run = _measured(cmd, "normpipe run" + "".join(" " + e for e in extra), args)
        with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
            document = json.load(f)
        with open(os.path.join(out, "model", "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {**_figures(run), "rows": rows, "stages_s": document["timings_s"], "total_s": document["total_s"],
            "verified": document["verified"], "metrics": metrics}


def run_stats(path, rows, out, args):
    shutil.rmtree(out, ignore_errors=True)
    try:
        run = _measured([NORMPIPE, "stats", "--input", path, "--output-dir", out, "--label", LABEL], "normpipe stats", args)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {**_figures(run), "rows": rows}


def run_keras(path, rows, out, batch_size, args):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, os.path.join(HERE, "peers", "keras_train.py"), path, LABEL, str(args.epochs),
           str(batch_size), out]
    try:
        run = _measured(cmd, "peers/keras_train.py", args)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    line = json.loads(run.stdout.strip().splitlines()[-1])
    return {**_figures(run), "rows": rows, "batch_size": batch_size, "mae": line["mae"], "seconds": line["seconds"]}


def measure_size(rows, args):
    path = synthetic_data.ensure_labelled_csv(args.data_dir, rows, args.seed)
    out = os.path.join(args.data_dir, "out", f"end_to_end_{rows}")
    measure.warm_page_cache(path)
    result = {"rows": rows, "csv_mb": os.path.getsize(path) / (1 << 20)}
    result["stats"] = run_stats(path, rows, out, args)
    log(f"  {rows:>11,} stats   {result['stats']['wall_s']:7.1f} s  peak RSS {result['stats']['peak_rss_mb']:6.0f} MB")
    result["run"] = run_normpipe(path, rows, out, args)
    log(f"  {rows:>11,} run     {result['run']['wall_s']:7.1f} s  peak RSS {result['run']['peak_rss_mb']:6.0f} MB  "
        f"stages {result['run']['stages_s']}")
    result["run_one"] = run_normpipe(path, rows, out, args, ("--no-all-variants",))
    log(f"  {rows:>11,} run_one {result['run_one']['wall_s']:7.1f} s  peak RSS {result['run_one']['peak_rss_mb']:6.0f} MB  "
        f"stages {result['run_one']['stages_s']}")
    batch_size = result["run_one"]["metrics"]["batch_size"]
    result["keras"] = run_keras(path, rows, out, batch_size, args)
    log(f"  {rows:>11,} keras   {result['keras']['wall_s']:7.1f} s  peak RSS {result['keras']['peak_rss_mb']:6.0f} MB  "
        f"phases {result['keras']['seconds']}")
    return result


def every_variant_evaluated(metrics) -> bool:
    large = f"batch_{metrics['eval_batch_size']}"
    variants = metrics["variants"]
    return set(variants) == set(VARIANTS) and all(
        variants[v][large][variants[v]["metric"]] is not None and variants[v][large]["rows"] > 0
        and variants[v]["batch_1"]["rows"] > 0 for v in VARIANTS)


def targets(results):
    out = []
    for r in results:
        ratio = r["run"]["wall_s"] / r["stats"]["wall_s"]
        evaluated = every_variant_evaluated(r["run"]["metrics"])
        floor = training_floor(r)
        floor_ratio = floor / r["stats"]["wall_s"]
        out.append({"target": f"run <= {TARGET_RUN_OVER_STATS:g}x stats at {_rows(r['rows'])}, every variant trained "
                              "and evaluated", "value": ratio, "pass": ratio <= TARGET_RUN_OVER_STATS and evaluated,
                    "floor_over_stats": floor_ratio,
                    "shown": f"{r['run']['wall_s']:.1f} s / {r['stats']['wall_s']:.1f} s = {ratio:.2f}x; "
                             f"variants evaluated: {'all 4' if evaluated else 'NOT all'}; floor: the exported "
                             f"model's training alone (the Keras script's fit, {floor:.1f} s) is "
                             f"{floor_ratio:.2f}x stats"})
    small, large = results[0]["run"], results[-1]["run"]
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    out.append({"target": f"peak RSS of run at {_rows(results[-1]['rows'])} <= {TARGET_RSS_RATIO:g}x at "
                          f"{_rows(results[0]['rows'])}", "value": ratio, "pass": ratio <= TARGET_RSS_RATIO,
                "shown": f"{large['peak_rss_mb']:.0f} MB / {small['peak_rss_mb']:.0f} MB = {ratio:.2f}x"})
    for r in results:
        if r["rows"] < FIXED_COST_ROWS:
            continue
        ratio = r["run_one"]["wall_s"] / r["keras"]["wall_s"]
        out.append({"target": f"run --no-all-variants <= {TARGET_RUN_OVER_KERAS:g}x the Keras script at {_rows(r['rows'])}",
                    "value": ratio, "pass": ratio <= TARGET_RUN_OVER_KERAS,
                    "shown": f"{r['run_one']['wall_s']:.1f} s / {r['keras']['wall_s']:.1f} s = {ratio:.2f}x"})
    return out


def training_floor(r) -> float:
    """Seconds no `run` can go below: the exported variant trains on every
    training row for --epochs, and the Keras script's `fit` of the same
    model, epochs and batch size on in-memory arrays is that training alone."""
    return r["keras"]["seconds"]["fit"]


def fixed_cost(r) -> dict:
    """What `run --no-all-variants` spends that the Keras script does not:
    its Beam + tf.Transform stage, the comparison and the verify process."""
    stages = r["run_one"]["stages_s"]
    parts = {"beam_and_tf_transform_s": stages["statistics+transform"], "compare_s": stages["compare"],
             "verify_s": stages["verify"]}
    return {**parts, "total_s": round(sum(parts.values()), 2), "run_one_s": r["run_one"]["wall_s"],
            "keras_s": r["keras"]["wall_s"]}


def fixed_cost_line(r) -> str:
    f = fixed_cost(r)
    return (f"{_rows(r['rows'])}: fixed cost normpipe adds over the Keras script: Beam + tf.Transform "
            f"{f['beam_and_tf_transform_s']:.1f} s, compare {f['compare_s']:.1f} s, verify {f['verify_s']:.1f} s "
            f"= {f['total_s']:.1f} s (run --no-all-variants {f['run_one_s']:.1f} s, Keras script {f['keras_s']:.1f} s)")


def budget_line(r) -> str:
    m = r["run"]["metrics"]
    rows = ", ".join(f"{v} {m['variants'][v]['train_rows']:,}" for v in VARIANTS)
    return f"{_rows(r['rows'])}: training rows per epoch (--comparison-rows {m.get('comparison_rows')}): {rows}"


def _rows(n):
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def stage_table(results):
    """Markdown: one row per stage of `run` (from run.json), seconds and rows/s per size."""
    head = "| stage | " + " | ".join(f"{_rows(r['rows'])} s | {_rows(r['rows'])} rows/s" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(results))]
    stages = list(results[0]["run"]["stages_s"])

    def cells(seconds, rows):
        return f"{seconds:.1f} | {rows / seconds:,.0f}"

    for stage in stages:
        lines.append(f"| {stage} | " + " | ".join(cells(r["run"]["stages_s"][stage], r["rows"]) for r in results) + " |")
    rows = [("`normpipe run` (process, 4 variants)", "run"), ("`normpipe stats` (process)", "stats"),
            ("`normpipe run --no-all-variants` (process)", "run_one"), ("Keras script (process, 1 variant)", "keras")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(cells(r[key]["wall_s"], r["rows"]) for r in results) + " |")
    lines.append("| peak RSS of `run` (MB) | " + " | ".join(f"{r['run']['peak_rss_mb']:,.0f} | -" for r in results) + " |")
    return "\n".join(lines)


def metrics_table(results):
    """Markdown: each variant's MAE at batch 1 and at 4096 beside the baseline, per size."""
    lines = ["| rows | " + " | ".join(("baseline",) + VARIANTS) + " |", "|---|" + "---:|" * (1 + len(VARIANTS))]
    for r in results:
        m = r["run"]["metrics"]
        large = f"batch_{m['eval_batch_size']}"
        base = m["baseline"]
        cells = [f"{base['batch_1']['mae']:.3f} / {base[large]['mae']:.3f}"]
        for v in VARIANTS:
            small, big = m["variants"][v]["batch_1"]["mae"], m["variants"][v][large]["mae"]
            cells.append(f"{'NaN' if small is None else f'{small:.3f}'} / {'NaN' if big is None else f'{big:.3f}'}")
        lines.append(f"| {_rows(r['rows'])} (batch {m['batch_size']}) | " + " | ".join(cells) + " |")
    lines.append("| Keras script MAE at batch 4096 | " + ", ".join(
        f"{_rows(r['rows'])}: {r['keras']['mae']:.3f}" for r in results) + " |" + " |" * len(VARIANTS))
    return "\n".join(lines)


def environment(args):
    return {"sizes": args.sizes, "epochs": args.epochs, "seed": args.seed, "quick": args.quick,
            "rss_tool": measure.rss_tool(), "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.sizes = args.sizes or ([50_000, 250_000] if args.quick else [1_000_000, 5_000_000])
    args.epochs = args.epochs or (1 if args.quick else 5)
    args.results = args.results or os.path.join(HERE, "results", f"end_to_end{'_quick' if args.quick else ''}.json")
    log(f"normpipe run vs stats vs a Keras script: sizes {', '.join(f'{n:,}' for n in args.sizes)}, "
        f"{args.epochs} epochs; peak RSS by {measure.rss_tool()}")
    created = [synthetic_data.labelled_csv_path(args.data_dir, n, args.seed) for n in args.sizes
               if not os.path.exists(synthetic_data.labelled_csv_path(args.data_dir, n, args.seed))]
    try:
        results = [measure_size(rows, args) for rows in args.sizes]
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"end_to_end: {exc}", file=sys.stderr)
        return 1
    finally:
        for path in created if not args.keep_data else ():
            if os.path.exists(path):
                os.remove(path)
    document = {"config": environment(args), "sizes": results, "targets": targets(results),
                "fixed_cost": {str(r["rows"]): fixed_cost(r) for r in results if r["rows"] < FIXED_COST_ROWS},
                "stage_table": stage_table(results), "metrics_table": metrics_table(results)}
    print("\n" + document["stage_table"] + "\n")
    for r in results:
        print(f"{_rows(r['rows'])}: run / stats = {r['run']['wall_s'] / r['stats']['wall_s']:.2f}x, "
              f"run --no-all-variants / Keras script = {r['run_one']['wall_s'] / r['keras']['wall_s']:.2f}x")
        print(budget_line(r))
        if r["rows"] < FIXED_COST_ROWS:
            print(fixed_cost_line(r))
    print("\nMAE on held-out rows, batch size 1 (fixed sample) / batch size 4096 (all eval rows):\n")
    print(document["metrics_table"] + "\n")
    for t in document["targets"]:
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['shown']}")
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
    print(f"\nwrote {os.path.relpath(args.results)}")
    return 0 if all(t["pass"] for t in document["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
