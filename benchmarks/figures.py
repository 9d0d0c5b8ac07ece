"""Pictures of the benchmarks' results, drawn with matplotlib.

Each benchmark writes benchmarks/results/<name>.json; `draw(path)` turns
one into two PNGs beside it:

  <name>_throughput.png   rows/s (rows / wall time, start-up included)
                          against rows, one line per method, log-log
  <name>_stages.png       where the time went, one stacked bar per
                          method and size

What is read from each file is `figures_of(name, results)`: a JSON with a
"figures" entry of that shape, {"throughput": {method: [[rows, rows_per_s],
...]}, "stages": {bar label: {stage: seconds}}}, is drawn as it is; the
results of stats_throughput.py, end_to_end.py and compare_scale.py are
read from their own layout.
"""

import json
import os


def _label(rows):
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows / 1e3:g}k"


def stats_figures(results):
    """stats_throughput.json: each method's rows/s per size; normpipe's stage times."""
    lines, stages = {}, {}
    for key, method in results.get("methods", {}).items():
        if "error" in method:
            continue
        lines[method["label"]] = [[s["rows"], s["rows"] / s["median_s"]] for s in method["sizes"]]
        for s in method["sizes"]:
            st = s.get("stage_s")
            if not st:
                continue
            inside = {k: st[k] for k in ("parse", "convert", "analyze") if k in st}
            pipeline = st.get("pipeline", 0.0)
            bar = {**inside, "rest of the Beam pipeline": max(pipeline - sum(inside.values()), 0.0),
                   "write": st.get("write", 0.0),
                   "start-up, imports, exit": max(s["median_s"] - pipeline - st.get("write", 0.0), 0.0)}
            stages[f"{key}\n{_label(s['rows'])}"] = bar
    taxi = results.get("taxi", {})
    if taxi.get("stage_s"):
        st = taxi["stage_s"]
        stages["normpipe\ntaxi 15k"] = {
            **{k: st[k] for k in ("parse", "convert", "analyze") if k in st},
            "rest of the Beam pipeline": max(
                st.get("pipeline", 0.0) - sum(st.get(k, 0.0) for k in ("parse", "convert", "analyze")), 0.0
            ),
            "write": st.get("write", 0.0),
            "start-up, imports, exit": max(taxi["median_s"] - st.get("pipeline", 0.0) - st.get("write", 0.0), 0.0),
        }
    return {"throughput": lines, "stages": stages}


def end_to_end_figures(results):
    """end_to_end.json: rows/s of stats, run, run_one and the Keras script; run's stages."""
    lines, stages = {}, {}
    for size in results.get("sizes", []):
        for key in ("stats", "run", "run_one", "keras"):
            entry = size.get(key)
            if entry and entry.get("wall_s"):
                lines.setdefault(key, []).append([size["rows"], size["rows"] / entry["wall_s"]])
        for key in ("run", "run_one"):
            entry = size.get(key) or {}
            if entry.get("stages_s"):
                bar = dict(entry["stages_s"])
                bar["start-up and the rest"] = max(entry["wall_s"] - sum(bar.values()), 0.0)
                stages[f"{key}\n{_label(size['rows'])}"] = bar
    return {"throughput": lines, "stages": stages}


def compare_scale_figures(results):
    """compare_scale.json: rows/s with and without materializing; the two stages."""
    lines, stages = {}, {}
    for run in results.get("runs", []):
        name = "compare (materialized)" if run.get("materialize") else "compare --no-materialize"
        lines.setdefault(name, []).append([run["rows"], run["rows_per_s"]])
        if run.get("stages_s"):
            bar = dict(run["stages_s"])
            bar["start-up and the rest"] = max(run["wall_s"] - sum(bar.values()), 0.0)
            suffix = "" if run.get("materialize") else "\nno-mat."
            stages[f"{_label(run['rows'])}{suffix}"] = bar
    return {"throughput": lines, "stages": stages}


READERS = {"stats_throughput": stats_figures, "end_to_end": end_to_end_figures, "compare_scale": compare_scale_figures}


def figures_of(name, results):
    if "figures" in results:
        return results["figures"]
    reader = READERS.get(name.replace("_quick", ""))
    if reader is None:  # a results file under another name: known by its layout
        shape = {"methods": stats_figures, "stage_table": end_to_end_figures, "runs": compare_scale_figures}
        reader = next((f for key, f in shape.items() if key in results), None)
    return reader(results) if reader else {}


def _throughput_png(lines, title, path, plt):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in lines.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("rows/s (rows / wall time, start-up included)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stages_png(stages, title, path, plt):
    names = []
    for bar in stages.values():
        names += [k for k in bar if k not in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(stages) + 2), 4.5))
    labels = list(stages)
    bottom = [0.0] * len(labels)
    for name in names:
        heights = [stages[label].get(name, 0.0) for label in labels]
        ax.bar(labels, heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw(path):
    """The PNGs of one results JSON, beside it; returns their paths."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    name = os.path.splitext(os.path.basename(path))[0]
    found = figures_of(name, results)
    stem = os.path.splitext(path)[0]
    written = []
    if found.get("throughput"):
        _throughput_png(found["throughput"], f"{name}: throughput", stem + "_throughput.png", plt)
        written.append(stem + "_throughput.png")
    if found.get("stages"):
        _stages_png(found["stages"], f"{name}: where the time goes", stem + "_stages.png", plt)
        written.append(stem + "_stages.png")
    return written
