"""Throughput, memory and accuracy of `normpipe stats` against its peers.

Every method runs as a whole process (spawn to exit, median of --repeats) on
seeded synthetic CSVs of two sizes n1 < n2, so that

  marginal throughput = (n2 - n1) / (t2 - t1)      rows/s, start-up excluded
  fixed cost          = t1 - n1 / marginal          t(0), the extrapolated intercept

Methods: normpipe (console script, DirectRunner, 1 worker), normpipe with
`--direct_running_mode=multi_processing --direct_num_workers=2`, normpipe on
the same rows as Parquet (converted before the timed run), pandas
(pyarrow engine), Keras 3 `Normalization.adapt` on tf.data, and tf.Transform
`AnalyzeDataset` over tfx-bsl `CsvTFXIO` (slow: its own --slow-peer-sizes).
Accuracy: relative error of mean and std of the 1e6-offset column against
numpy float64 on the same values. See benchmarks/README.md.

Usage: python benchmarks/stats_throughput.py [--quick] [--with-20m] [--methods normpipe,pandas]
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time

import measure
import synthetic_data
import throughput_report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_BIN = os.path.dirname(sys.executable)
NORMPIPE = shutil.which("normpipe", path=VENV_BIN) or shutil.which("normpipe") or "normpipe"
TAXI_CSV = os.path.join(ROOT, "data", "chicago_taxi_15k.csv")
MP_FLAGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
SIZE_20M = 20_000_000
# normpipe's progress line: "[normpipe   9.4s] statistics: 5,000,000 rows analyzed in 9.0s"
_PIPELINE_TIME = re.compile(r"rows analyzed in ([\d.]+)s")
# and where the time went:
# "time: parse 1.20s, convert 0.30s, analyze 0.40s (summed over workers); pipeline 2.50s wall, write 0.01s"
_STAGE_TIME = re.compile(r"(parse|convert|analyze|pipeline|write) ([\d.]+)s")
_STAGE_LINE = re.compile(r"\] time: (.*)$", re.MULTILINE)


def _peer(script, *args):
    return (sys.executable, os.path.join(HERE, "peers", script), *args)


# key: (label, command(csv, out_dir, opts), slow)
METHODS = {
    "normpipe": ("normpipe stats (1 worker)", lambda f, o, a: (NORMPIPE, "stats", "--input", f, "--output-dir", o), False),
    "normpipe_mp": (
        "normpipe stats (2 workers, multi_processing)",
        lambda f, o, a: (NORMPIPE, "stats", "--input", f, "--output-dir", o, *MP_FLAGS),
        False,
    ),
    "normpipe_parquet": (
        "normpipe stats on Parquet (1 worker)",
        lambda f, o, a: (NORMPIPE, "stats", "--input", synthetic_data.ensure_parquet(f), "--output-dir", o),
        False,
    ),
    "duckdb": ("DuckDB read_csv + avg/stddev_pop/min/max", lambda f, o, a: _peer("duckdb_stats.py", f), False),
    "polars": ("Polars scan_csv + mean/std/min/max", lambda f, o, a: _peer("polars_stats.py", f), False),
    "pandas": ("pandas read_csv(pyarrow) + stats", lambda f, o, a: _peer("pandas_stats.py", f), False),
    "keras": (
        "Keras 3 Normalization.adapt (tf.data)",
        lambda f, o, a: _peer("keras_adapt.py", f, str(a.keras_batch_size)),
        False,
    ),
    "tft": ("tf.Transform AnalyzeDataset on CsvTFXIO", lambda f, o, a: _peer("tft_csvtfxio.py", f, o), True),
}



def _methods(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"methods are {', '.join(METHODS)}. Received: {text!r}")
    return names


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=measure.parse_sizes, help="row counts (default 1000000,5000000; --quick: 200000,1000000)")
    p.add_argument(
        "--slow-peer-sizes", type=measure.parse_sizes,
        help="row counts for tft (default 200000,1000000; --quick: 50000,200000)",
    )
    p.add_argument("--repeats", type=int, help="runs per method and size, median reported (default 3; --quick: 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per method at its smallest size first (default 1)")
    p.add_argument("--methods", type=_methods, default=list(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repeat")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--with-20m", dest="with_20m", action="store_true",
                   help="also run normpipe (1 and 2 workers) on 20M rows: memory and the default against 2 workers "
                        "(default, except with --quick)")
    g.add_argument("--skip-20m", dest="with_20m", action="store_false", help="skip the 20M runs")
    p.set_defaults(with_20m=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keras-batch-size", type=int, default=65536)
    p.add_argument("--data-dir", default=os.path.join(HERE, "data"), help="generated CSVs (git-ignored)")
    p.add_argument("--keep-data", action="store_true", help="keep the 20M CSV (about 1.5 GB) after the run")
    p.add_argument("--results", help="results JSON (default benchmarks/results/stats_throughput[_quick].json)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before one run is killed")
    return p


def finish_args(args):
    quick = args.quick
    args.sizes = args.sizes or ([200_000, 1_000_000] if quick else [1_000_000, 5_000_000])
    args.slow_peer_sizes = args.slow_peer_sizes or ([50_000, 200_000] if quick else [200_000, 1_000_000])
    args.repeats = args.repeats or (1 if quick else 3)
    if args.with_20m is None:
        args.with_20m = not quick
    name = "stats_throughput_quick.json" if quick else "stats_throughput.json"
    args.results = args.results or os.path.join(HERE, "results", name)
    return args



def collect_figures(key, run, out_dir):
    """The method's statistics: statistics.json for normpipe, the last stdout JSON line for a peer."""
    if key.startswith("normpipe"):
        with open(os.path.join(out_dir, "statistics.json"), encoding="utf-8") as f:
            doc = json.load(f)
        return {"num_examples": doc["num_examples"], "features": doc["features"]}
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def run_once(key, path, args):
    out_dir = os.path.join(args.data_dir, "out", f"{key}_{os.path.basename(path)[:-4]}")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    run = measure.run_measured(list(METHODS[key][1](path, out_dir, args)), timeout=args.timeout)
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{key} on {path} exited {run.returncode}:\n{tail}")
    figures = collect_figures(key, run, out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    return run, figures


def pipeline_seconds(run):
    """normpipe's own "analyzed in" time (pipeline build, run and read-back), if printed."""
    match = _PIPELINE_TIME.search(run.stderr)
    return float(match.group(1)) if match else None


def stage_seconds(run):
    """normpipe's "time:" line as {parse, convert, analyze, pipeline, write: s}, or None."""
    match = _STAGE_LINE.search(run.stderr)
    return {k: float(v) for k, v in _STAGE_TIME.findall(match.group(1))} if match else None


def _median_stages(runs):
    found = [stage_seconds(r) for r in runs]
    if None in found:
        return None
    return {k: statistics.median(f[k] for f in found) for k in found[0]}


def _log_run(key, rows, i, repeats, run):
    log(f"  {key:<16} {rows:>11,} rows  run {i + 1}/{repeats}: {run.wall_s:7.2f} s  cpu {run.cpu_s:6.2f} s  "
        f"peak RSS {run.peak_rss_mb:6.0f} MB  tree RSS {run.tree_rss_mb:6.0f} MB  PSS {run.tree_pss_mb:6.0f} MB  "
        f"major faults {run.major_faults}  other work {run.other_cpu_s:5.2f} cpu-s  load {os.getloadavg()[0]:.1f}")


def size_result(rows, runs, figures, path):
    """One method's figures at one size from its runs."""
    inside = [pipeline_seconds(r) for r in runs]
    return {
        "rows": rows,
        "times_s": [r.wall_s for r in runs],
        "cpu_s": [r.cpu_s for r in runs],
        "major_faults": [r.major_faults for r in runs],
        "other_cpu_s": [r.other_cpu_s for r in runs],
        "pipeline_s": statistics.median(inside) if None not in inside else None,
        "stage_s": _median_stages(runs),
        "loadavg_1m": os.getloadavg()[0],
        "median_s": statistics.median(r.wall_s for r in runs),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "tree_rss_mb": max(r.tree_rss_mb for r in runs),
        "tree_pss_mb": max(r.tree_pss_mb for r in runs),
        "accuracy": accuracy(figures, synthetic_data.load_reference(path)),
        "num_examples": figures.get("num_examples"),
    }


def measure_size(key, rows, repeats, args):
    """One method at one size, `repeats` runs in a row (the 20M runs)."""
    path = synthetic_data.ensure_csv(args.data_dir, rows, args.seed)
    measure.warm_page_cache(path)
    runs, figures = [], None
    for i in range(repeats):
        run, figures = run_once(key, path, args)
        runs.append(run)
        _log_run(key, rows, i, repeats, run)
    return size_result(rows, runs, figures, path)


def fit_line(points):
    """(marginal rows/s, fixed cost s) from the smallest and largest size."""
    (n1, t1), (n2, t2) = points[0], points[-1]
    if t2 <= t1:  # noise larger than the work: no estimate
        return None, None
    marginal = (n2 - n1) / (t2 - t1)
    return marginal, t1 - n1 / marginal


def sizes_of(key, args):
    return args.slow_peer_sizes if METHODS[key][2] else args.sizes


def measure_methods(keys, args):
    """Every method at each of its sizes, alternated: for each size and
    repeat, one run of each method in turn, so that load on the machine
    falls on all of them alike and their ratios come from the same minutes."""
    failed, runs, figures = {}, {k: {} for k in keys}, {k: {} for k in keys}
    for key in keys:  # page in each method's libraries and the data
        log(f"{METHODS[key][0]}: sizes {', '.join(f'{n:,}' for n in sizes_of(key, args))}, {args.repeats} repeat(s)")
        try:
            for _ in range(args.warmup):
                run_once(key, synthetic_data.ensure_csv(args.data_dir, sizes_of(key, args)[0], args.seed), args)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            log(f"  {key} FAILED: {exc}")
            failed[key] = str(exc)
    for rows in sorted({n for k in keys for n in sizes_of(k, args)}):
        path = synthetic_data.ensure_csv(args.data_dir, rows, args.seed)
        measure.warm_page_cache(path)
        for i in range(args.repeats):
            for key in [k for k in keys if rows in sizes_of(k, args) and k not in failed]:
                try:
                    run, figures[key][rows] = run_once(key, path, args)
                except (RuntimeError, OSError, ValueError, KeyError) as exc:
                    log(f"  {key} FAILED: {exc}")
                    failed[key] = str(exc)
                    continue
                runs[key].setdefault(rows, []).append(run)
                _log_run(key, rows, i, args.repeats, run)
    return {key: method_result(key, runs[key], figures[key], failed.get(key), args) for key in keys}


def method_result(key, runs, figures, error, args):
    label = METHODS[key][0]
    if error:
        return {"label": label, "error": error}
    per_size = [size_result(n, runs[n], figures[n], synthetic_data.csv_path(args.data_dir, n, args.seed))
                for n in sizes_of(key, args)]
    marginal, fixed = fit_line([(s["rows"], s["median_s"]) for s in per_size])
    return {"label": label, "sizes": per_size, "marginal_rows_per_s": marginal, "fixed_cost_s": fixed}


def accuracy(figures, reference):
    """Relative error of mean and std of the offset column vs numpy float64."""
    name = synthetic_data.OFFSET_FEATURE
    got, want = figures["features"][name], reference["features"][name]
    return {
        "feature": name,
        "mean": got["mean"],
        "std": got["std"],
        "mean_rel_err": abs(got["mean"] - want["mean"]) / abs(want["mean"]),
        "std_rel_err": abs(got["std"] - want["std"]) / abs(want["std"]),
    }


def measure_taxi(args):
    log(f"normpipe on {os.path.relpath(TAXI_CSV, ROOT)}: {args.repeats} repeat(s)")
    runs = []
    for _ in range(args.repeats):
        out_dir = os.path.join(args.data_dir, "out", "taxi")
        run = measure.run_measured([NORMPIPE, "stats", "--input", TAXI_CSV, "--output-dir", out_dir], timeout=args.timeout)
        shutil.rmtree(out_dir, ignore_errors=True)
        if run.returncode != 0:
            return {"error": run.stderr.strip().splitlines()[-1:]}
        runs.append(run)
    import_cmd = [sys.executable, "-c", "import normpipe.pipeline.stats"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    imports = statistics.median(measure.run_measured(import_cmd, env=env).wall_s for _ in range(args.repeats))
    beam_cmd = [sys.executable, "-c", "import apache_beam"]  # the floor: normpipe cannot start without Beam
    beam = statistics.median(measure.run_measured(beam_cmd).wall_s for _ in range(args.repeats))
    return {
        "python_and_apache_beam_s": beam,
        "median_s": statistics.median(r.wall_s for r in runs),
        "times_s": [r.wall_s for r in runs],
        "other_cpu_s": [r.other_cpu_s for r in runs],
        "stage_s": _median_stages(runs),
        "pipeline_s": statistics.median(pipeline_seconds(r) or 0.0 for r in runs),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "python_and_imports_s": imports,
    }


def measure_20m(args, keys):
    path = synthetic_data.ensure_csv(args.data_dir, SIZE_20M, args.seed)
    result = {}
    try:
        for key in keys:
            log(f"{METHODS[key][0]}: {SIZE_20M:,} rows, {args.repeats} run(s) (memory, the default against 2 workers)")
            result[key] = {"label": METHODS[key][0], **measure_size(key, SIZE_20M, args.repeats, args)}
    except RuntimeError as exc:
        log(f"  20M FAILED: {exc}")
        result["error"] = str(exc)
    finally:
        if not args.keep_data:
            for suffix in ("", ".ref.json"):
                os.remove(path + suffix)
    return result


def log(message):
    print(message, flush=True)


def _version(module):
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def environment(args):
    import numpy  # pylint: disable=import-outside-toplevel

    return {
        "loadavg_at_start": list(os.getloadavg()),
        "versions": {m: _version(m) for m in ("pyarrow", "duckdb", "polars", "pandas", "apache_beam")},
        "sizes": args.sizes,
        "slow_peer_sizes": args.slow_peer_sizes,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "keras_batch_size": args.keras_batch_size,
        "rss_tool": measure.rss_tool(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv=None) -> int:
    args = finish_args(build_parser().parse_args(argv))
    log(f"peak RSS via {measure.rss_tool()}; data in {args.data_dir}")
    results = {"config": environment(args), "methods": {}}
    results["methods"] = measure_methods(args.methods, args)
    if "normpipe" in args.methods:
        results["taxi"] = measure_taxi(args)
    if args.with_20m:
        results["20m"] = measure_20m(args, [k for k in ("normpipe", "normpipe_mp") if k in args.methods])
    results["config"]["loadavg_at_end"] = list(os.getloadavg())
    throughput_report.summarize(results)
    throughput_report.print_report(results)
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    log(f"\nwrote {args.results}")
    for picture in throughput_report.draw(args.results):
        log(f"wrote {picture}")
    return 0 if all(t["pass"] for t in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
