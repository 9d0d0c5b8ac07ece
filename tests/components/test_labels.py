"""Which task a label is, its classes, and the checks on a user's model_fn."""

import collections

import keras
import numpy as np
import pytest

from normpipe.components import labels, user_model
from normpipe.core.errors import UserError


def counts_of(*chunks):
    counts = labels.LabelCounts()
    for chunk in chunks:
        counts.add(np.asarray(chunk, np.float64))
    return counts


def test_zero_one_labels_stay_binary_and_a_few_integers_are_multiclass():
    assert labels.resolve_task(counts_of([0, 1, 1], [0])) == labels.LabelTask("classification", ("0", "1"))
    multiclass = labels.resolve_task(counts_of([0, 2], [1, 1]))
    assert multiclass.classes == ("0", "1", "2") and multiclass.num_classes == 3 and multiclass.multiclass


def test_floats_many_integers_and_negative_integers_are_regression():
    assert labels.resolve_task(counts_of([0.5, 1, 2])).task == "regression"
    assert labels.resolve_task(counts_of(np.arange(1990, 2020))).task == "regression"
    assert labels.resolve_task(counts_of([-1, 0, 1, 2])).task == "regression"


def test_task_overrides_the_inference():
    assert labels.resolve_task(counts_of([0, 1, 2]), "regression").task == "regression"
    assert labels.resolve_task(counts_of([0, 1]), "regression").num_classes == 0
    forced = labels.resolve_task(counts_of(np.arange(1, 41)), "classification")
    assert forced.num_classes == 41 and forced.classes[-1] == "40"
    with pytest.raises(UserError, match="non-negative integers"):
        labels.resolve_task(counts_of([0.5, 1.0]), "classification", label="rating")
    with pytest.raises(UserError, match="--task must be"):
        labels.check_task("multiclass")


def test_string_labels_take_the_vocabulary_and_refuse_regression():
    task = labels.resolve_task(counts_of([0, 1, 2]), None, ["b", "a", "c"], "species")
    assert task.classes == ("b", "a", "c")
    with pytest.raises(UserError, match="holds strings"):
        labels.resolve_task(counts_of([0]), "regression", ["a", "b"], "species")
    with pytest.raises(UserError, match="at least 2"):
        labels.resolve_task(counts_of([0]), None, ["a"], "species")


def test_majority_is_the_most_frequent_training_label_ties_the_smallest():
    y = np.array([2, 2, 1, 1, 0])
    expected = min(collections.Counter(y.tolist()).items(), key=lambda kv: (-kv[1], kv[0]))[0]
    assert counts_of(y[:3], y[3:]).majority() == expected == 1


def _named(feature_names, num_classes):
    inputs = [keras.Input(shape=(1,), name=n) for n in feature_names[:2]]
    outputs = keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Concatenate()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _matrix(feature_names, num_classes):
    inputs = keras.Input(shape=(len(feature_names),))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("adam", "mse")
    return model


def test_model_fn_inputs_are_recognized_and_fed():
    names = ["a_z", "b_z", "c_z"]
    named = user_model.build(_named, names, 3)
    assert user_model.input_names(named, names) == ["a_z", "b_z"]
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    fed = user_model.as_model_input(matrix, named, names)
    np.testing.assert_array_equal(fed["b_z"], matrix[:, 1:2])
    plain = user_model.build(_matrix, names, 0)
    assert user_model.input_names(plain, names) is None
    assert user_model.as_model_input(matrix, plain, names) is matrix


def test_bad_model_fn_is_one_clear_error():
    with pytest.raises(UserError, match=r"cannot import 'no_such_package_x\.module'"):
        user_model.load_model_fn("no_such_package_x.module.fn")
    with pytest.raises(UserError, match="has no callable 'nothing'"):
        user_model.load_model_fn("numpy.nothing")
    with pytest.raises(UserError, match="dotted path"):
        user_model.load_model_fn("model")
    with pytest.raises(UserError, match=r"must return a keras\.Model"):
        user_model.build(lambda feature_names, num_classes: "model", ["a_z"], 0)
    with pytest.raises(UserError, match=r"output must be \[batch, 3\] for 3 classes. Received: \[batch, 1\]"):
        user_model.build(_matrix, ["a_z", "b_z"], 3)


def test_metric_values_match_numpy():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    y = np.array([0, 1, 1])
    assert user_model.metric_value(p, y, 3) == ("accuracy", float(np.mean(p.argmax(1) == y)))
    assert user_model.metric_value(np.array([[0.2], [0.9]]), np.array([1, 1]), 2) == ("accuracy", 0.5)
    assert user_model.metric_value(np.array([1.0, 3.0]), np.array([2.0, 2.0]), 0) == ("mae", 1.0)
