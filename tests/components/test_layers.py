"""Normalization layers against numpy float64 on the same values.

Expected numbers never come from the layers: each is numpy's float64 result
on the same inputs (cast to float32 where the layer returns float32).
"""

import re

import keras
import numpy as np
import pytest

from normpipe.components.layers import (
    OUTPUT_LIMIT,
    BatchMinMax,
    BatchZScore,
    DatasetMinMax,
    DatasetZScore,
    LearnedNormalization,
    MinValue,
)

EPSILON = 1e-7  # the recipe's


def run(layer, x):
    return keras.ops.convert_to_numpy(layer(x))


def random_batch(rows=8, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.normal(5.0, 2.0, rows), rng.uniform(-1.0, 1.0, rows), rng.exponential(3.0, rows)], axis=1
    ).astype(dtype)


def large_offset_data(rows=256, seed=1):
    """An ordinary column, a unix-timestamp-like column, and 1e6 +- 1e-2."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.normal(0.0, 1.0, rows), 1.4e9 + rng.normal(0.0, 3e7, rows), 1e6 + rng.normal(0.0, 1e-2, rows)],
        axis=1,
    )


def numpy_batch_minmax(x):
    with np.errstate(invalid="ignore"):
        return (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))


def numpy_batch_zscore(x):
    return (x - x.mean(axis=0)) / (x.std(axis=0) + EPSILON)


def dataset_zscore(x):
    return DatasetZScore(mean=x.mean(axis=0).tolist(), std=x.std(axis=0).tolist())


def dataset_minmax(x):
    return DatasetMinMax(min=x.min(axis=0).tolist(), max=x.max(axis=0).tolist(), mean=x.mean(axis=0).tolist())


def numpy_zscore(x, data):
    return ((x - data.mean(axis=0)) / data.std(axis=0)).astype(np.float32)


def numpy_minmax(x, data):
    return ((x - data.min(axis=0)) / (data.max(axis=0) - data.min(axis=0))).astype(np.float32)


BATCH_CASES = [(BatchMinMax, numpy_batch_minmax), (BatchZScore, numpy_batch_zscore)]
BATCH_IDS = ["minmax", "zscore"]
DATASET_CASES = [(dataset_zscore, numpy_zscore), (dataset_minmax, numpy_minmax)]
DATASET_IDS = ["zscore", "minmax"]


# --- the per-batch recipe ---------------------------------------------------


def test_batch_of_one_minmax_gives_nan():
    x = random_batch(rows=1)
    out = run(BatchMinMax(), x)
    assert np.isnan(out).all()
    np.testing.assert_array_equal(out, numpy_batch_minmax(x))


def test_batch_of_one_zscore_gives_zero():
    x = random_batch(rows=1)
    out = run(BatchZScore(), x)
    np.testing.assert_array_equal(out, numpy_batch_zscore(x))
    np.testing.assert_array_equal(out, np.zeros_like(x))


@pytest.mark.parametrize("layer_cls, reference", BATCH_CASES, ids=BATCH_IDS)
def test_batch_layers_match_numpy_float32(layer_cls, reference):
    x = random_batch(dtype=np.float32)
    out = run(layer_cls(), x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(x.astype(np.float64)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_cls, reference", BATCH_CASES, ids=BATCH_IDS)
def test_batch_layers_compute_float64_in_float64(layer_cls, reference):
    # 1e6 +- 1e-2 is lost in float32 (spacing 0.0625): only float64 math passes.
    x = large_offset_data(rows=16)
    out = run(layer_cls(), x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, reference(x), rtol=0, atol=1e-8)


@pytest.mark.parametrize("layer_cls", [BatchMinMax, BatchZScore], ids=BATCH_IDS)
def test_batch_output_of_a_row_depends_on_batch_mates(layer_cls):
    x = random_batch(rows=8)
    first = run(layer_cls(), x[:4])[0]
    second = run(layer_cls(), np.concatenate([x[:1], 10.0 * x[4:]]))[0]
    assert not np.allclose(first, second)


# --- full-dataset constants -------------------------------------------------


@pytest.mark.parametrize("make_layer, reference", DATASET_CASES, ids=DATASET_IDS)
def test_dataset_layers_match_numpy_large_offset(make_layer, reference):
    data = large_offset_data()
    out = run(make_layer(data), data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(data, data), rtol=0, atol=1e-6)


@pytest.mark.parametrize("make_layer, reference", DATASET_CASES, ids=DATASET_IDS)
def test_dataset_layers_accept_float32_input(make_layer, reference):
    data = random_batch(rows=64)
    x = data.astype(np.float32)
    out = run(make_layer(data), x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(x.astype(np.float64), data), rtol=0, atol=1e-6)


def test_zero_variance_zscore_maps_to_zero():
    layer = DatasetZScore(mean=[5.0, 5.0, 5.0, 1.0], std=[0.0, np.nan, np.inf, 2.0])
    x = np.array([[5.0, 5.0, 5.0, 3.0], [7.0, -1.0, 9.0, 0.0]])
    out = run(layer, x)
    np.testing.assert_array_equal(out[:, :3], np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(out[:, 3], ((x[:, 3] - 1.0) / 2.0).astype(np.float32))


def test_zero_variance_minmax_maps_to_zero():
    layer = DatasetMinMax(min=[3.0, 0.0], max=[3.0, 4.0], mean=[3.0, 1.0])
    x = np.array([[3.0, 1.0], [8.0, 6.0]])
    out = run(layer, x)
    np.testing.assert_array_equal(out[:, 0], np.zeros(2, np.float32))
    np.testing.assert_array_equal(out[:, 1], (x[:, 1] / 4.0).astype(np.float32))


def test_missing_value_is_imputed_with_mean():
    data = random_batch(rows=32)
    x = data[:2].copy()
    x[0, 0] = x[1, 2] = np.nan
    imputed = np.where(np.isnan(x), data.mean(axis=0), x)
    z = run(dataset_zscore(data), x)
    scaled = run(dataset_minmax(data), x)
    assert z[0, 0] == 0.0 and z[1, 2] == 0.0
    np.testing.assert_allclose(z, numpy_zscore(imputed, data), rtol=0, atol=1e-6)
    np.testing.assert_allclose(scaled, numpy_minmax(imputed, data), rtol=0, atol=1e-6)
    expected = (data.mean(axis=0) - data.min(axis=0)) / (data.max(axis=0) - data.min(axis=0))
    assert scaled[0, 0] == np.float32(expected[0])


@pytest.mark.parametrize("make_layer, reference", DATASET_CASES, ids=DATASET_IDS)
def test_infinite_input_gives_finite_output(make_layer, reference):
    data = random_batch(rows=32)
    x = np.array([[np.inf, -np.inf, 1.0], [-np.inf, np.inf, 2.0]])
    out = run(make_layer(data), x)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, :2], np.sign(x[:, :2]).astype(np.float32) * np.float32(OUTPUT_LIMIT))
    np.testing.assert_allclose(out[:, 2], reference(x, data)[:, 2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("make_layer", [dataset_zscore, dataset_minmax], ids=DATASET_IDS)
def test_batch_of_one_dataset_layers_equal_big_batch(make_layer):
    data = large_offset_data(rows=64)
    layer = make_layer(data)
    big = run(layer, data)
    for i in (0, 17, 63):
        np.testing.assert_array_equal(run(layer, data[i : i + 1]), big[i : i + 1])


# --- LearnedNormalization ---------------------------------------------------


def test_learned_normalization_recipe_init_is_zero_and_one():
    x = random_batch(dtype=np.float32)
    layer = LearnedNormalization()
    out = run(layer, x)
    np.testing.assert_array_equal(layer.mean.numpy(), np.zeros(3, np.float32))
    np.testing.assert_array_equal(layer.std.numpy(), np.ones(3, np.float32))
    assert layer.std.constraint is None
    np.testing.assert_allclose(out, x.astype(np.float64) / (1.0 + EPSILON), rtol=1e-6)


def test_learned_normalization_computes_float64_in_float64():
    x = random_batch()
    out = run(LearnedNormalization(mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 8.0]), x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, (x - [1.0, 2.0, 3.0]) / (np.array([2.0, 4.0, 8.0]) + EPSILON), rtol=1e-12)


def test_from_statistics_matches_dataset_zscore():
    data = random_batch(rows=64)
    data[:, 1] = 0.25  # zero_variance: std 0 becomes 1.0, the column still maps to 0
    mean, std = data.mean(axis=0).tolist(), data.std(axis=0).tolist()
    layer = LearnedNormalization.from_statistics(mean, std)
    assert layer.keep_std_positive
    x = data.astype(np.float32)
    np.testing.assert_allclose(run(layer, x), run(DatasetZScore(mean, std), x), rtol=0, atol=1e-5)
    assert layer.std.numpy()[1] == 1.0


def test_from_statistics_imputes_missing_but_recipe_does_not():
    x = np.array([[np.nan, 2.0]], np.float32)
    imputed = run(LearnedNormalization.from_statistics([1.0, 1.0], [2.0, 2.0]), x)
    recipe = run(LearnedNormalization(mean=[1.0, 1.0], std=[2.0, 2.0]), x)
    assert imputed[0, 0] == 0.0 and np.isnan(recipe[0, 0])
    np.testing.assert_allclose(imputed[0, 1], (2.0 - 1.0) / (2.0 + EPSILON), rtol=1e-6)


def fit_one_layer(layer, x, y, learning_rate, steps=1, head=False):
    inputs = keras.Input(shape=(x.shape[1],))
    outputs = layer(inputs)
    if head:
        outputs = keras.layers.Dense(1)(outputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    model.fit(x, y, batch_size=len(x) // steps, epochs=1, shuffle=False, verbose=0)
    return layer.mean.numpy(), layer.std.numpy()


def test_learned_normalization_is_trainable():
    x = random_batch(rows=8, dtype=np.float32)
    y = x.sum(axis=1, keepdims=True)
    layer = LearnedNormalization.from_statistics(x.mean(axis=0).tolist(), x.std(axis=0).tolist())
    mean, std = fit_one_layer(layer, x, y, learning_rate=0.01, steps=2, head=True)
    assert not np.allclose(mean, x.mean(axis=0))
    assert not np.allclose(std, x.std(axis=0))


def test_std_constraint_keeps_std_positive():
    # One SGD step of (1 / std - 100)^2 from std = 1 moves std by -198.
    x, y = np.ones((4, 1), np.float32), np.full((4, 1), 100.0, np.float32)
    _, recipe_std = fit_one_layer(LearnedNormalization(), x, y, learning_rate=1.0)
    _, kept_std = fit_one_layer(LearnedNormalization(keep_std_positive=True), x, y, learning_rate=1.0)
    assert recipe_std[0] < 0
    assert kept_std[0] == np.float32(1e-6)


def test_min_value_clips_an_assigned_negative_std():
    layer = LearnedNormalization.from_statistics([0.0, 0.0], [1.0, 1.0])
    layer.build((None, 2))
    layer.std.assign(np.array([-3.0, 2.0], np.float32))
    layer.std.assign(layer.std.constraint(layer.std))
    np.testing.assert_array_equal(layer.std.numpy(), np.array([1e-6, 2.0], np.float32))
    assert isinstance(layer.std.constraint, MinValue)


# --- saving and validation --------------------------------------------------


def with_weights(layer, features=3):
    layer.build((None, features))
    rng = np.random.default_rng(2)
    layer.mean.assign(rng.normal(size=features).astype(np.float32))
    layer.std.assign(rng.uniform(0.5, 2.0, size=features).astype(np.float32))
    return layer


SAVE_CASES = {
    "batch_minmax": (lambda data: BatchMinMax(), "float64"),
    "batch_zscore": (lambda data: BatchZScore(), "float64"),
    "learned_recipe": (lambda data: with_weights(LearnedNormalization()), "float32"),
    "learned_from_statistics": (
        lambda data: with_weights(LearnedNormalization.from_statistics(data.mean(0), data.std(0))),
        "float32",
    ),
    "dataset_zscore": (dataset_zscore, "float64"),
    "dataset_minmax": (dataset_minmax, "float64"),
}


@pytest.mark.parametrize("case", SAVE_CASES)
def test_save_and_load_keras_safe_mode(case, tmp_path):
    make_layer, dtype = SAVE_CASES[case]
    data = large_offset_data(rows=8) if dtype == "float64" else random_batch(rows=8)
    x = data.astype(dtype)
    layer = make_layer(data)
    inputs = keras.Input(shape=(3,), dtype=dtype)
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.layers[-1]) is type(layer)
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


INVALID = {
    "zscore_lengths": lambda: DatasetZScore(mean=[0.0, 1.0], std=[1.0]),
    "zscore_negative_std": lambda: DatasetZScore(mean=[0.0], std=[-1.0]),
    "zscore_nan_mean": lambda: DatasetZScore(mean=[np.nan], std=[1.0]),
    "minmax_lengths": lambda: DatasetMinMax(min=[0.0], max=[1.0, 2.0], mean=[0.5]),
    "minmax_max_below_min": lambda: DatasetMinMax(min=[2.0], max=[1.0], mean=[1.5]),
    "learned_lengths": lambda: LearnedNormalization(mean=[0.0, 1.0], std=[1.0]),
    "from_statistics_lengths": lambda: LearnedNormalization.from_statistics([0.0], [1.0, 1.0]),
    "from_statistics_negative_std": lambda: LearnedNormalization.from_statistics([0.0], [-1.0]),
    "learned_nan_mean": lambda: LearnedNormalization(mean=[np.nan], std=[1.0]),
    "not_a_list": lambda: DatasetZScore(mean="abc", std=[1.0]),
    "zscore_feature_count": lambda: DatasetZScore(mean=[0.0, 0.0], std=[1.0, 1.0])(np.zeros((2, 3))),
    "minmax_feature_count": lambda: DatasetMinMax(min=[0.0], max=[1.0], mean=[0.5])(np.zeros((2, 3))),
    "learned_feature_count": lambda: LearnedNormalization(mean=[0.0, 0.0])(np.zeros((2, 3))),
    "batch_rank": lambda: BatchZScore()(np.zeros((2, 3, 1))),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_arguments_raise_value_error(case):
    with pytest.raises(ValueError) as info:
        INVALID[case]()
    assert re.search(r"Received: [^\n]+$", str(info.value)), str(info.value)


def test_from_statistics_keeps_float64_statistics_exactly():
    """A timestamp mean is not rounded to float32 (128 s steps near 1.4e9)."""
    mean, std = [1_400_000_029.123456, 5.5], [3e7, 0.25]
    layer = LearnedNormalization.from_statistics(mean, std)
    x = np.array([[1_400_000_129.123456, 6.0]], np.float64)
    out = run(layer, x)
    assert layer.mean.numpy().dtype == np.float64 and layer.mean.numpy()[0] == mean[0]
    expected = (x - np.array(mean)) / (np.array(std) + EPSILON)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    restored = LearnedNormalization.from_config(layer.get_config())
    assert restored.weight_dtype == "float64"
    with pytest.raises(ValueError, match="weight_dtype must be"):
        LearnedNormalization(weight_dtype="int8")
