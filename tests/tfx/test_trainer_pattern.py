"""TFX's own Trainer pattern on a transform graph made with normpipe.tfx.normalize.

As TFX's Keras examples build a Trainer module: `tft_output.transform_features_layer()`
in front of a small tf_keras model (tf.Transform's layer is tf_keras, Keras 2),
trained on the transformed examples parsed with `transformed_feature_spec()`,
and a `serving_default` that parses serialized tf.Examples with
`raw_feature_spec()` (the raw metadata TFX's Transform writes) minus the label.
The SavedModel is saved, the transform graph deleted, and the reloaded
model's signatures are checked against numpy float64 and the in-memory model.
"""

import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

import normpipe.tfx
from tests.tfx import tfx_data
from tests.tfx.test_normalize import run_tfx_style_transform

FEATURES = ("bill_mm", "mass_g", "pressure", "timestamp", "year")
LABEL = "target"


def preprocessing_fn(inputs):
    outputs = normpipe.tfx.normalize(inputs, FEATURES)
    outputs["company_id"] = tft.compute_and_apply_vocabulary(inputs["company"], num_oov_buckets=1,
                                                             vocab_filename="company")
    outputs[LABEL] = inputs[LABEL]
    outputs["row"] = inputs["row"]
    return outputs


def build_keras_model(tft_output):
    """A small tf_keras model over named [batch, 1] inputs, as TFX's examples declare them."""
    import tf_keras

    inputs = {f"{n}_z": tf_keras.Input(shape=(1,), name=f"{n}_z") for n in FEATURES}
    inputs["company_id"] = tf_keras.Input(shape=(1,), name="company_id", dtype=tf.int64)
    size = tft_output.vocabulary_size_by_name("company") + 1
    company = tf_keras.layers.Flatten()(tf_keras.layers.Embedding(size, 2)(inputs["company_id"]))
    x = tf_keras.layers.concatenate([inputs[f"{n}_z"] for n in FEATURES] + [company])
    x = tf_keras.layers.Dense(8, activation="relu")(x)
    model = tf_keras.Model(inputs=inputs, outputs=tf_keras.layers.Dense(1)(x))
    model.compile(optimizer=tf_keras.optimizers.Adam(0.01), loss="mse")
    return model


def transformed_dataset(pattern, tft_output, batch_size=64):
    return tf.data.experimental.make_batched_features_dataset(
        sorted(tf.io.gfile.glob(pattern)), batch_size, tft_output.transformed_feature_spec(),
        reader=lambda files: tf.data.TFRecordDataset(files, compression_type="GZIP"), label_key=LABEL,
        num_epochs=1, shuffle=False)


def serving_signatures(model, tft_output):
    """serving_default and transform_features, as TFX's Keras examples write them."""
    model.tft_layer = tft_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples_fn(serialized_tf_examples):
        feature_spec = tft_output.raw_feature_spec()
        feature_spec.pop(LABEL)
        parsed_features = tf.io.parse_example(serialized_tf_examples, feature_spec)
        transformed_features = model.tft_layer(parsed_features)
        return {"outputs": model(transformed_features)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features_fn(serialized_tf_examples):
        parsed_features = tf.io.parse_example(serialized_tf_examples, tft_output.raw_feature_spec())
        return model.tft_layer(parsed_features)

    return {"serving_default": serve_tf_examples_fn.get_concrete_function(),
            "transform_features": transform_features_fn.get_concrete_function()}


@pytest.mark.slow
def test_transform_features_layer_in_front_of_a_tf_keras_model(tmp_path):
    columns, strings = tfx_data.penguin_like()
    graph_dir, pattern = run_tfx_style_transform(tmp_path / "transform", columns, strings, preprocessing_fn)
    tft_output = tft.TFTransformOutput(graph_dir)
    model = build_keras_model(tft_output)
    model.fit(transformed_dataset(pattern, tft_output).repeat(), steps_per_epoch=40, epochs=2, verbose=0)
    # the trained model on the materialized transformed examples, by row
    rows, expected = [], []
    for features, _ in transformed_dataset(pattern, tft_output):
        rows.append(features["row"].numpy().reshape(-1))
        expected.append(model(features).numpy().reshape(-1))
    in_memory = np.empty(tfx_data.N)
    in_memory[np.concatenate(rows)] = np.concatenate(expected)

    serving_dir = str(tmp_path / "serving_model")
    model.save(serving_dir, save_format="tf", signatures=serving_signatures(model, tft_output))
    shutil.rmtree(tmp_path / "transform")  # the export must not need the transform output
    loaded = tf.saved_model.load(serving_dir)

    serialized = tf.constant([tfx_data.example(columns, strings, i).SerializeToString() for i in range(tfx_data.N)])
    prediction = loaded.signatures["serving_default"](examples=serialized)["outputs"].numpy().reshape(-1)
    assert np.all(np.isfinite(prediction))
    np.testing.assert_allclose(prediction, in_memory, rtol=1e-5, atol=1e-5)  # no training/serving skew
    transformed = loaded.signatures["transform_features"](examples=serialized)
    for name in FEATURES:
        np.testing.assert_allclose(transformed[f"{name}_z"].numpy().reshape(-1),
                                   tfx_data.numpy_normalize(columns[name], "zscore"), rtol=0, atol=1e-6,
                                   err_msg=name)
    vocabulary = tfx_data.numpy_vocabulary(strings["company"])
    np.testing.assert_array_equal(transformed["company_id"].numpy().reshape(-1),
                                  [vocabulary.index(c) for c in strings["company"]])
