"""Export: a SavedModel for TF Serving with the normalization in the graph.

Signatures (tag `serve`):

  serving_default     one DT_DOUBLE [None] input per raw feature (NaN =
                      missing, imputed in-graph) -> `prediction` [None]
                      (float32), or, without a model, the normalized features
  serving_examples    `examples`: DT_STRING [None] serialized tf.train.Example
                      (float features; absent = missing) -> the same outputs
  transform_features  raw features in, the tf.Transform graph's normalized
                      features out

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
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from normpipe.components import atomic, transform
from normpipe.components.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PREDICTION = "prediction"
VERIFY_SAMPLE = "normpipe_verify_sample.json"
FEATURES_FILE = "normpipe_features.json"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP = 1000


def check_model_name(name: str) -> str:
    """Model names become directory names: [A-Za-z0-9._-], not starting with
    '.' (a hidden directory, which models.config and TF Serving skip)."""
    if not _NAME.match(name or "") or name.startswith("."):
        raise UserError(f"--model-name must match [A-Za-z0-9._-]+ and not start with '.'. Received: {name!r}")
    return name


def existing_versions(model_dir: str):
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if n.isdigit())


class ServingModule:
    """The tf.Transform graph, and optionally a Keras model, with signatures.

    `variant` says what the model takes: "tft" -> the graph's outputs
    `model_inputs`; any other -> the raw float64 features.
    """

    def __init__(self, transform_dir: str, model=None, variant="tft", model_inputs=None):
        from tensorflow_transform.saved import saved_transform_io_v2  # pylint: disable=import-outside-toplevel

        self.metadata = transform.read_metadata(transform_dir)
        self.features = list(self.metadata["features"])
        self.outputs = [o for m in self.metadata["methods"] for o in self.metadata["outputs"][m]]
        # tf.Transform's own loader (what TransformFeaturesLayer uses), pruned
        # to the features a request carries and the outputs served: the
        # label input is supplied by the loader, and the statistics output,
        # a [batch, 6, F] tile, is not computed per request.
        self.model = model
        self._variant = variant
        self._model_inputs = list(model_inputs or [])
        # A tft model whose input is one method's features in order reads that
        # method's matrix output (absent from transform graphs written before
        # it existed).
        self._matrix = None
        if model is not None and variant == "tft":
            for method, key in self.metadata.get("matrices", {}).items():
                if self._model_inputs == list(self.metadata["outputs"][method]):
                    self._matrix = key
        self._loader = saved_transform_io_v2.SavedModelLoader(os.path.join(transform_dir, "transform_fn"))
        self._loader.finalize(self.features, self.outputs + ([self._matrix] if self._matrix else []))
        # The loaded graph owns the variables the pruned function reads;
        # tracking it puts them in the export (as TransformFeaturesLayer does).
        self.transform = self._loader._imported  # pylint: disable=protected-access

    def _transform(self, inputs: dict) -> dict:
        """The pruned transform graph's outputs for the request's features."""
        return self._loader.apply_transform_model({name: inputs[name] for name in self.features})

    def normalize(self, inputs: dict) -> dict:
        """Raw float64 features -> the graph's normalized float32 features."""
        outputs = self._transform(inputs)
        return {name: outputs[name] for name in self.outputs}

    def predict(self, inputs: dict) -> dict:
        if self.model is None:
            return self.normalize(inputs)
        if self._matrix:
            x = self._transform(inputs)[self._matrix]
        elif self._variant == "tft":
            normalized = self.normalize(inputs)
            x = tf.stack([normalized[n] for n in self._model_inputs], axis=1)
        else:
            x = tf.stack([inputs[n] for n in self.features], axis=1)
        prediction = self.model(x, training=False)
        return {PREDICTION: tf.reshape(tf.cast(prediction, tf.float32), [-1])}

    def write(self, path: str) -> None:
        """Writes the SavedModel with Keras' ExportArchive.

        ExportArchive lists the Keras 3 model's variables explicitly, which
        the TF1 session loader (TF Serving, saved_model_cli run) needs; the
        transform graph is tracked as a TensorFlow trackable.
        """
        import keras  # pylint: disable=import-outside-toplevel

        specs = {name: tf.TensorSpec([None], tf.float64, name=name) for name in self.features}
        parse_spec = {name: tf.io.FixedLenFeature([], tf.float32, default_value=np.nan) for name in self.features}

        def serve_examples(examples):
            parsed = tf.io.parse_example(examples, parse_spec)
            return self.predict({k: tf.cast(v, tf.float64) for k, v in parsed.items()})

        archive = keras.export.ExportArchive()
        archive.track(self.transform)
        if self.model is not None:
            archive.track(self.model)
        archive.add_endpoint("serving_default", self.predict, input_signature=[specs])
        archive.add_endpoint(
            "serving_examples", serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
        )
        archive.add_endpoint("transform_features", self.normalize, input_signature=[specs])
        archive.write_out(path, verbose=False)


def write_models_config(serving_root: str) -> str:
    """models.config listing every model directory under serving_root."""
    entries = []
    for name in sorted(os.listdir(serving_root)):
        path = os.path.join(serving_root, name)
        if os.path.isdir(path) and _NAME.match(name) and not name.startswith(".") and existing_versions(path):
            entries.append(
                "  config {\n"
                f'    name: "{name}"\n'
                f'    base_path: "{os.path.abspath(path)}"\n'
                '    model_platform: "tensorflow"\n'
                "  }\n"
            )
    text = "model_config_list {\n" + "".join(entries) + "}\n"
    config_path = os.path.join(serving_root, "models.config")
    atomic.write_text_atomic(config_path, text)
    return config_path


def publish_version(staging: str, model_dir: str, version=None) -> str:
    """Renames a finished SavedModel into model_dir/<version>, atomically."""
    # mkdtemp made the staging directory 0700; TF Serving may run as another user.
    atomic.make_public_dir(staging)
    while True:
        number = version if version is not None else max(existing_versions(model_dir), default=0) + 1
        final = os.path.join(model_dir, str(number))
        try:
            os.rename(staging, final)  # fails if another export took the number
            return final
        except OSError:
            if version is not None:
                raise UserError(f"{final} already exists; choose another --model-version") from None


def write_warmup(path: str, model_name: str, features, rows: np.ndarray) -> None:
    """PredictionLog records, one real row per PredictRequest (NaN = missing)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # pylint: disable=import-outside-toplevel

    with tf.io.TFRecordWriter(path) as writer:
        for row in rows[:MAX_WARMUP]:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            for j, name in enumerate(features):
                request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array([row[j]], np.float64)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _verify_sample(module, rows, model_outputs):
    """Raw rows with the pipeline's own outputs for them, for `normpipe verify`."""
    inputs = {n: tf.constant(rows[:, j]) for j, n in enumerate(module.features)}
    normalized = {k: v.numpy() for k, v in module.normalize(inputs).items()}
    return {
        "features": module.features,
        "rows": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
        "transform_features": {k: v.astype(np.float64).tolist() for k, v in normalized.items()},
        "predictions": None if model_outputs is None else [float(v) for v in model_outputs],
    }


def export_model(transform_dir, serving_root, model_name, version=None, model=None, variant="tft",
                 model_inputs=None, sample_rows=None, predict_fn=None) -> str:
    """Exports a servable; returns the version directory.

    sample_rows: raw float64 [n, F] rows (real data) for the warmup requests
    and the verify sample; predict_fn(rows) -> the in-pipeline model's
    predictions for them, recorded so verify can check serving against it.
    """
    check_model_name(model_name)
    if version is not None and (not isinstance(version, int) or version < 1):
        raise UserError(f"--model-version must be a positive integer. Received: {version!r}")
    model_dir = os.path.join(serving_root, model_name)
    os.makedirs(model_dir, exist_ok=True)
    if version is not None and os.path.exists(os.path.join(model_dir, str(version))):
        raise UserError(f"{os.path.join(model_dir, str(version))} already exists; choose another --model-version")
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    try:
        module = ServingModule(transform_dir, model, variant, model_inputs)
        module.write(staging)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        # What a client sends: the signature's input names, and the raw column
        # each one came from where the column's own name was not a valid name.
        with open(os.path.join(extra, FEATURES_FILE), "w", encoding="utf-8") as f:
            json.dump({"inputs": module.features, "renamed": module.metadata.get("renamed", {}),
                       "outputs": [PREDICTION] if model is not None else module.outputs}, f, indent=2)
        if sample_rows is not None and len(sample_rows):
            write_warmup(os.path.join(extra, WARMUP_FILE), model_name, module.features, sample_rows)
            outputs = None if predict_fn is None else predict_fn(sample_rows)
            with open(os.path.join(extra, VERIFY_SAMPLE), "w", encoding="utf-8") as f:
                json.dump(_verify_sample(module, sample_rows[:MAX_WARMUP], outputs), f)
        final = publish_version(staging, model_dir, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_models_config(serving_root)
    return final


def export_normalization_model(transform_dir: str, serving_root: str, model_name: str, version=None,
                               sample_rows=None) -> str:
    """The transform graph alone as a servable (serving_default -> normalized features)."""
    return export_model(transform_dir, serving_root, model_name, version, sample_rows=sample_rows)
