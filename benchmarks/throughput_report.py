"""Summary, targets and markdown table of a stats_throughput.py run, and
the pictures of every benchmark's results.

`summarize(results)` adds "ratios" (normpipe's marginal throughput over each
peer's), "targets" (each with its value and PASS/FAIL) and "markdown" to the
results dict; `print_report(results)` prints them all.

`draw(path)` draws a results JSON (benchmarks/results/<name>.json) with
matplotlib into PNGs beside it (see `figures.py`); run as a script,

  python benchmarks/throughput_report.py [benchmarks/results/*.json]

it draws each file given, or every results file.
"""

import glob
import os
import statistics
import sys

import figures
import synthetic_data

TARGET_MARGINAL = 1_500_000
TARGET_RSS_MB = 1.5 * 1024
TARGET_TAXI_S = 3.5
# The statistics stage against the fastest single-machine engines (issue 24).
TARGET_SHARE_OF_POLARS = 0.5
TARGET_STD_REL_ERR = 1e-15
# The default uses the machine's cores (issue 24): one worker whose reader
# parses on every core (pyarrow's read_csv) must not be slower than two
# worker processes, the alternative, on the large input.
TARGET_DEFAULT_OVER_WORKERS = 1.0


def summarize(results):
    results["ratios"] = ratios(results["methods"])
    results["targets"] = targets(results)
    results["markdown"] = markdown_table(results)
    return results


def _rows(n):
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def _ok(methods, *keys):
    return all(k in methods and "error" not in methods[k] for k in keys)


def _largest(method):
    return method["sizes"][-1]


def _marginal(methods, key):
    return methods[key]["marginal_rows_per_s"] if _ok(methods, key) else None


def ratios(methods):
    """normpipe's marginal throughput over each peer's (normpipe_mp is compared by wall time)."""
    base = _marginal(methods, "normpipe")
    peers = {k: _marginal(methods, k) for k in methods if not k.startswith("normpipe")}
    return {k: base / m for k, m in peers.items() if base and m}


def _target(name, value, passed, shown):
    return {"target": name, "value": value, "pass": passed, "shown": shown}


def _throughput_targets(methods, ratio, big=None):
    out, m = [], _marginal(methods, "normpipe")
    if _ok(methods, "normpipe"):
        shown = f"{m:,.0f} rows/s" if m else "no estimate (t2 <= t1)"
        out.append(_target("normpipe marginal >= 1,500,000 rows/s", m, bool(m and m >= TARGET_MARGINAL), shown))
    for key, need in (("tft", 15.0), ("keras", 1.5)):
        if key in ratio:
            out.append(_target(f"normpipe >= {need:g}x {key} marginal", ratio[key], ratio[key] >= need, f"{ratio[key]:.2f}x"))
    if "polars" in ratio:
        r = ratio["polars"]
        out.append(_target(f"normpipe marginal >= {TARGET_SHARE_OF_POLARS:g}x Polars' (same run)", r,
                           r >= TARGET_SHARE_OF_POLARS, f"{r:.2f}x ({m:,.0f} vs {_marginal(methods, 'polars'):,.0f} rows/s)"))
    if "pandas" in ratio:
        r = 1 / ratio["pandas"]
        out.append(_target("pandas/normpipe marginal <= 3", r, r <= 3, f"{r:.2f}"))
    one_two = _pair_at_20m(methods, big)
    if one_two:
        one, two = one_two
        s = two["median_s"] / one["median_s"]
        cores = statistics.median(one["cpu_s"]) / one["median_s"] if one.get("cpu_s") else float("nan")
        out.append(_target(f"the default (1 worker, pyarrow's threads) uses the cores: at {_rows(one['rows'])} at least "
                           f"as fast as 2 worker processes (>= {TARGET_DEFAULT_OVER_WORKERS:g}x)", s,
                           s >= TARGET_DEFAULT_OVER_WORKERS,
                           f"{one['median_s']:.2f} s vs {two['median_s']:.2f} s = {s:.2f}x; the default's CPU time "
                           f"{cores:.2f}x its wall time"))
    return out


def _pair_at_20m(methods, big):
    """(1 worker, 2 workers) results at 20M rows, the large input the target
    is about; None without the 20M runs (the speed-ups at the measured sizes
    are still printed)."""
    if big and "normpipe" in big and "normpipe_mp" in big:
        return big["normpipe"], big["normpipe_mp"]
    return None


def _memory_targets(methods, big):
    """normpipe's peak RSS (largest process) and normpipe_mp's sampled tree RSS, largest size and 20M."""
    sized = [(m["label"], _largest(m)) for k, m in methods.items() if k.startswith("normpipe") and "error" not in m]
    sized += [(s["label"], s) for k, s in (big or {}).items() if k != "error"]
    out = []
    for label, size in sized:
        # Workers are separate processes: their tree's PSS (shared pages counted once).
        field, what = ("tree_pss_mb", "tree PSS") if "workers" in label else ("peak_rss_mb", "peak RSS")
        mb = size[field]
        out.append(_target(f"{label} {what} at {_rows(size['rows'])} < 1.5 GB", mb, mb < TARGET_RSS_MB, f"{mb:,.0f} MB"))
    return out


def targets(results):
    methods, out = results["methods"], []
    out += _throughput_targets(methods, results["ratios"], results.get("20m"))
    out += _memory_targets(methods, results.get("20m"))
    if _ok(methods, "normpipe"):
        err = _largest(methods["normpipe"])["accuracy"]["std_rel_err"]
        out.append(_target(f"normpipe std of {synthetic_data.OFFSET_FEATURE} within {TARGET_STD_REL_ERR:g} relative "
                           "(float64 exact)", err, err <= TARGET_STD_REL_ERR, f"{err:.1e}"))
    taxi = results.get("taxi", {})
    if "median_s" in taxi:
        t = taxi["median_s"]
        out.append(_target(f"normpipe on chicago_taxi_15k start to exit < {TARGET_TAXI_S:g} s (median)", t,
                           t < TARGET_TAXI_S, f"{t:.2f} s"))
    return out


def _num(x, fmt):
    return "n/a" if x is None else format(x, fmt)


def _sci(x):
    return f"{x:.1e}"


def markdown_table(results):
    head = ("| Method | sizes | median wall time (s) | fixed cost t(0) (s) | marginal (rows/s) | "
            "peak RSS (MB) | normpipe / method | mean rel. err | std rel. err |")
    lines = [head, "|" + "---|" * 9]
    for key, m in results["methods"].items():
        if "error" in m:
            lines.append(f"| {m['label']} | failed | | | | | | | |")
            continue
        sizes = " / ".join(_rows(s["rows"]) for s in m["sizes"])
        times = " / ".join(f"{s['median_s']:.2f}" for s in m["sizes"])
        rss = " / ".join(f"{s['peak_rss_mb']:.0f}" for s in m["sizes"])
        if key == "normpipe_mp":
            rss += " (tree PSS " + " / ".join(f"{s['tree_pss_mb']:.0f}" for s in m["sizes"]) + ")"
        ratio = (
            {"normpipe": "1", "normpipe_mp": "-", "normpipe_parquet": "-"}.get(key)
            or _num(results["ratios"].get(key), ".2f") + "x"
        )
        acc = _largest(m)["accuracy"]
        lines.append(
            f"| {m['label']} | {sizes} | {times} | {_num(m['fixed_cost_s'], '.2f')} | {_num(m['marginal_rows_per_s'], ',.0f')} | "
            f"{rss} | {ratio} | {_sci(acc['mean_rel_err'])} | {_sci(acc['std_rel_err'])} |"
        )
    return "\n".join(lines)


def print_report(results):
    methods = results["methods"]
    repeats = results["config"]["repeats"]
    print(f"\n== Per method (median of {repeats}; marginal and t(0) from smallest and largest size)")
    for m in methods.values():
        if "error" in m:
            print(f"{m['label']}: FAILED")
            continue
        print(f"{m['label']}")
        for s in m["sizes"]:
            print(f"  {s['rows']:>11,} rows: {s['median_s']:7.2f} s (cpu {statistics.median(s['cpu_s']):6.2f} s)"
                  f"   peak RSS {s['peak_rss_mb']:6.0f} MB   tree RSS {s['tree_rss_mb']:6.0f} MB"
                  f"   tree PSS {s['tree_pss_mb']:6.0f} MB")
        print(f"  fixed cost t(0) {_num(m['fixed_cost_s'], '.2f')} s   marginal {_num(m['marginal_rows_per_s'], ',.0f')} rows/s")
        inside = [s.get("pipeline_s") for s in m["sizes"]]
        if None not in inside:
            (n1, t1), (n2, t2) = (m["sizes"][0]["rows"], inside[0]), (m["sizes"][-1]["rows"], inside[-1])
            rate = f"{(n2 - n1) / (t2 - t1):,.0f} rows/s" if t2 > t1 else "n/a"
            print(f"  normpipe's own 'analyzed in' time: {' / '.join(f'{t:.2f}' for t in inside)} s; "
                  f"marginal on that clock {rate}")
    if _ok(methods, "tft"):
        sizes = ", ".join(_rows(s["rows"]) for s in methods["tft"]["sizes"])
        print(f"  (tf.Transform on CsvTFXIO is slow: measured at --slow-peer-sizes {sizes}; its marginal "
              "throughput still comes from two sizes in this run)")
    if _ok(methods, "normpipe", "normpipe_mp"):
        ups = [f"{_rows(a['rows'])}: {a['median_s'] / b['median_s']:.2f}x"
               for a, b in zip(methods["normpipe"]["sizes"], methods["normpipe_mp"]["sizes"])]
        one, two = _marginal(methods, "normpipe"), _marginal(methods, "normpipe_mp")
        m = f"{two / one:.2f}x" if one and two else "n/a"
        print(f"\n== 2 workers vs 1: wall-time speed-up {', '.join(ups)}; marginal-throughput ratio {m}")
    print("\n== normpipe marginal throughput / peer marginal throughput")
    for key, r in results["ratios"].items():
        print(f"  vs {methods[key]['label']}: {r:.2f}x")
    print(f"\n== Accuracy on {synthetic_data.OFFSET_FEATURE} (1e6 + N(0,1)), relative error vs numpy float64, largest size")
    for m in methods.values():
        if "error" not in m:
            a = _largest(m)["accuracy"]
            print(f"  {m['label']:<46} mean {_sci(a['mean_rel_err'])}   std {_sci(a['std_rel_err'])}   (std = {a['std']:.9g})")
    print_extras(results)
    print_stage_times(results)
    print_load(results)
    print("\n== Targets")
    for t in results["targets"]:
        print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['shown']}")
    print("\n== Markdown\n")
    print(results["markdown"])


def print_extras(results):
    taxi = results.get("taxi", {})
    if "median_s" in taxi:
        print(f"\n== normpipe on chicago_taxi_15k.csv (15,002 rows): {taxi['median_s']:.2f} s start to exit "
              f"(peak RSS {taxi['peak_rss_mb']:.0f} MB); python + `import normpipe.pipeline.stats` alone: "
              f"{taxi['python_and_imports_s']:.2f} s; `import apache_beam` alone: "
              f"{taxi.get('python_and_apache_beam_s', float('nan')):.2f} s; "
              f"normpipe's 'analyzed in': {taxi['pipeline_s']:.2f} s")
    big = results.get("20m") or {}
    for key, s in big.items():
        if key != "error":
            print(f"\n== 20M rows, {s['label']}: {s['median_s']:.2f} s (runs {', '.join(f'{t:.2f}' for t in s['times_s'])}), "
                  f"peak RSS {s['peak_rss_mb']:.0f} MB, tree RSS {s['tree_rss_mb']:.0f} MB, tree PSS {s['tree_pss_mb']:.0f} MB")
    if "normpipe" in big and "normpipe_mp" in big:
        print(f"\n== 2 workers vs 1 at 20M rows: wall-time speed-up "
              f"{big['normpipe']['median_s'] / big['normpipe_mp']['median_s']:.2f}x")


def print_load(results):
    config = results["config"]
    start, end = config.get("loadavg_at_start"), config.get("loadavg_at_end")
    if start and end:
        print(f"\n== Machine load ({config['cpus']} cores): 1-min load average {start[0]:.1f} at start, {end[0]:.1f} at end; "
              "each run's 'other work' (CPU-s used by the rest of the machine) is in the lines above")


def print_stage_times(results):
    rows = [(m["label"], s) for k, m in results["methods"].items() if k.startswith("normpipe") and "error" not in m
            for s in m["sizes"] if s.get("stage_s")]
    if not rows:
        return
    print("\n== Where normpipe's time goes (median; parse/convert/analyze are worker CPU-s inside the pipeline)")
    for label, s in rows:
        st = s["stage_s"]
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in st.items())
        print(f"  {label:<46} {_rows(s['rows']):>4}: {parts}; start-up, imports and exit "
              f"{s['median_s'] - st.get('pipeline', 0) - st.get('write', 0):.2f}s")


def draw(path):
    """PNGs of the results JSON at `path`; returns their paths."""
    return figures.draw(path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    here = os.path.dirname(os.path.abspath(__file__))
    for path in argv or sorted(glob.glob(os.path.join(here, "results", "*.json"))):
        for picture in draw(path):
            print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
