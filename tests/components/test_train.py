"""Training helpers: the shared split, the model variants."""

import numpy as np
import pytest

from normpipe.components import train


def test_eval_mask_is_deterministic_and_about_one_in_five():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 4)).astype(np.float32)
    y = rng.normal(size=20000).astype(np.float32)
    mask = train.eval_mask(x, y)
    assert 0.18 < mask.mean() < 0.22
    np.testing.assert_array_equal(mask, train.eval_mask(x.copy(), y.copy()))
    # a row's membership depends on the row alone, not on its neighbours
    np.testing.assert_array_equal(train.eval_mask(x[::-1], y[::-1]), mask[::-1])


def test_infer_task():
    assert train.infer_task(np.array([0.0, 1.0, 1.0])) == "classification"
    assert train.infer_task(np.array([0.0, 1.5])) == "regression"


@pytest.mark.parametrize("variant", train.VARIANTS)
def test_each_variant_trains_and_reports_both_batch_sizes(variant):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    n = 600
    raw = np.stack([1.4e9 + rng.uniform(0, 1e8, n), rng.normal(10, 3, n)], axis=1)
    y = (3 * (raw[:, 1] - 10) / 3 + rng.normal(0, 0.1, n)).astype(np.float32)
    stats = {"mean": raw.mean(0), "std": raw.std(0), "min": raw.min(0), "max": raw.max(0)}
    options = train.TrainOptions(normalization=variant, epochs=3, eval_batch_size=256)
    model = train.build_model(variant, 2, "regression", options, "zscore", stats)
    x = ((raw - stats["mean"]) / stats["std"]).astype(np.float32) if variant == "tft" else raw

    def data(rows):
        return lambda b: tf.data.Dataset.from_tensor_slices(({"x": x[rows]}, {variant: y[rows]})).batch(b)

    results = train.fit_and_evaluate_variants({variant: model}, {variant: "x"}, "regression", data(slice(0, 500)),
                                              data(slice(500, None)), data(slice(500, None)), options, 32,
                                              verbose=0)[variant]
    assert results["metric"] == "mae"
    large = results["batch_256"]["mae"]
    assert large is not None and np.isfinite(large)
    if variant == "batch":
        # a batch of one normalizes every feature to 0: the model sees no signal
        assert results["batch_1"]["mae"] > large
    else:
        assert results["batch_1"]["mae"] == pytest.approx(large, rel=1e-4)


def test_holdout_mask_in_tensorflow_equals_eval_mask():
    """The tf.data split (input_fn) and the numpy split pick the same rows."""
    import tensorflow as tf

    from normpipe.components import dataset

    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 3)).astype(np.float32)
    y = rng.normal(size=5000).astype(np.float32)
    x[:10] = np.float32(-0.0)
    np.testing.assert_array_equal(dataset.holdout_mask(tf.constant(x), tf.constant(y)).numpy(), train.eval_mask(x, y))


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_variants_trained_side_by_side_equal_variants_trained_alone(method):
    """Each variant's weights and metrics equal those of its model trained
    alone: constant's too, though it takes tft's trained network
    (train.SAME_NETWORK) instead of training one of its own."""
    import tensorflow as tf

    rng = np.random.default_rng(4)
    n = 640
    raw = np.stack([1.4e9 + rng.uniform(0, 1e8, n), rng.normal(10, 3, n)], axis=1)
    y = (raw[:, 1] - 10 + rng.normal(0, 0.1, n)).astype(np.float32)
    raw[::7, 0] = np.nan  # imputed with the mean by both normalizations
    stats = {"mean": np.nanmean(raw, 0), "std": np.nanstd(raw, 0), "min": np.nanmin(raw, 0), "max": np.nanmax(raw, 0)}
    filled = np.where(np.isnan(raw), stats["mean"], raw)
    if method == "zscore":
        normalized = ((filled - stats["mean"]) / stats["std"]).astype(np.float32)
    else:
        normalized = ((filled - stats["min"]) / (stats["max"] - stats["min"])).astype(np.float32)
    options = train.TrainOptions(epochs=2, eval_batch_size=128)
    inputs = {"tft": normalized, "constant": raw, "batch": raw}
    names = {"tft": "normalized", "constant": "raw", "batch": "raw"}
    alone = {}
    for variant in inputs:
        model = train.build_model(variant, 2, "regression", options, method, stats)
        model.fit(tf.data.Dataset.from_tensor_slices((inputs[variant], y)).batch(64), epochs=2, shuffle=False,
                  verbose=0)
        alone[variant] = model
    models = {v: train.build_model(v, 2, "regression", options, method, stats) for v in inputs}
    features = {"normalized": normalized, "raw": raw}

    def data(b, rows=slice(None)):
        return tf.data.Dataset.from_tensor_slices(
            ({k: v[rows] for k, v in features.items()}, dict.fromkeys(inputs, y[rows]))).batch(b)

    results = train.fit_and_evaluate_variants(models, names, "regression", lambda b: data(b), data,
                                              lambda b: data(b, slice(0, 50)), options, 64, verbose=0)
    assert train.networks_to_train(list(inputs)) == ["tft", "batch"]
    assert results["constant"]["network"] == "tft" and "network" not in results["tft"]
    for variant, model in alone.items():
        for a, b in zip(model.get_weights(), models[variant].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        x = inputs[variant]
        expected_large = float(np.mean(np.abs(model.predict(x, batch_size=128, verbose=0).reshape(-1) - y)))
        _assert_metric(results[variant]["batch_128"]["mae"], expected_large)
        expected_one = float(np.mean(np.abs(model.predict(x[:50], batch_size=1, verbose=0).reshape(-1) - y[:50])))
        _assert_metric(results[variant]["batch_1"]["mae"], expected_one)


def _assert_metric(recorded, expected):
    """A metric that is NaN (the per-batch variant fed missing values) is recorded as None, JSON's null."""
    if np.isnan(expected):
        assert recorded is None
    else:
        assert recorded == pytest.approx(expected, rel=1e-4)


def test_comparison_variants_train_on_their_budget_and_the_exported_on_every_row():
    """With comparison data, the exported variant (and constant, which takes
    tft's network) trains on every row, exactly as alone on them; the
    comparison-only variants train on the budget's rows, exactly as alone on
    those."""
    import tensorflow as tf

    rng = np.random.default_rng(6)
    n = 640
    raw = np.stack([rng.normal(5, 2, n), rng.normal(10, 3, n)], axis=1)
    y = (raw[:, 1] - 10 + rng.normal(0, 0.1, n)).astype(np.float32)
    stats = {"mean": raw.mean(0), "std": raw.std(0), "min": raw.min(0), "max": raw.max(0)}
    normalized = ((raw - stats["mean"]) / stats["std"]).astype(np.float32)
    options = train.TrainOptions(normalization="tft", epochs=2, eval_batch_size=128, comparison_rows=192)
    inputs = {"tft": normalized, "constant": raw, "learned": raw}
    names = {"tft": "normalized", "constant": "raw", "learned": "raw"}
    assert train.budgets(list(inputs), "tft") == {"tft": "every_row", "constant": "every_row", "learned": "comparison"}
    assert train.budgets(list(inputs), "learned") == {"tft": "comparison", "constant": "comparison",
                                                       "learned": "every_row"}
    budget = {"tft": slice(None), "learned": slice(0, 192)}
    alone = {}
    for variant, rows in budget.items():
        model = train.build_model(variant, 2, "regression", options, "zscore", stats)
        model.fit(tf.data.Dataset.from_tensor_slices((inputs[variant][rows], y[rows])).batch(64), epochs=2,
                  shuffle=False, verbose=0)
        alone[variant] = model
    models = {v: train.build_model(v, 2, "regression", options, "zscore", stats) for v in inputs}
    features = {"normalized": normalized, "raw": raw}

    def data(b, rows=slice(None)):
        return tf.data.Dataset.from_tensor_slices(
            ({k: v[rows] for k, v in features.items()}, dict.fromkeys(inputs, y[rows]))).batch(b)

    train.fit_and_evaluate_variants(models, names, "regression", data, data, lambda b: data(b, slice(0, 50)), options,
                                    64, verbose=0, comparison_data=lambda b: data(b, slice(0, 192)))
    for variant, model in alone.items():
        for a, b in zip(model.get_weights(), models[variant].get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    dense = [l for l in models["constant"].layers if l.name != "normalize" and l.get_weights()]
    for a, b in zip([w for l in dense for w in l.get_weights()], alone["tft"].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_comparison_rows_must_be_positive():
    with pytest.raises(ValueError, match="comparison_rows"):
        train.TrainOptions(comparison_rows=0)
