"""report.html: one self-contained page with the whole run.

It opens with a box of what the run shows (report_headline.py): the
per-batch variant at batch size 1 against the full-dataset variant and the
baseline, the per-batch normalization error, and the serving skew. Then
statistics, the per-batch comparison (table and plot, the PNG embedded as a
data: URI), per-variant model metrics, the export's signatures, the verify
checks and a ready-to-paste curl request built from a real row. No scripts,
stylesheets, fonts or images are fetched: the file opens offline.
"""

import base64
import html
import json

from normpipe.components.report_headline import headline_box
from normpipe.io import atomic, paths

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}.pass{color:#0a0}.fail{color:#c00;font-weight:bold}.skip{color:#888}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}
img{max-width:100%}
.headline{border:2px solid #36c;background:#f2f6fd;border-radius:6px;padding:.2em 1.2em;margin:1em 0 2em}
.headline li{margin:.35em 0}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _num(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.6g}"


def _table(header, rows) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def statistics_section(stats) -> str:
    keys = ("count", "missing", "mean", "std", "min", "max")
    rows = [[_e(name)] + [_num(s[k]) for k in keys] for name, s in stats["features"].items()]
    section = (f"<h2>Full-dataset statistics</h2><p>{_num(stats['num_examples'])} rows; population std (ddof=0); "
               "missing values excluded.</p>" + _table(("feature",) + keys, rows))
    categories = {name: c for name, c in (stats.get("categorical") or {}).items() if c}
    if categories:
        rows = [[_e(name), _num(c["count"]), _num(c["missing"]), _num(c["distinct"]),
                 _e(", ".join(f"{value} ({count})" for value, count in c["top"][:5]))]
                for name, c in categories.items()]
        section += ("<p>Categorical columns: a vocabulary and its ids in the transform graph, an embedding in the "
                    "model.</p>" + _table(("column", "count", "missing", "distinct", "most frequent"), rows))
    return section


def _compared(comparison) -> str:
    compared, total = comparison.get("rows_compared"), comparison["num_examples"]
    if compared is None or compared >= total:
        return ""
    return f" Compared on the first {_num(compared)} of {_num(total)} rows."


def comparison_section(comparison, png_path) -> str:
    sizes = comparison["batch_sizes"]
    lookup = {(r["feature"], r["method"], r["order"], r["batch_size"]): r for r in comparison["records"]}
    parts = ["<h2>Per-batch vs full-dataset normalization</h2>",
             "<p>Mean absolute error of the recipe's per-batch normalization against the full-dataset "
             "normalization of the same row (shuffled order); NaN share in brackets. Numeric features only: "
             "a categorical column's ids come from the full dataset's vocabulary, with no per-batch form."
             + _compared(comparison) + "</p>"]
    for method in comparison["methods"]:
        rows = []
        for name in comparison["features"]:
            cells = []
            for b in sizes:
                r = lookup[(name, method, "shuffled", b)]
                cell = _num(r["mean_abs_error"])
                if r["nonfinite_fraction"]:
                    cell += f" ({r['nonfinite_fraction']:.0%} NaN)"
                cells.append(cell)
            rows.append([_e(name)] + cells)
        parts.append(f"<h3>{_e(method)}</h3>" + _table(["feature"] + [f"b={b}" for b in sizes], rows))
    if png_path and paths.exists(png_path):
        data = base64.b64encode(paths.read_bytes(png_path)).decode("ascii")
        parts.append(f'<img alt="error vs batch size" src="data:image/png;base64,{data}">')
    return "".join(parts)


def _ratio_note(small, large, base, metric) -> str:
    """The batch-size-1 figure against the same variant at a large batch and
    against the baseline (MAE: lower is better; accuracy: higher)."""
    if small is None:
        return '<span class="fail">NaN at batch size 1</span>'
    if metric == "accuracy":
        worse = large is not None and small < large - 0.01
        note = f"{small - large:+.3f} vs large batch" if large is not None else ""
        useless = base is not None and small <= base
    else:
        worse = large is not None and large > 0 and small > large * 1.05
        note = f"{small / large:.2f}x large batch" if large else ""
        useless = base is not None and small >= base
    if useless:
        note += ", no better than the baseline"
    return f'<span class="fail">{_e(note)}</span>' if worse or useless else _e(note)


def training_budget(metrics) -> str:
    """One sentence on who trained on what, or "" when every variant trained
    on every row: the variants trained only to be compared take the first
    `comparison_rows` training rows per epoch, the exported one all of them."""
    variants = metrics.get("variants") or {}
    compared = [v for v, m in variants.items() if m.get("budget") == "comparison"]
    total = metrics.get("train_rows")
    if not compared or not total or variants[compared[0]]["train_rows"] >= total:
        return ""
    every = [v for v, m in variants.items() if m.get("budget") != "comparison"]
    return (f"{', '.join(compared)} (trained only to be compared) trained on the first "
            f"{variants[compared[0]]['train_rows']:,} of {total:,} training rows per epoch (--comparison-rows "
            f"{metrics['comparison_rows']}); {', '.join(every)} on all of them.")


def metrics_section(metrics) -> str:
    if not metrics:
        return "<h2>Model</h2><p>No label: the export is the normalization itself.</p>"
    rows = []
    first = next(iter(metrics["variants"].values()))
    large = next(k for k in first if k.startswith("batch_") and k != "batch_1")
    metric = first["metric"]
    baseline = metrics.get("baseline") or {}
    base_small = baseline.get("batch_1", {}).get(metric)
    if baseline:
        rows.append([f"<b>baseline</b>: {_e(baseline['what'])}", _e(metric), _num(base_small),
                     _num(baseline[large][metric]), ""])
    for variant, m in metrics["variants"].items():
        small, big = m["batch_1"][metric], m[large][metric]
        shared = f" ({m['network']}'s trained network)" if m.get("network") else ""
        rows.append([_e(variant + shared + (" (exported)" if variant == metrics["exported"] else "")),
                     _e(m["metric"]), _num(small), _num(big), _ratio_note(small, big, base_small, metric)])
    sample = metrics.get("eval_sample_rows")
    coverage = (f" Batch size 1 is evaluated on a fixed sample, the first {_num(sample)} evaluation rows in input "
                f"order; the large batch on all {_num(metrics.get('eval_rows'))} evaluation rows. Trained at batch "
                f"size {_num(metrics.get('batch_size'))} for {_num(metrics.get('epochs'))} epochs."
                if sample is not None else "")
    classes = (f" Classes, in index order: {', '.join(f'<code>{_e(c)}</code>' for c in metrics['classes'])}."
               if metrics.get("classes") else "")
    user = (f" The model is the user's own (<code>{_e(metrics.get('model_fn'))}</code>): "
            f"{_e(metrics['variants_not_trained'])}." if metrics.get("variants_not_trained") else "")
    budget = training_budget(metrics)
    coverage += f" {_e(budget)}" if budget else ""
    return (f"<h2>Model</h2><p>Label <code>{_e(metrics['label'])}</code> ({_e(metrics['task'])}); eval metric "
            "of each normalization variant at batch size 1 and at a large batch, beside a baseline that ignores "
            f"the features.{classes}{user}{coverage}</p>"
            + _table(("variant", "metric", "batch 1", large.replace("batch_", "batch "), "batch 1 vs"), rows))


def signatures_section(signatures) -> str:
    rows = []
    for name, definition in sorted(signatures.items()):
        inputs = ", ".join(f"{k} ({v})" for k, v in definition["inputs"].items())
        outputs = ", ".join(f"{k} ({v})" for k, v in definition["outputs"].items())
        rows.append([_e(name), _e(inputs), _e(outputs)])
    return "<h2>Export signatures</h2>" + _table(("signature", "inputs", "outputs"), rows)


def verify_section(lines) -> str:
    items = []
    for line in lines:
        status = line.split(" ", 1)[0].lower()
        items.append(f'<li class="{_e(status)}">{_e(line)}</li>')
    return "<h2>Verify</h2><ul>" + "".join(items) + "</ul>"


def curl_command(model_name, row, port=8501) -> str:
    """A REST predict request of one row: {feature: value} for a signature
    with one input per feature, or the values in column order (a list) for
    one that takes a [batch, F] matrix."""
    body = json.dumps({"signature_name": "serving_default", "instances": [row]}, allow_nan=True)
    return f"curl -s -X POST http://localhost:{port}/v1/models/{model_name}:predict -d '{body}'"


def render(stats, comparison, png_path, metrics, signatures, verify_lines, curl, version_dir) -> str:
    sections = [
        headline_box(comparison, metrics, verify_lines),
        statistics_section(stats),
        comparison_section(comparison, png_path) if comparison else "",
        metrics_section(metrics),
        signatures_section(signatures),
        verify_section(verify_lines),
        f"<h2>Serve it</h2><p>Export: <code>{_e(version_dir)}</code></p><pre>{_e(curl)}</pre>",
    ]
    return page("normpipe report", sections)


def page(title, sections) -> str:
    """A self-contained HTML page of `sections` (HTML strings) under `title`."""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>{''.join(sections)}</body></html>\n")


def write_report(path, **parts) -> str:
    atomic.write_text_atomic(path, render(**parts))
    return path
