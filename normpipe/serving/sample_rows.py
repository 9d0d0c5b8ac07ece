"""Raw rows for an export's warmup requests and verify sample, when the
caller gives none: the rows the transform stage's Beam run recorded with
its values for them, or rows built from the statistics in the graph; and
the verify sample itself, those rows with the outputs computed for them.
"""

import json
import os

import numpy as np
import tensorflow as tf

from normpipe.components import transform
from normpipe.serving.example_parsing import example_types
from normpipe.serving.serving_layout import sample_limit


def pipeline_sample(transform_dir: str, features, categorical=()):
    """(raw rows [n, F], {output: values}, {categorical column: texts}) that
    the transform stage's Beam run recorded (transform.SAMPLE_FILE), or
    (None, None, None)."""
    path = os.path.join(transform_dir, transform.SAMPLE_FILE)
    if not tf.io.gfile.exists(path):
        return None, None, None
    with tf.io.gfile.GFile(path) as f:
        document = json.load(f)
    rows = np.array([[np.nan if v is None else v for v in row] for row in document["rows"]], np.float64)
    limit = sample_limit(len(features))
    texts = {name: list(document.get("categorical", {})[name][:limit]) for name in categorical}
    return (rows.reshape(-1, len(features))[:limit], {k: v[:limit] for k, v in document["transformed"].items()},
            texts)


# A value no vocabulary holds, in the rows built for a graph whose data is not at hand.
UNSEEN = "normpipe: a value never seen"


def vocabulary_texts(transform_dir: str, categorical, rows: int) -> dict:
    """{categorical column: `rows` texts} for rows built without the data:
    the vocabulary's most frequent values in turn, with a missing ("") and
    an unseen value among them (only those two for a text input whose
    vocabulary is not normpipe's)."""
    from normpipe.components import categories  # pylint: disable=import-outside-toplevel

    texts = {}
    for name in categorical:
        try:
            values = categories.read_vocabulary(transform_dir, name)[:max(rows - 2, 1)] or [""]
        except tf.errors.NotFoundError:  # a column of a graph of one's own: no vocabulary of normpipe's
            values = [""]
        cycle = (values + ["", UNSEEN]) if rows > 2 else values
        texts[name] = [cycle[i % len(cycle)] for i in range(rows)]
    return texts


def statistics_rows(transform_dir: str, metadata, features) -> np.ndarray:
    """Rows built from the statistics in the graph (min, max, mean, mean -+ std
    per feature, integers rounded for integer inputs), for an export whose
    raw data is not at hand, such as one from a TFX transform graph."""
    from normpipe.components import statistics  # pylint: disable=import-outside-toplevel

    stats = statistics.read_statistics(transform_dir)["features"]
    columns, kinds = [], example_types(metadata, features)
    for name in features:
        s = stats[name]
        values = [np.nan] * 5 if not s["count"] else [s["min"], s["max"], s["mean"], s["mean"] - s["std"],
                                                      s["mean"] + s["std"]]
        column = np.array(values, np.float64)
        if kinds[name] == "int64":
            column = np.round(column)
        columns.append(column)
    return np.stack(columns, axis=1)


def verify_sample(module, rows, model_outputs, pipeline_transform=None, texts=None):
    """Raw rows with the pipeline's own outputs for them, for `normpipe verify`.

    `pipeline_transform`: the normalized values (and categorical ids) the
    Beam pipeline computed for these rows (transform.SAMPLE_FILE);
    `transform_features`: what the export's module computed before it was
    saved; `texts`: the rows' categorical values.
    """
    normalized = {k: v.numpy() for k, v in module.normalized_features(rows, texts).items()}
    return {
        "features": module.features,
        "categorical": {name: list((texts or {})[name]) for name in module.categorical},
        "serving_inputs": module.serving_inputs,
        "output_columns": module.output_columns(),
        "example_types": example_types(module.metadata, module.features + module.categorical),
        "task": module.task,
        "classes": module.classes if module.task == "classification" else None,
        "rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
        "transform_features": {k: v.astype(np.float64).tolist() for k, v in normalized.items()},
        "pipeline_transform": pipeline_transform,
        "predictions": None if model_outputs is None else np.asarray(model_outputs, np.float64).tolist(),
    }
