"""Export: a SavedModel for TF Serving with the normalization in the graph.

Signatures (tag `serve`):

  serving_default     one DT_DOUBLE [None] input per raw feature (NaN =
                      missing, imputed in-graph) -> `prediction` [None]
                      (float32; more than two classes: [None, K]
                      probabilities), or, without a model, the normalized
                      features
  regress / classify  (with a model) TF Serving's method names; classify's
                      `classes` are the class names, `scores` [None, K]
  serving_examples    `examples`: DT_STRING [None] serialized tf.train.Example
                      (float features; absent = missing) -> the same outputs
  transform_features  raw features in, the tf.Transform graph's normalized
                      features out

Matrix signatures (`serving_inputs="matrix"`; "auto" picks them beyond
serving_layout.MATRIX_FEATURES features): serving_default and
transform_features take one DT_DOUBLE [None, F] input, MATRIX_INPUT, its
columns in assets.extra/normpipe_features.json's "inputs" order, and the
normalized features come out as one float32 [None, F] matrix per method
(named by the method, columns in "output_columns" order); the tf.train.Example
signatures are the same, parsed into the matrix. A signature then has a few
inputs and outputs whatever the width, so tracing it, and TF Serving's first
call of it, do not grow with the number of features.

Inputs are float64: a float32 unix timestamp (~1.4e9) is only accurate to
128 s, which would show up as training/serving skew. The tf.Transform graph is
copied into the export (tracked by the module), so deleting the pipeline's
transform output changes nothing.

Layout: <serving-root>/<model-name>/<version>/, the version an integer. The
SavedModel, its `assets.extra/tf_serving_warmup_requests` and the verify
sample are written to a hidden temporary directory beside it and renamed into
place, so TF Serving, which polls the model directory, never sees a
half-written version; two exports racing for one number end with one of them
taking the next. <serving-root>/models.config is a `model_config_list` for
`tensorflow_model_server --model_config_file`.
"""

import json
import os
import shutil

from normpipe.core.errors import UserError
from normpipe.io import paths

# The layout of a version directory and the names requests use, kept in
# serving_layout (which `normpipe verify` imports without tf.Transform).
from normpipe.serving import serving_layout as layout
from normpipe.serving.example_parsing import example_types
from normpipe.serving.sample_rows import pipeline_sample, statistics_rows, verify_sample, vocabulary_texts
from normpipe.serving.servable_files import publish_version, write_models_config, write_warmup
from normpipe.serving.serving_layout import PREDICTION
from normpipe.serving.serving_module import ServingModule

__all__ = ["ServingModule", "export_model", "export_normalization_model", "write_servable"]


def write_servable(path: str, transform_dir: str, model=None, variant="tft", model_inputs=None, sample_rows=None,
                   predict_fn=None, model_name="normpipe", task=None, serving_inputs="auto", classes=None) -> None:
    """Writes a servable SavedModel at `path` (a new directory), with its
    assets.extra: warmup requests, the verify sample, the input names.

    sample_rows: raw float64 [n, F] rows for the warmup requests and the
    verify sample (default: the rows the transform stage recorded with the
    Beam pipeline's values for them, else `statistics_rows`); predict_fn(rows,
    texts) -> the in-pipeline model's predictions for them (texts: {categorical
    column: the rows' values}), recorded so verify can
    check serving against it (default: the model applied before saving).
    task: "regression" (a `regress` signature) or "classification"
    (`classify`), for an export with a model; classes: the class names in
    index order (default "0", "1"; more than two: a softmax model).
    serving_inputs: "named", "matrix" or "auto" (see the module docstring).
    """
    module = ServingModule(transform_dir, model, variant, model_inputs, task, serving_inputs=serving_inputs,
                           classes=classes)
    module.write(path)
    extra = paths.join(path, "assets.extra")
    paths.makedirs(extra)
    # What a client sends: the signature's input names, the tf.Example type of
    # each, and the raw column each came from where its own name was not valid.
    with paths.open(paths.join(extra, layout.FEATURES_FILE), "w") as f:
        json.dump({"inputs": module.features, "categorical": module.categorical,
                   "example_types": example_types(module.metadata, module.features + module.categorical),
                   "renamed": module.metadata.get("renamed", {}), "serving_inputs": module.serving_inputs,
                   "outputs": [PREDICTION] if model is not None else list(module.output_columns() or module.outputs),
                   "output_columns": module.output_columns()}, f, indent=2)
    pipeline_values, texts = None, None
    if sample_rows is None or not len(sample_rows):
        sample_rows, pipeline_values, texts = pipeline_sample(transform_dir, module.features, module.categorical)
    if sample_rows is None or not len(sample_rows):
        sample_rows = statistics_rows(transform_dir, module.metadata, module.features)
    if texts is None:
        texts = vocabulary_texts(transform_dir, module.categorical, len(sample_rows))
    if predict_fn is None and model is not None:
        predict_fn = lambda rows, texts: module.predict_rows(rows, texts).numpy()  # noqa: E731
    write_warmup(os.path.join(extra, layout.WARMUP_FILE), model_name, module.features, sample_rows,
                 matrix=module.serving_inputs == "matrix", texts=texts)
    limit = layout.sample_limit(len(module.features))
    sample_rows, texts = sample_rows[:limit], {name: values[:limit] for name, values in texts.items()}
    outputs = None if predict_fn is None else predict_fn(sample_rows, texts)
    with paths.open(paths.join(extra, layout.VERIFY_SAMPLE), "w") as f:
        json.dump(verify_sample(module, sample_rows, outputs, pipeline_values, texts), f)


def export_model(transform_dir, serving_root, model_name, version=None, model=None, variant="tft",
                 model_inputs=None, sample_rows=None, predict_fn=None, task=None, base_path=None,
                 serving_inputs="auto", classes=None) -> str:
    """Exports a servable as <serving_root>/<model_name>/<version>/ and
    rewrites models.config; returns the version directory.

    See `write_servable` for the arguments.
    """
    layout.check_model_name(model_name)
    if version is not None and (not isinstance(version, int) or version < 1):
        raise UserError(f"--model-version must be a positive integer. Received: {version!r}")
    model_dir = paths.join(serving_root, model_name)
    paths.makedirs(model_dir)
    if version is not None and paths.exists(paths.join(model_dir, str(version))):
        raise UserError(f"{paths.join(model_dir, str(version))} already exists; choose another --model-version")
    # local scratch: beside the model directory when local (the rename publishes it), else the system's
    staging = paths.local_temp_dir(".export-", model_dir)
    try:
        write_servable(staging, transform_dir, model, variant, model_inputs, sample_rows, predict_fn, model_name, task,
                       serving_inputs=serving_inputs, classes=classes)
        final = publish_version(staging, model_dir, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_models_config(serving_root, base_path)
    return final


def export_normalization_model(transform_dir: str, serving_root: str, model_name: str, version=None,
                               sample_rows=None, base_path=None, serving_inputs="auto") -> str:
    """The transform graph alone as a servable (serving_default -> normalized features)."""
    return export_model(transform_dir, serving_root, model_name, version, sample_rows=sample_rows,
                        base_path=base_path, serving_inputs=serving_inputs)
