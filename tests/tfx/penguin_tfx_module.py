"""A user's TFX module file: normpipe's preprocessing_fn beside a
vocabulary of the year, and a model of the user's own over both.

tests/tfx/test_tfx_labels.py imports it; tests/tfx/test_tfx_pipeline_labels.py
hands a copy of this file to TFX's Transform and Trainer as their module.
"""

import tensorflow as tf
import tensorflow_transform as tft

import normpipe.tfx

CONFIG = {"label": "species", "features": ["bill_length_mm", "body_mass_g", "year"]}


def preprocessing_fn(inputs):
    """normpipe's outputs, and a vocabulary id of the year beside them."""
    outputs = normpipe.tfx.preprocessing_fn(inputs, CONFIG)
    outputs["year_id"] = tft.compute_and_apply_vocabulary(tf.reshape(inputs["year"], [-1]), vocab_filename="year")
    return outputs


def user_model_fn(feature_names, num_classes):
    import keras

    inputs = [keras.Input(shape=(1,), name=name) for name in list(feature_names) + ["year_id"]]
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model
