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

import tensorflow as tf

from normpipe.components import transform, user_model
from normpipe.core.errors import UserError
from normpipe.io import paths

# The layout of a version directory and the names requests use, kept in
# serving_layout (which `normpipe verify` imports without tf.Transform).
from normpipe.serving import serving_layout as layout
from normpipe.serving.example_parsing import example_types, parse_example_matrix
from normpipe.serving.sample_rows import pipeline_sample, statistics_rows, verify_sample
from normpipe.serving.servable_files import publish_version, set_method_names, write_models_config, write_warmup
from normpipe.serving.serving_layout import CLASSIFY, MATRIX_INPUT, PREDICTION, REGRESS


class ServingModule:
    """The tf.Transform graph, and optionally a Keras model, with signatures.

    `variant` says what the model takes: "tft" -> the graph's outputs
    `model_inputs`; any other -> the raw float64 features. `serving_inputs`:
    "named", "matrix" or "auto" (see the module docstring).
    """

    def __init__(self, transform_dir: str, model=None, variant="tft", model_inputs=None, task=None,
                 serving_inputs="auto", classes=None):
        from tensorflow_transform.saved import saved_transform_io_v2  # pylint: disable=import-outside-toplevel

        if task not in (None, "regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification'. Received: {task!r}")
        # What TF Serving's Regress or Classify API may call (with a model only).
        self.task = (task or "regression") if model is not None else None
        # classify's class names in index order (default "0", "1"); more than
        # two: the model's output is [batch, K] probabilities
        self.classes = [str(c) for c in classes] if classes else ["0", "1"]
        self.metadata = transform.read_metadata(transform_dir)
        self.features = list(self.metadata["features"])
        self.outputs = [o for m in self.metadata["methods"] for o in self.metadata["outputs"][m]]
        self.serving_inputs = layout.serving_inputs_for(serving_inputs, len(self.features))
        self.model = model
        self._variant = variant
        self._model_inputs = list(model_inputs or [])
        # A user model with named inputs takes a dict of [batch, 1] features:
        # normalized ones, or other outputs of a user's preprocessing_fn
        # (`_extra`, e.g. a vocabulary id of a numeric feature).
        self._named = None
        if model is not None and variant == "tft":
            self._named = user_model.input_names(model, self.outputs + _transformed_names(transform_dir))
        self._extra = [n for n in self._named or () if n not in self.outputs]
        # Graphs that emit each method's features as one matrix (normpipe's
        # own) are asked for those matrices only, and the request is given
        # to them as one matrix where the graph takes one: the serving
        # functions then hold a few ops, not several per feature, and the
        # per-feature outputs are one split of the matrix. Graphs without
        # matrices (TFX's, which materialize every output) are asked for
        # their per-feature outputs.
        matrices = self.metadata.get("matrices") or {}
        self._matrices = [matrices[m] for m in self.metadata["methods"]] if all(
            m in matrices for m in self.metadata["methods"]) else None
        # A tft model whose input is one method's features in order reads that
        # method's matrix output.
        self._matrix = None
        if model is not None and variant == "tft" and self._matrices and self._named is None:
            for method, key in zip(self.metadata["methods"], self._matrices):
                if self._model_inputs == list(self.metadata["outputs"][method]):
                    self._matrix = key
        # tf.Transform's own loader (what TransformFeaturesLayer uses), pruned
        # to the features a request carries and the outputs served: the
        # label input is supplied by the loader, and the statistics output,
        # a [batch, 6, F] tile, is not computed per request.
        self._loader = saved_transform_io_v2.SavedModelLoader(os.path.join(transform_dir, "transform_fn"))
        self._inputs = transform.graph_inputs(self.metadata)
        spec = self.metadata["raw_specs"].get(self._inputs[0], {}) if len(self._inputs) == 1 else {}
        self._takes_matrix = spec.get("columns") == self.features
        self._loader.finalize(self._inputs, (self._matrices or self.outputs) + self._extra)
        # The loaded graph owns the variables the pruned function reads;
        # tracking it puts them in the export (as TransformFeaturesLayer does).
        self.transform = self._loader._imported  # pylint: disable=protected-access

    def _columns(self, x) -> dict:
        return dict(zip(self.features, tf.unstack(x, num=len(self.features), axis=1)))

    def _transform(self, x) -> dict:
        """The pruned transform graph's outputs for float64 [batch, F] raw
        features, given to the graph in its own input types."""
        if self._takes_matrix:
            raw = {self._inputs[0]: x}
        else:
            raw = transform.adapt_inputs(self._columns(x), self.metadata["raw_specs"], self._inputs)
        return self._loader.apply_transform_model(raw)

    def _normalize(self, x, outputs=None) -> dict:
        """float64 [batch, F] raw features -> {output: float32 [batch]}."""
        outputs = self._transform(x) if outputs is None else outputs
        if not self._matrices:
            return {name: outputs[name] for name in self.outputs}
        split = {}
        for method, key in zip(self.metadata["methods"], self._matrices):
            names = self.metadata["outputs"][method]
            split.update(zip(names, tf.unstack(outputs[key], num=len(names), axis=1)))
        return split

    def _method_matrices(self, x) -> dict:
        """float64 [batch, F] raw features -> {method: float32 [batch, F]}."""
        methods = self.metadata["methods"]
        if self._matrices:
            outputs = self._transform(x)
            return {m: outputs[key] for m, key in zip(methods, self._matrices)}
        outputs = self._normalize(x)
        return {m: tf.stack([outputs[n] for n in self.metadata["outputs"][m]], axis=1) for m in methods}

    def _served(self, x) -> dict:
        """The normalized features as the signatures return them."""
        return self._method_matrices(x) if self.serving_inputs == "matrix" else self._normalize(x)

    def normalized_features(self, rows) -> dict:
        """float64 [n, F] rows -> {output feature: float32 [n]}, whatever the signatures' form."""
        return self._normalize(tf.constant(rows, tf.float64))

    def predict_rows(self, rows):
        """float64 [n, F] rows -> the model's predictions, float32 [n]."""
        return self._predict(tf.constant(rows, tf.float64))[PREDICTION]

    def _predict(self, x) -> dict:
        if self.model is None:
            return self._served(x)
        if self._matrix:
            x = self._transform(x)[self._matrix]
        elif self._named is not None:
            outputs = self._transform(x)
            values = {**{n: outputs[n] for n in self._extra}, **self._normalize(x, outputs)}
            x = {n: tf.reshape(tf.cast(values[n], tf.float32), [-1, 1]) for n in self._named}
        elif self._variant == "tft":
            normalized = self._normalize(x)
            x = tf.stack([normalized[n] for n in self._model_inputs], axis=1)
        prediction = tf.cast(self.model(x, training=False), tf.float32)
        if self.task == "classification" and len(self.classes) > 2:
            return {PREDICTION: tf.reshape(prediction, [-1, len(self.classes)])}
        if self.task == "classification" and prediction.shape.rank == 2 and prediction.shape[-1] == 2:
            prediction = prediction[:, 1]  # a user model's [batch, 2]: P(class 1)
        return {PREDICTION: tf.reshape(prediction, [-1])}

    def _stack(self, inputs: dict):
        if self.serving_inputs == "matrix":
            return inputs[MATRIX_INPUT]
        return tf.stack([inputs[n] for n in self.features], axis=1)

    def input_specs(self) -> dict:
        """The feature signatures' inputs: one per feature, or the matrix."""
        if self.serving_inputs == "matrix":
            return {MATRIX_INPUT: tf.TensorSpec([None, len(self.features)], tf.float64, name=MATRIX_INPUT)}
        return {name: tf.TensorSpec([None], tf.float64, name=name) for name in self.features}

    def output_columns(self) -> dict:
        """{method: its output columns} of the matrices transform_features
        (and serving_default without a model) returns; {} for named signatures."""
        if self.serving_inputs != "matrix":
            return {}
        return {m: list(self.metadata["outputs"][m]) for m in self.metadata["methods"]}

    def normalize(self, inputs: dict) -> dict:
        """Raw float64 features ({feature: [batch]}, or {MATRIX_INPUT: [batch,
        F]}) -> the graph's normalized float32 features (one matrix per
        method for matrix signatures)."""
        return self._served(self._stack(inputs))

    def predict(self, inputs: dict) -> dict:
        return self._predict(self._stack(inputs))

    def predict_examples(self, examples) -> dict:
        """Serialized tf.train.Examples -> what `predict` gives for them."""
        kinds = example_types(self.metadata, self.features)
        return self._predict(parse_example_matrix(examples, self.features, kinds))

    def write(self, path: str) -> None:
        """Writes the SavedModel with Keras' ExportArchive.

        ExportArchive lists the Keras 3 model's variables explicitly, which
        the TF1 session loader (TF Serving, saved_model_cli run) needs; the
        transform graph is tracked as a TensorFlow trackable.
        """
        import keras  # pylint: disable=import-outside-toplevel

        specs = self.input_specs()

        archive = keras.export.ExportArchive()
        archive.track(self.transform)
        if self.model is not None:
            archive.track(self.model)
        archive.add_endpoint("transform_features", self.normalize, input_signature=[specs])
        # Without a model serving_default is the normalization: write_out
        # gives the first endpoint that name too, and the one function serves
        # both signatures (a wide one takes seconds to trace; an endpoint of
        # its own would trace it again).
        if self.model is not None:
            archive.add_endpoint("serving_default", self.predict, input_signature=[specs])
        archive.add_endpoint(
            "serving_examples", self.predict_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
        )
        examples_spec = [tf.TensorSpec([None], tf.string, name="inputs")]
        if self.task == "regression":
            def regress(inputs):
                return {"outputs": self.predict_examples(inputs)[PREDICTION]}

            archive.add_endpoint(REGRESS, regress, input_signature=examples_spec)
        elif self.task == "classification":
            def classify(inputs):
                p = self.predict_examples(inputs)[PREDICTION]
                scores = p if len(self.classes) > 2 else tf.stack([1.0 - p, p], axis=1)
                classes = tf.tile(tf.constant([self.classes]), tf.stack([tf.shape(p)[0], 1]))
                return {"classes": classes, "scores": scores}

            archive.add_endpoint(CLASSIFY, classify, input_signature=examples_spec)
        archive.write_out(path, verbose=False)
        set_method_names(path, {REGRESS: layout.REGRESS_METHOD, CLASSIFY: layout.CLASSIFY_METHOD})


def _transformed_names(transform_dir: str) -> list:
    """The transform graph's materialized outputs (transformed_metadata)."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    return sorted(tft.TFTransformOutput(transform_dir).transformed_feature_spec())


def write_servable(path: str, transform_dir: str, model=None, variant="tft", model_inputs=None, sample_rows=None,
                   predict_fn=None, model_name="normpipe", task=None, serving_inputs="auto", classes=None) -> None:
    """Writes a servable SavedModel at `path` (a new directory), with its
    assets.extra: warmup requests, the verify sample, the input names.

    sample_rows: raw float64 [n, F] rows for the warmup requests and the
    verify sample (default: the rows the transform stage recorded with the
    Beam pipeline's values for them, else `statistics_rows`); predict_fn(rows)
    -> the in-pipeline model's predictions for them, recorded so verify can
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
        json.dump({"inputs": module.features, "example_types": example_types(module.metadata, module.features),
                   "renamed": module.metadata.get("renamed", {}), "serving_inputs": module.serving_inputs,
                   "outputs": [PREDICTION] if model is not None else list(module.output_columns() or module.outputs),
                   "output_columns": module.output_columns()}, f, indent=2)
    pipeline_values = None
    if sample_rows is None or not len(sample_rows):
        sample_rows, pipeline_values = pipeline_sample(transform_dir, module.features)
    if sample_rows is None or not len(sample_rows):
        sample_rows = statistics_rows(transform_dir, module.metadata, module.features)
    if predict_fn is None and model is not None:
        predict_fn = lambda rows: module.predict_rows(rows).numpy()  # noqa: E731
    write_warmup(os.path.join(extra, layout.WARMUP_FILE), model_name, module.features, sample_rows,
                 matrix=module.serving_inputs == "matrix")
    sample_rows = sample_rows[:layout.sample_limit(len(module.features))]
    outputs = None if predict_fn is None else predict_fn(sample_rows)
    with paths.open(paths.join(extra, layout.VERIFY_SAMPLE), "w") as f:
        json.dump(verify_sample(module, sample_rows, outputs, pipeline_values), f)


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
