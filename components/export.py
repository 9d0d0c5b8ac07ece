"""Export: a SavedModel for TF Serving with the normalization in the graph.

`export_normalization_model` writes the transform graph itself as a servable
(for teams that serve preprocessing separately):

  serving_default     one DT_DOUBLE [None] input per raw feature (NaN =
                      missing, imputed in-graph) -> normalized features
  serving_examples    `examples`: DT_STRING [None] serialized tf.train.Example
                      (float features; absent = missing) -> the same outputs
  transform_features  raw features in, normalized features out

Inputs are float64: a float32 unix timestamp (~1.4e9) is only accurate to
128 s, which would show up as training/serving skew.

Layout: <serving-root>/<model-name>/<version>/ (tag `serve`), the version an
integer. The SavedModel is written to a hidden temporary directory beside it
and renamed into place, so TF Serving, which polls the model directory, never
sees a half-written version; two exports racing for one version number end
with one of them moving to the next number. <serving-root>/models.config is a
`model_config_list` for `tensorflow_model_server --model_config_file`.
"""

import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from components import atomic, statistics, transform
from components.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def check_model_name(name: str) -> str:
    """Model names become directory names: [A-Za-z0-9._-], not '.' or '..'."""
    if not _NAME.match(name or "") or name in (".", ".."):
        raise UserError(f"--model-name must match [A-Za-z0-9._-]+ and not be '.' or '..'. Received: {name!r}")
    return name


def existing_versions(model_dir: str):
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if n.isdigit())


class NormalizationModule(tf.Module):
    """The tf.Transform graph wrapped with TF Serving signatures."""

    def __init__(self, transform_dir: str):
        super().__init__()
        self.metadata = transform.read_metadata(transform_dir)
        self.transform = statistics.load_transform_graph(transform_dir)
        self.features = list(self.metadata["features"])
        self.outputs = [o for m in self.metadata["methods"] for o in self.metadata["outputs"][m]]

    def normalize(self, inputs: dict) -> dict:
        """Raw float64 features -> normalized float32 features."""
        batch = tf.shape(inputs[self.features[0]])[0]
        missing = tf.fill([batch], tf.constant(np.nan, tf.float64))
        # The graph also takes the label; serving requests have none.
        raw = {name: inputs.get(name, missing) for name in self.metadata["raw_inputs"]}
        outputs = self.transform.transform_fn(raw)
        return {name: outputs[name] for name in self.outputs}

    def signatures(self):
        specs = {name: tf.TensorSpec([None], tf.float64, name=name) for name in self.features}
        parse_spec = {name: tf.io.FixedLenFeature([], tf.float32, default_value=np.nan) for name in self.features}

        @tf.function(input_signature=[specs])
        def serve_features(inputs):
            return self.normalize(inputs)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(examples):
            parsed = tf.io.parse_example(examples, parse_spec)
            return self.normalize({k: tf.cast(v, tf.float64) for k, v in parsed.items()})

        features_fn = serve_features.get_concrete_function()
        return {
            "serving_default": features_fn,
            "serving_examples": serve_examples.get_concrete_function(),
            "transform_features": features_fn,
        }


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
    while True:
        number = version if version is not None else max(existing_versions(model_dir), default=0) + 1
        final = os.path.join(model_dir, str(number))
        try:
            os.rename(staging, final)  # fails if another export took the number
            return final
        except OSError:
            if version is not None:
                raise UserError(f"{final} already exists; choose another --model-version") from None


def export_normalization_model(transform_dir: str, serving_root: str, model_name: str, version=None) -> str:
    """Exports the transform graph as a servable; returns the version path."""
    check_model_name(model_name)
    if version is not None and (not isinstance(version, int) or version < 1):
        raise UserError(f"--model-version must be a positive integer. Received: {version!r}")
    model_dir = os.path.join(serving_root, model_name)
    os.makedirs(model_dir, exist_ok=True)
    if version is not None and os.path.exists(os.path.join(model_dir, str(version))):
        raise UserError(f"{os.path.join(model_dir, str(version))} already exists; choose another --model-version")
    staging = tempfile.mkdtemp(prefix=".export-", dir=model_dir)
    try:
        module = NormalizationModule(transform_dir)
        tf.saved_model.save(module, staging, signatures=module.signatures())
        final = publish_version(staging, model_dir, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_models_config(serving_root)
    return final
