"""The box at the top of report.html: what the run shows, before any table.

Three lines, each from an output the run wrote:
  - the model: the per-batch variant's eval metric at batch size 1 against
    the full-dataset variant's and the baseline's (model/metrics.json);
  - the normalization: the mean |per-batch - full-dataset| error at the
    smallest and the largest batch size, shuffled order (comparison.json);
  - serving: verify's transform_skew line (the export against the
    pipeline's own transform on the recorded sample).
A line whose output is missing says so instead of being left out.
"""

import html

# The variants trained on full-dataset statistics, in the order the box prefers.
FULL_DATASET_VARIANTS = ("tft", "constant", "learned")


def _e(value) -> str:
    return html.escape(str(value))


def _n(value) -> str:
    return "NaN" if value is None else f"{value:.4g}"


def model_line(metrics) -> str:
    """The per-batch variant at batch size 1 against the full-dataset one and the baseline."""
    if not metrics:
        return "Model: no label, so no model; the export is the normalization itself."
    variants, baseline = metrics["variants"], metrics.get("baseline") or {}
    full = next((v for v in FULL_DATASET_VARIANTS if v in variants), None)
    metric = next(iter(variants.values()))["metric"]
    parts = []
    if "batch" in variants:
        parts.append(f"per-batch normalization (batch) {_n(variants['batch']['batch_1'][metric])}")
    else:
        parts.append("per-batch normalization not trained (--no-all-variants)")
    if full:
        parts.append(f"full-dataset ({full}) {_n(variants[full]['batch_1'][metric])}")
    if baseline:
        parts.append(f"baseline ({baseline['what']}) {_n(baseline['batch_1'][metric])}")
    better = "lower is better" if metric != "accuracy" else "higher is better"
    return (f"Model, {metric} at batch size 1 ({better}), label {metrics['label']}: " + "; ".join(parts) + ".")


def normalization_line(comparison) -> str:
    """The mean over features of the per-batch error, smallest and largest batch size."""
    if not comparison:
        return "Normalization: no per-batch comparison in this run."
    method, sizes = comparison["methods"][0], comparison["batch_sizes"]
    smallest, largest = min(sizes), max(sizes)

    def error_at(b):
        errors = [r["mean_abs_error"] for r in comparison["records"]
                  if (r["method"], r["order"], r["batch_size"]) == (method, "shuffled", b)]
        present = [e for e in errors if e is not None]
        return f"{sum(present) / len(present):.4g}" if present else "NaN"

    return (f"Normalization ({method}, shuffled order), mean |per-batch - full-dataset| over the features: "
            f"{error_at(smallest)} at batch size {smallest}, {error_at(largest)} at batch size {largest}.")


def skew_line(verify_lines) -> str:
    skew = next((line for line in verify_lines or () if " transform_skew:" in line), None)
    return f"Serving skew: {skew}" if skew else "Serving skew: transform_skew not run."


def headline_box(comparison, metrics, verify_lines) -> str:
    """The box as HTML: a heading and the three lines (see the module docstring)."""
    lines = (model_line(metrics), normalization_line(comparison), skew_line(verify_lines))
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<div class="headline" id="headline"><h2>What this run shows</h2><ul>{items}</ul></div>'
