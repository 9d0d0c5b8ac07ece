"""Skew checks of an export on real tf.Examples, against a transform graph.

What `normpipe verify` checks on the rows an export recorded, checked here on
rows a caller brings (an evaluation split, as TFX's ExampleGen wrote it) and
against a transform graph given apart from the export (the one the model was
meant to be trained behind). The export is loaded with the TF1 session loader,
as TF Serving loads it (see verify.py). Checks, one PASS/FAIL/SKIP line each:

  signatures       as verify: serving_default, serving_examples,
                   transform_features, regress/classify with TF Serving's
                   method names
  warmup           as verify: every warmup request runs, outputs finite
  one_row          one real row, and one all-missing row, give finite outputs
  transform_skew   served transform_features on the rows' values against
                   the given transform graph applied, outside the model, to
                   the same serialized examples (tf.Transform's own
                   TFTransformOutput.transform_raw_features), within 1e-6
  examples         serving_examples (and regress or classify) on the raw
                   serialized examples against serving_default on the values
                   they carry, within 1e-5 relative
  latency          serving_default at batch 1, one request per row: p50 and
                   p99 in milliseconds against the budgets given (SKIP, with
                   the figures, without a budget)

The rows' values are read from the examples with protobuf alone (the first
value of each feature's int64_list or float_list, absent = NaN), apart from
the export's own tf.Example parsing.
"""

import time

import numpy as np
import tensorflow as tf

from normpipe.serving import verify
from normpipe.serving.serving_layout import VERIFY_SAMPLE

TRANSFORM_TOLERANCE = verify.TRANSFORM_TOLERANCE
LATENCY_REQUESTS = 200


def example_rows(serialized, features) -> np.ndarray:
    """float64 [n, F]: each feature's first value in each example, NaN where absent."""
    rows = np.full((len(serialized), len(features)), np.nan)
    for i, record in enumerate(serialized):
        held = tf.train.Example.FromString(record).features.feature
        for j, name in enumerate(features):
            if name in held:
                kind = held[name].WhichOneof("kind")
                values = getattr(held[name], kind).value if kind in ("int64_list", "float_list") else ()
                if len(values):
                    rows[i, j] = float(values[0])
    return rows


def example_texts(serialized, columns) -> dict:
    """{categorical column: [n] texts} of the examples, as serving_examples
    reads them (example_parsing.parse_example_texts): a bytes_list value as
    it is, an int64_list one as its decimal text, a float_list one as its
    shortest text (7.0 -> "7"), "" where absent."""
    texts = {name: [] for name in columns}
    for record in serialized:
        held = tf.train.Example.FromString(record).features.feature
        for name in columns:
            kind = held[name].WhichOneof("kind") if name in held else None
            values = getattr(held[name], kind).value if kind else ()
            if not len(values):
                texts[name].append("")
            elif kind == "bytes_list":
                texts[name].append(values[0].decode("utf-8"))
            elif kind == "int64_list" or float(values[0]).is_integer():
                texts[name].append(str(int(values[0])))
            else:
                texts[name].append(np.format_float_positional(np.float32(values[0]), trim="-"))
    return texts


def _inputs(features, rows, texts=None) -> dict:
    """serving_default's (and transform_features') inputs: the rows' values
    and the categorical columns' texts."""
    inputs = {n: rows[:, j] for j, n in enumerate(features)}
    inputs.update({n: np.array([v.encode("utf-8") for v in values[:len(rows)]], dtype=object)
                   for n, values in (texts or {}).items()})
    return inputs


def transform_outside(transform_dir, serialized, names) -> dict:
    """{output: float64 [n]} of the transform graph at `transform_dir` applied
    to serialized raw tf.Examples, as a TFX Trainer's input does."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    output = tft.TFTransformOutput(transform_dir)
    parsed = tf.io.parse_example(tf.constant(serialized), output.raw_feature_spec())
    transformed = output.transform_raw_features(parsed)
    return {n: np.asarray(transformed[n], np.float64).reshape(-1) for n in names if n in transformed}


def check_transform_against(server, features, rows, transform_dir, serialized, texts=None):
    served = server.run("transform_features", _inputs(features, rows, texts))
    outside = transform_outside(transform_dir, serialized, sorted(served))
    missing = sorted(set(served) - set(outside))
    if missing:
        return False, f"the transform graph has no output {', '.join(missing)}"
    worst = max(float(np.nanmax(np.abs(np.asarray(served[k], np.float64).reshape(-1) - outside[k]), initial=0.0))
                for k in served)
    nan_mismatch = [k for k in served if not np.array_equal(np.isnan(served[k]).reshape(-1), np.isnan(outside[k]))]
    ok = worst <= TRANSFORM_TOLERANCE and not nan_mismatch
    return ok, (f"max |served - transform graph outside the model| = {worst:.3g} over {len(rows)} examples "
                f"(limit {TRANSFORM_TOLERANCE:g})" + (f"; NaN differs in {', '.join(nan_mismatch)}" if nan_mismatch
                                                      else ""))


def check_raw_examples(server, features, task, rows, serialized, texts=None):
    """serving_examples (and regress/classify) on the raw examples against
    serving_default on their values."""
    from_examples = server.run("serving_examples", {"examples": np.array(serialized, dtype=object)})
    from_features = server.run("serving_default", _inputs(features, rows, texts))
    worst = max(verify.relative_error(from_examples[k], from_features[k]) for k in from_features)
    detail = f"max relative |serving_examples - serving_default| = {worst:.3g} over {len(rows)} raw examples"
    if task:
        expected = np.asarray(from_features["prediction"])
        inputs = {"inputs": np.array(serialized, dtype=object)}
        if task == "regression":
            served, name = np.asarray(server.run("regress", inputs)["outputs"]).reshape(-1), "regress"
            expected = expected.reshape(-1)
        else:
            served, name = np.asarray(server.run("classify", inputs)["scores"]), "classify"
            # two classes: scores [n, 2] against P(class 1); more: [n, K] against [n, K]
            served = served[:, 1] if expected.ndim == 1 else served
        gap = verify.relative_error(served, expected)
        worst = max(worst, gap)
        detail += f"; {name} vs serving_default {gap:.3g}"
    return worst <= verify.PREDICTION_TOLERANCE, detail


def check_latency(server, features, rows, p50_ms=None, p99_ms=None, requests=LATENCY_REQUESTS, texts=None):
    """serving_default at batch 1: p50/p99 over `requests` one-row requests
    (rows reused in turn), after one request that is not timed."""
    columns = [_inputs(features, rows[i:i + 1], {n: v[i:i + 1] for n, v in (texts or {}).items()})
               for i in range(len(rows))]
    server.run("serving_default", columns[0])
    times = []
    for i in range(requests):
        start = time.perf_counter()
        server.run("serving_default", columns[i % len(columns)])
        times.append((time.perf_counter() - start) * 1000.0)
    p50, p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
    detail = f"batch 1, {requests} requests in-process: p50 {p50:.3g} ms, p99 {p99:.3g} ms"
    if p50_ms is None and p99_ms is None:
        return None, detail + "; no budget given"
    over = [f"{name} over {limit:g} ms" for name, value, limit in (("p50", p50, p50_ms), ("p99", p99, p99_ms))
            if limit is not None and value > limit]
    budget = ", ".join(f"{k} {v:g} ms" for k, v in (("p50", p50_ms), ("p99", p99_ms)) if v is not None)
    return not over, detail + f"; budget {budget}" + (f": {', '.join(over)}" if over else "")


def check_export(version_dir, transform_dir, serialized, report=print, p50_ms=None, p99_ms=None) -> bool:
    """Runs every check (module docstring) on `serialized` raw tf.Examples;
    reports one line each; True when none failed. A model that does not load
    or has no verify sample fails with one `load` or `sample` line."""
    report(f"check {version_dir} against {transform_dir} on {len(serialized)} examples")
    if not serialized:
        report("FAIL examples: no example to check the model on")
        return False
    try:
        sample, sample_rows = verify.load_sample(version_dir)
    except Exception as exc:  # pylint: disable=broad-except  -- no readable sample is a result
        report(f"FAIL sample: assets.extra/{VERIFY_SAMPLE} cannot be read: {verify.first_line(exc)}")
        return False
    try:
        server = verify.ServingSession(version_dir)
    except Exception as exc:  # pylint: disable=broad-except  -- a model that does not load is a result
        report(f"FAIL load: the SavedModel does not load as TF Serving loads it: {verify.first_line(exc)}")
        return False
    features, task = sample["features"], sample.get("task")
    rows = example_rows(serialized, features)
    texts = example_texts(serialized, list(sample.get("categorical") or {}))
    checks = [
        ("signatures", lambda: verify.check_signatures(server, sample)),
        ("warmup", lambda: verify.check_warmup(server, version_dir, len(sample_rows))),
        ("one_row", lambda: verify.check_one_row(server, sample, rows)),
        ("transform_skew", lambda: check_transform_against(server, features, rows, transform_dir, serialized, texts)),
        ("examples", lambda: check_raw_examples(server, features, task, rows, serialized, texts)),
        ("latency", lambda: check_latency(server, features, rows, p50_ms, p99_ms, texts=texts)),
    ]
    passed = True
    for name, check in checks:
        try:
            ok, detail = check()
        except Exception as exc:  # pylint: disable=broad-except  -- a failing check is a result
            ok, detail = False, verify.first_line(exc)
        report(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'} {name}: {detail}")
        passed = passed and ok is not False
    return passed
