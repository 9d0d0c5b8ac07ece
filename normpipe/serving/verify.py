"""Verify: load an export the way TF Serving does and check it for skew.

TF Serving loads a SavedModel with the TF1 session loader and runs signatures
by tensor name; so does `saved_model_cli run`, and so does this module, in
whatever process calls it (the CLI is a fresh one). Checks:

  signatures       serving_default, serving_examples, transform_features, with
                   DT_DOUBLE feature inputs (one per feature, or one [None, F]
                   matrix for matrix signatures) and a DT_STRING `examples` input
  warmup           every PredictionLog in assets.extra/tf_serving_warmup_requests
                   runs and gives finite outputs
  one_row          a request of one real row, and one of all-missing values
                   (NaN, and "" for a categorical column), give finite outputs
  unseen           (categorical columns) requests whose categorical values
                   are one never seen in training, and "", give finite outputs
  transform_skew   transform_features on the recorded sample equals the
                   values the Beam pipeline computed for those rows within 1e-6
                   (the categorical ids exactly)
  prediction_skew  serving_default equals the in-pipeline model's predictions
                   within 1e-5 (exports with a model)
  examples         serving_examples (and regress or classify, with TF
                   Serving's method names; classify's classes are the
                   recorded class names) on the same rows as tf.train.Examples
                   built with the data's own types (int64_list for integer
                   columns, float_list for the others) equals serving_default
                   on the values those Examples carry, within 1e-5 relative
"""

import json

import numpy as np
import tensorflow as tf

from normpipe.core.errors import UserError
from normpipe.io import atomic, paths
from normpipe.serving import serving_layout as layout
from normpipe.serving.serving_layout import VERIFY_SAMPLE, WARMUP_FILE, existing_versions

SIGNATURES = ("serving_default", "serving_examples", "transform_features")
TRANSFORM_TOLERANCE = 1e-6
PREDICTION_TOLERANCE = 1e-5


def resolve_version_dir(model_dir: str) -> str:
    """A version directory, or the newest complete version of a model directory.

    On a URI a version whose publishing copy was interrupted holds
    atomic.INCOMPLETE: it is refused when named, skipped when looking for
    the newest.
    """
    atomic.check_complete(model_dir, "export")
    if paths.isfile(paths.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = [v for v in existing_versions(model_dir) if atomic.is_complete(paths.join(model_dir, str(v)))]
    if not versions:
        raise UserError(f"{model_dir}: no SavedModel and no numbered version directory")
    return paths.join(model_dir, str(versions[-1]))


class ServingSession:
    """A SavedModel loaded with the TF1 session loader, run by tensor name."""

    def __init__(self, version_dir: str):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], version_dir)
        self.signatures = dict(meta.signature_def)

    def run(self, signature: str, inputs: dict) -> dict:
        definition = self.signatures[signature]
        feed = {definition.inputs[k].name: v for k, v in inputs.items()}
        fetch = {k: t.name for k, t in definition.outputs.items()}
        return self.session.run(fetch, feed_dict=feed)


def _wrong_texts(default, sample) -> list:
    """The categorical columns that serving_default does not take as DT_STRING."""
    return [f"{n} DT_STRING" for n in sample.get("categorical") or {}
            if n not in default or default[n].dtype != tf.string.as_datatype_enum]


def _finite(outputs: dict) -> bool:
    return all(np.all(np.isfinite(v)) for v in outputs.values())


def check_signatures(server, sample):
    missing = [s for s in SIGNATURES if s not in server.signatures]
    if missing:
        return False, f"missing {', '.join(missing)}"
    default = server.signatures["serving_default"].inputs
    width = len(sample["features"])
    if _is_matrix(sample):
        matrix = default.get(layout.MATRIX_INPUT)
        shape = [d.size for d in matrix.tensor_shape.dim] if matrix is not None else []
        texts = len(sample.get("categorical") or {})
        wrong = [] if len(default) == 1 + texts and matrix.dtype == tf.float64.as_datatype_enum and shape == [-1, width] \
            else [f"{layout.MATRIX_INPUT} DT_DOUBLE [None, {width}]"]
        wrong += _wrong_texts(default, sample)
    else:
        wrong = [n for n in sample["features"] if n not in default or default[n].dtype != tf.float64.as_datatype_enum]
        wrong += _wrong_texts(default, sample)
    texts = len(sample.get("categorical") or {})
    described = f"one DT_DOUBLE [None, {width}] input" if _is_matrix(sample) else f"{width} DT_DOUBLE inputs"
    described += f", {texts} DT_STRING inputs" if texts else ""
    examples = server.signatures["serving_examples"].inputs.get("examples")
    if wrong or examples is None or examples.dtype != tf.string.as_datatype_enum:
        return False, f"unexpected inputs: {', '.join(wrong) or 'examples'}"
    method = {"regression": (layout.REGRESS, layout.REGRESS_METHOD),
              "classification": (layout.CLASSIFY, layout.CLASSIFY_METHOD)}.get(sample.get("task"))
    if method:
        found = server.signatures.get(method[0])
        if found is None or found.method_name != method[1] or "inputs" not in found.inputs:
            return False, f"no {method[0]} signature with method {method[1]} and input 'inputs'"
        return True, f"{', '.join(SIGNATURES)}, {method[0]} ({method[1]}); {described}"
    return True, f"{', '.join(SIGNATURES)}; {described}"


def check_warmup(server, version_dir, expected=None):
    """Runs every warmup request; `expected`: how many the export wrote
    (one per verify-sample row), so a file cut at a record boundary fails.

    Requests to one signature with the same inputs run as one batch (their
    rows are independent), so a wide model's hundred one-row requests cost
    one session call, not a hundred; any other request (a scalar input)
    runs alone.
    """
    from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=import-outside-toplevel

    path = paths.join(version_dir, "assets.extra", WARMUP_FILE)
    if not paths.exists(path):
        return False, "no assets.extra/tf_serving_warmup_requests"
    groups, count = {}, 0
    for record in tf.data.TFRecordDataset(path):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        batchable = all(v.ndim >= 1 for v in inputs.values())
        key = (request.model_spec.signature_name or "serving_default", tuple(sorted(inputs)) if batchable else count)
        groups.setdefault(key, []).append((count, inputs))
        count += 1
    for (signature, _), requests in groups.items():
        names = requests[0][1].keys()
        batch = {n: np.concatenate([inputs[n] for _, inputs in requests]) for n in names}
        if _finite(server.run(signature, batch)):
            continue
        for number, inputs in requests:  # name the first request that fails
            if not _finite(server.run(signature, inputs)):
                return False, f"request {number} gave a non-finite output"
        return False, f"requests {requests[0][0]}..{requests[-1][0]} gave a non-finite output as one batch"
    if expected is not None and count != expected:
        return False, f"{count} requests replayed, but the export wrote {expected} (file truncated?)"
    return count > 0, f"{count} requests replayed, all outputs finite"


def _is_matrix(sample) -> bool:
    return sample.get("serving_inputs") == "matrix"


def _columns(sample, rows, texts=None):
    """The feature signatures' inputs for float64 [n, F] rows, and the
    categorical columns' texts ({column: [n] values}; default: the sample's)."""
    texts = sample.get("categorical") or {} if texts is None else texts
    found = {n: np.array([str(v).encode("utf-8") for v in values[:len(rows)]], dtype=object)
             for n, values in texts.items()}
    if _is_matrix(sample):
        return {layout.MATRIX_INPUT: rows, **found}
    return {**{n: rows[:, j] for j, n in enumerate(sample["features"])}, **found}


def _texts_of(sample, value, rows) -> dict:
    return {n: [value] * rows for n in sample.get("categorical") or {}}


def _per_feature(sample, outputs):
    """Signature outputs with each method's matrix (matrix signatures) split
    into its columns' names (the sample's "output_columns")."""
    split = {}
    for key, value in outputs.items():
        names = (sample.get("output_columns") or {}).get(key)
        split.update({n: value[:, j] for j, n in enumerate(names)} if names else {key: value})
    return split


def check_one_row(server, sample, rows):
    one = server.run("serving_default", _columns(sample, rows[:1]))
    empty = server.run("serving_default", _columns(sample, np.full((1, rows.shape[1]), np.nan), _texts_of(sample, "", 1)))
    ok = _finite(one) and _finite(empty)
    return ok, "one real row and one all-missing row: " + ("finite" if ok else "NON-FINITE output")


UNSEEN = "normpipe verify: a value never seen"


def check_unseen(server, sample, rows):
    """Real numeric values with categorical values never seen in training,
    and with empty ones: finite outputs, ids of the out-of-vocabulary
    buckets and of missing (0)."""
    if not sample.get("categorical"):
        return None, "no categorical column"
    found = []
    for value, what in ((UNSEEN, "unseen"), ("", "empty")):
        texts = _texts_of(sample, value, len(rows[:2]))
        served = server.run("serving_default", _columns(sample, rows[:2], texts))
        ids = server.run("transform_features", _columns(sample, rows[:2], texts))
        if not _finite(served):
            return False, f"a request with {what} categorical values gave a non-finite output"
        # normpipe's ids; a text input of a graph of one's own has no `<column>_id` served
        served_ids = [n for n in sample["categorical"] if n + "_id" in ids]
        found.append(f"{what}: ids " + (", ".join(f"{n}={int(np.asarray(ids[n + '_id'])[0])}" for n in served_ids)
                                        or "not served"))
    return True, "finite outputs; " + "; ".join(found)


def check_transform_skew(server, sample, rows):
    """Served transform_features against the Beam pipeline's own values for
    the same rows (recorded by the transform stage), or, for an export whose
    pipeline recorded none, against the export's module before saving."""
    served = _per_feature(sample, server.run("transform_features", _columns(sample, rows)))
    expected, source = sample.get("pipeline_transform"), "Beam pipeline"
    if not expected:
        expected, source = sample["transform_features"], "export-time module"
    missing = sorted(set(served) - set(expected))
    if missing:
        return False, f"{source} recorded no values for {', '.join(missing)}"
    worst = max(float(np.max(np.abs(np.asarray(served[k], np.float64) - np.asarray(expected[k], np.float64))))
                for k in served)
    return worst <= TRANSFORM_TOLERANCE, (f"max |serving - {source}| = {worst:.3g} over {len(rows)} rows "
                                          f"(limit {TRANSFORM_TOLERANCE:g})")


def check_prediction_skew(server, sample, rows):
    if sample.get("predictions") is None:
        return None, "no model in this export"
    served = server.run("serving_default", _columns(sample, rows))["prediction"]
    expected = np.asarray(sample["predictions"])
    worst = float(np.max(np.abs(served - expected) / np.maximum(1.0, np.abs(expected))))
    return worst <= PREDICTION_TOLERANCE, f"max relative |serving - in-pipeline| = {worst:.3g} (limit {PREDICTION_TOLERANCE:g})"


def _example_feature(value, kind):
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode("utf-8")]))
    if kind == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def check_examples(server, sample, rows):
    kinds = sample.get("example_types") or dict.fromkeys(sample["features"], "float")
    # what a tf.train.Example carries: float32 for float features, exact int64 for integer ones
    rounded = np.stack([rows[:, j].astype(np.float32).astype(np.float64) if kinds[n] == "float" else rows[:, j]
                        for j, n in enumerate(sample["features"])], axis=1)
    texts = sample.get("categorical") or {}
    examples = []
    for number, row in enumerate(rounded):
        feature = {n: _example_feature(v, kinds[n]) for n, v in zip(sample["features"], row) if not np.isnan(v)}
        feature.update({n: _example_feature(_code(values[number], kinds[n]), kinds[n])
                        for n, values in texts.items() if values[number] != ""})
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    serialized = np.array(examples, dtype=object)
    from_examples = server.run("serving_examples", {"examples": serialized})
    from_features = server.run("serving_default", _columns(sample, rounded))
    worst = max(relative_error(from_examples[k], from_features[k]) for k in from_features)
    detail = f"max relative |examples - features| = {worst:.3g}"
    task = sample.get("task")
    if task:
        expected = np.asarray(from_features[layout.PREDICTION]).reshape(-1)
        if task == "regression":
            served = np.asarray(server.run(layout.REGRESS, {"inputs": serialized})["outputs"]).reshape(-1)
        else:
            classified = server.run(layout.CLASSIFY, {"inputs": serialized})
            served = np.asarray(classified["scores"])
            classes = sample.get("classes") or ["0", "1"]
            found = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in np.asarray(classified["classes"])[0]]
            if found != list(classes):
                return False, f"classify returns classes {found}, expected {list(classes)}"
            expected = np.asarray(from_features[layout.PREDICTION])
            served = served[:, 1] if expected.ndim == 1 else served
        gap = relative_error(served, expected)
        worst = max(worst, gap)
        detail += f"; {layout.REGRESS if task == 'regression' else layout.CLASSIFY} vs serving_default {gap:.3g}"
    return worst <= PREDICTION_TOLERANCE, detail


def _code(text, kind):
    """A categorical value as its tf.train.Example carries it: text, or a number (an integer code)."""
    return text if kind == "bytes" else int(text) if kind == "int64" else float(text)


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))))


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:200]}"


def load_sample(version_dir: str):
    """(sample, rows) from assets.extra/normpipe_verify_sample.json."""
    sample = json.loads(paths.read_text(paths.join(version_dir, "assets.extra", VERIFY_SAMPLE)))
    rows = np.array([[np.nan if v is None else v for v in row] for row in sample["rows"]], np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(sample["features"]):
        raise ValueError(f"rows of shape {rows.shape} for {len(sample['features'])} features")
    return sample, rows


def verify(model_dir: str, report=print) -> bool:
    """Runs every check, reporting one PASS/FAIL/SKIP line each; True if none failed.

    An export that cannot be loaded (a file missing, truncated or corrupt) or
    whose verify sample cannot be read fails with a `load` or `sample` line.
    """
    version_dir = resolve_version_dir(model_dir)
    if not paths.exists(paths.join(version_dir, "assets.extra", VERIFY_SAMPLE)):
        raise UserError(f"{version_dir}: no assets.extra/{VERIFY_SAMPLE}; was it exported by normpipe?")
    report(f"verify {version_dir}")
    try:
        sample, rows = load_sample(version_dir)
    except Exception as exc:  # pylint: disable=broad-except  -- a damaged sample is a result
        report(f"FAIL sample: assets.extra/{VERIFY_SAMPLE} cannot be read: {first_line(exc)}")
        return False
    try:
        server = ServingSession(version_dir)
    except Exception as exc:  # pylint: disable=broad-except  -- a damaged export is a result
        report(f"FAIL load: the SavedModel does not load as TF Serving loads it: {first_line(exc)}")
        return False
    checks = [
        ("signatures", lambda: check_signatures(server, sample)),
        ("warmup", lambda: check_warmup(server, version_dir, len(rows))),
        ("one_row", lambda: check_one_row(server, sample, rows)),
        ("unseen", lambda: check_unseen(server, sample, rows)),
        ("transform_skew", lambda: check_transform_skew(server, sample, rows)),
        ("prediction_skew", lambda: check_prediction_skew(server, sample, rows)),
        ("examples", lambda: check_examples(server, sample, rows)),
    ]
    passed = True
    for name, check in checks:
        try:
            ok, detail = check()
        except Exception as exc:  # pylint: disable=broad-except  -- a failing check is a result
            ok, detail = False, first_line(exc)
        report(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'} {name}: {detail}")
        passed = passed and ok is not False
    return passed
