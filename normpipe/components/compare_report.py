"""Comparison outputs: comparison.json, a readable comparison.md, a plot.

All three are written to temporary names and renamed into place.
"""

import io
import json

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

from normpipe.io import (
    atomic,  # pylint: disable=wrong-import-position
    paths,  # pylint: disable=wrong-import-position
)


def _fmt(value):
    if value is None:
        return "—"
    return "0" if value == 0 else f"{value:.2g}"


def _lookup(records):
    return {(r["feature"], r["method"], r["order"], r["batch_size"]): r for r in records}


def summary_figures(records):
    """Mean over features of the mean abs error, and non-finite fraction, per (method, order, b)."""
    figures = {}
    for r in records:
        key = (r["method"], r["order"], r["batch_size"])
        figures.setdefault(key, []).append(r)
    out = {}
    for key, rows in figures.items():
        errors = [r["mean_abs_error"] for r in rows if r["mean_abs_error"] is not None]
        out[key] = {
            "mean_abs_error": sum(errors) / len(errors) if errors else None,
            "nonfinite_fraction": sum(r["nonfinite_fraction"] for r in rows) / len(rows),
        }
    return out


def _compared(document) -> str:
    """How many rows the per-batch comparison read, when not all of them."""
    compared = document.get("rows_compared", document["num_examples"])
    if compared >= document["num_examples"]:
        return ""
    return f"; compared on the first {compared:,} rows (the statistics are of all rows)"


def render_markdown(document) -> str:
    records, sizes = document["records"], document["batch_sizes"]
    features, methods = document["features"], document["methods"]
    table = _lookup(records)
    summary = summary_figures(records)
    lines = [
        "# Per-batch vs full-dataset normalization",
        "",
        f"{document['num_examples']:,} rows, {len(features)} features{_compared(document)}. Each cell: mean "
        "absolute error of the "
        "recipe's per-batch normalization against the full-dataset normalization of the same row "
        "(normalized units); in brackets, the fraction of NaN/inf outputs where there are any.",
        "",
    ]
    for method in methods:
        for order in ("file", "shuffled"):
            lines += [f"## {method}, {order} order", ""]
            lines.append("| feature | " + " | ".join(f"b={b}" for b in sizes) + " |")
            lines.append("|---|" + "---:|" * len(sizes))
            for name in features:
                cells = []
                for b in sizes:
                    r = table[(name, method, order, b)]
                    cell = _fmt(r["mean_abs_error"])
                    if r["nonfinite_fraction"]:
                        cell += f" ({r['nonfinite_fraction']:.0%} NaN)"
                    cells.append(cell)
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Conclusion", ""] + [f"- {c}" for c in conclusions(summary, sizes, methods, document["num_examples"])]
    return "\n".join(lines) + "\n"


def conclusions(summary, sizes, methods, num_examples):
    out = []
    smallest, largest = min(sizes), max(sizes)
    for method in methods:
        small = summary[(method, "shuffled", smallest)]
        large = summary[(method, "shuffled", largest)]
        out.append(
            f"{method}: at batch size {smallest} the mean error is {_fmt(small['mean_abs_error'])} "
            f"with {small['nonfinite_fraction']:.0%} NaN/inf outputs; at {largest} it is "
            f"{_fmt(large['mean_abs_error'])} with {large['nonfinite_fraction']:.0%}."
        )
    out.append(
        "Per-batch statistics make a row's value depend on its batch-mates; a serving request of one row "
        "gets NaN (min-max) or 0 (z-score). Full-dataset statistics, computed once by the tf.Transform "
        "analyzers and embedded in the graph, give every row the same value in training and in serving."
    )
    if largest >= num_examples:
        out.append(
            f"With one batch of {largest} >= {num_examples:,} rows the per-batch statistics are the full ones "
            "and the error is ~0."
        )
    return out


MAX_PLOTTED = 20


def plotted_features(document, table) -> list:
    """The features the plot draws: all of them, or the MAX_PLOTTED with
    the largest error at the smallest batch size (a plot of thousands of
    lines and legend entries shows nothing; comparison.md lists them all)."""
    features = list(document["features"])
    if len(features) <= MAX_PLOTTED:
        return features
    smallest = min(document["batch_sizes"])

    def worst(name):
        errors = [table[(name, m, "shuffled", smallest)]["mean_abs_error"] for m in document["methods"]]
        return max((e for e in errors if e is not None), default=0.0)

    return sorted(features, key=worst, reverse=True)[:MAX_PLOTTED]


# Longer feature names are cut in the legend (comparison.md has them whole).
LEGEND_NAME_CHARS = 32


def build_figure(document):
    """The comparison plot: per method, each plotted feature's error against
    the batch size; the legend sits right of the axes, never over a line."""
    methods = document["methods"]
    fig, axes = plt.subplots(1, len(methods), figsize=(6.5 * len(methods) + 1.5, 4.8), squeeze=False,
                             layout="constrained")
    table = _lookup(document["records"])
    features = plotted_features(document, table)
    shown = "" if len(features) == len(document["features"]) else (
        f"; the {len(features)} of {len(document['features'])} features with the largest error at batch size "
        f"{min(document['batch_sizes'])}")
    for ax, method in zip(axes[0], methods):
        _draw_method(ax, method, features, table, document["batch_sizes"], shown)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    if handles:
        labels = [n if len(n) <= LEGEND_NAME_CHARS else n[:LEGEND_NAME_CHARS - 1] + "…" for n in labels]
        fig.legend(handles, labels, loc="outside right upper", fontsize=7, title="feature", title_fontsize=7)
    return fig


def _draw_method(ax, method, features, table, sizes, shown):
    colors = plt.get_cmap("tab20")
    drawn = False
    for index, name in enumerate(features):
        for order, style in (("shuffled", "-"), ("file", ":")):
            errors = [table[(name, method, order, b)]["mean_abs_error"] for b in sizes]
            # None (all outputs NaN) and exact zeros have no place on a log axis.
            ys = [e if e else float("nan") for e in errors]
            drawn = drawn or any(y > 0 for y in ys)
            ax.plot(sizes, ys, style, marker="o", markersize=3, color=colors(index % 20),
                    label=name if order == "shuffled" else None)
    ax.set_xscale("log", base=2)
    if drawn:
        ax.set_yscale("log")
    else:
        # One row, identical rows, no value: every error is 0 or undefined,
        # and a log axis with nothing on it cannot be drawn.
        ax.text(0.5, 0.5, "no non-zero error to draw", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("batch size")
    ax.set_ylabel("mean |per-batch - full-dataset|")
    ax.set_title(f"{method} (solid: shuffled, dotted: file order; 0 and all-NaN not drawn{shown})", fontsize=9,
                 wrap=True)
    ax.grid(True, which="both", alpha=0.3)


def render_plot(document, path):
    fig = build_figure(document)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    atomic.write_bytes_atomic(path, buffer.getvalue())


def json_text(document) -> str:
    """The document as JSON, indented at the top level with one record per
    line: as readable as indent=2 for a reader, and written by json's C
    encoder, where indent=2 over every record takes the pure-Python one
    (seconds for a wide dataset's hundred thousand records)."""
    items = []
    for key, value in document.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            body = ",\n".join("    " + json.dumps(v, allow_nan=False) for v in value)
            items.append(f"  {json.dumps(key)}: [\n{body}\n  ]")
        else:
            items.append(f"  {json.dumps(key)}: {json.dumps(value, allow_nan=False)}")
    return "{\n" + ",\n".join(items) + "\n}\n"


def write_outputs(document, output_dir):
    """comparison.json, comparison.md and comparison.png under output_dir.

    The JSON text and the table are built before anything is written, so a
    document that cannot be written leaves none of the three.
    """
    text = json_text(document)
    table = render_markdown(document)
    render_plot(document, paths.join(output_dir, "comparison.png"))
    atomic.write_text_atomic(paths.join(output_dir, "comparison.json"), text)
    atomic.write_text_atomic(paths.join(output_dir, "comparison.md"), table)
