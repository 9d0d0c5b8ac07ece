"""Keras 3 normalization layers: the per-batch recipe and full-dataset versions.

Every layer maps a float [batch, F] matrix (one column per numeric feature, in
a fixed order) column by column.

The recipe, reproduced on purpose for the comparison, takes its statistics
over axis 0 of the *current batch* (so a row's output depends on its
batch-mates) and computes in the input's dtype (float64 is not autocast):

  BatchMinMax           y = (x - min_b) / (max_b - min_b)   batch of one: NaN
  BatchZScore           y = (x - mean_b) / (std_b + 1e-7)   batch of one: 0
  LearnedNormalization  y = (x - mean) / (std + 1e-7)       trainable mean, std

The full-dataset layers bake the training set's statistics in as constants:

  DatasetZScore         y = (x - mean) / std          std 0 or not finite -> 0
  DatasetMinMax         y = (x - min) / (max - min)   max == min -> 0

in float64 (float32 rounds a unix timestamp near 1.4e9 to a multiple of 128),
NaN imputed with the feature's mean, y clipped to [-OUTPUT_LIMIT, OUTPUT_LIMIT]
so that +-inf inputs give finite outputs, returned as float32. Min-max output
is not clipped to [0, 1]: a value outside the training range maps outside it.
All std are population std (ddof=0).
"""

import keras
import numpy as np
from keras import ops

from normpipe.core.kernels import OUTPUT_LIMIT, scale_clip_float32

__all__ = [
    "OUTPUT_LIMIT",
    "BatchMinMax",
    "BatchZScore",
    "DatasetMinMax",
    "DatasetZScore",
    "LearnedNormalization",
    "MinValue",
]

RECIPE_EPSILON = 1e-7  # the recipe's own, kept to reproduce its behaviour
MIN_STD = 1e-6

_register = keras.saving.register_keras_serializable(package="normpipe")


def _as_vector(name, values, finite=True):
    try:
        vector = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        vector = np.empty((0,))
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"`{name}` must be a list of floats, one per feature. Received: {name}={values!r}")
    if finite and not np.all(np.isfinite(vector)):
        raise ValueError(f"`{name}` must hold finite floats. Received: {name}={values!r}")
    return vector


def _as_std(std):
    """>= 0; inf or NaN allowed, they mark an unusable feature."""
    vector = _as_vector("std", std, finite=False)
    if np.any(vector < 0):
        raise ValueError(f"`std` must be >= 0. Received: std={std!r}")
    return vector


def _check_lengths(**vectors):
    lengths = {name: len(vector) for name, vector in vectors.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"len({name})={n}" for name, n in lengths.items())
        raise ValueError(f"{', '.join(lengths)} must have one value per feature each. Received: {shown}")


def _check_input_shape(layer, input_shape, num_features=None):
    if len(input_shape) != 2:
        raise ValueError(f"{layer.name} expects a [batch, F] input. Received: input_shape={input_shape}")
    if num_features is not None and input_shape[-1] not in (None, num_features):
        raise ValueError(f"{layer.name} takes {num_features} features. Received: input_shape={input_shape}")


class _BatchLayer(keras.layers.Layer):
    """Keeps the input's dtype (no autocast) and checks the rank."""

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)

    def build(self, input_shape):
        _check_input_shape(self, input_shape)


@_register
class BatchMinMax(_BatchLayer):
    """Min-max scaling with the current batch's statistics (the recipe).

    y = (x - min(x, axis=0)) / (max(x, axis=0) - min(x, axis=0)), no epsilon:
    a batch of one, or a column constant in the batch, gives 0/0 = NaN. Kept
    to show that failure; use `DatasetMinMax`.

    Args:
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Example:
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> keras.ops.convert_to_numpy(BatchMinMax()(x))
    array([[0., 0.],
           [1., 1.]])
    >>> keras.ops.convert_to_numpy(BatchMinMax()(x[:1]))
    array([[nan, nan]])
    """

    def call(self, x):
        low = ops.min(x, axis=0)
        return (x - low) / (ops.max(x, axis=0) - low)


@_register
class BatchZScore(_BatchLayer):
    """Z-score with the current batch's statistics (the recipe).

    y = (x - mean(x, axis=0)) / (std(x, axis=0) + 1e-7), population std
    (ddof=0): a batch of one gives 0. Kept to show that; use `DatasetZScore`.

    Args:
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Example:
    >>> x = np.array([[1.0], [3.0]])
    >>> np.round(keras.ops.convert_to_numpy(BatchZScore()(x)), 6)
    array([[-1.],
           [ 1.]])
    >>> keras.ops.convert_to_numpy(BatchZScore()(x[:1]))
    array([[0.]])
    """

    def call(self, x):
        return (x - ops.mean(x, axis=0)) / (ops.std(x, axis=0) + RECIPE_EPSILON)


@_register
class MinValue(keras.constraints.Constraint):
    """Weight constraint w = max(w, min_value), applied after each update.

    Args:
        min_value: the smallest value the weight may take.

    Example:
    >>> keras.ops.convert_to_numpy(MinValue(1e-6)(keras.ops.array([-1.0, 2.0])))
    array([1.e-06, 2.e+00], dtype=float32)
    """

    def __init__(self, min_value=MIN_STD):
        self.min_value = float(min_value)

    def __call__(self, w):
        return ops.maximum(w, ops.cast(self.min_value, w.dtype))

    def get_config(self):
        return {"min_value": self.min_value}


@_register
class LearnedNormalization(_BatchLayer):
    """The recipe's trainable normalization: y = (x - mean) / (std + 1e-7).

    `mean` and `std` are trainable [F] weights (float32 as in the recipe, or
    `weight_dtype`), cast to the input's dtype. The recipe starts them at 0
    and 1 and nothing keeps std positive.
    With `keep_std_positive=True` (what `from_statistics` builds) a
    `MinValue(1e-6)` constraint clips std after every optimizer update, and
    a NaN input is imputed with `mean`, so it maps to 0.

    Args:
        mean: initial mean, one finite float per feature; None: 0 (F taken
            from the input).
        std: initial std, one finite float per feature; None: 1.
        keep_std_positive: add the std constraint and the NaN imputation.
        weight_dtype: dtype of `mean` and `std` ("float32" or "float64").
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Example:
    >>> layer = LearnedNormalization(mean=[1.0, 10.0], std=[2.0, 5.0])
    >>> np.round(keras.ops.convert_to_numpy(layer(np.array([[3.0, 20.0]]))), 6)
    array([[1., 2.]])
    """

    def __init__(self, mean=None, std=None, keep_std_positive=False, weight_dtype="float32", **kwargs):
        super().__init__(**kwargs)
        if weight_dtype not in ("float32", "float64"):
            raise ValueError(f"weight_dtype must be 'float32' or 'float64'. Received: {weight_dtype!r}")
        self.weight_dtype = weight_dtype
        self.initial_mean = None if mean is None else _as_vector("mean", mean)
        self.initial_std = None if std is None else _as_vector("std", std)
        given = {name: v for name, v in (("mean", self.initial_mean), ("std", self.initial_std)) if v is not None}
        _check_lengths(**given)
        self.num_features = len(next(iter(given.values()))) if given else None
        self.keep_std_positive = bool(keep_std_positive)

    @classmethod
    def from_statistics(cls, mean, std, **kwargs):
        """The recipe's layer initialised from full-dataset statistics.

        `LearnedNormalization(mean, std, keep_std_positive=True,
        weight_dtype="float64")`: float64 weights hold the full-dataset mean
        of a unix timestamp exactly (float32 would round it to 128 s) and cost
        no cast per call on float64 inputs. A zero
        or non-finite std becomes 1.0 (a feature constant in the training data
        maps to x - mean, 0 on that data, instead of being divided by 1e-7)
        and a positive std is raised to at least 1e-6. On finite data the
        initial output is `DatasetZScore`'s, up to the epsilon and float32.

        Args:
            mean: full-dataset mean, one finite float per feature.
            std: full-dataset population std, one float >= 0 per feature.
            **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

        Example:
        >>> layer = LearnedNormalization.from_statistics([1.0, 4.0], [2.0, 0.0])
        >>> np.round(keras.ops.convert_to_numpy(layer(np.array([[np.nan, 4.0]]))), 6)
        array([[0., 0.]])
        """
        mean, std = _as_vector("mean", mean), _as_std(std)
        _check_lengths(mean=mean, std=std)
        std = np.where(np.isfinite(std) & (std > 0), np.maximum(std, MIN_STD), 1.0)
        return cls(mean=mean.tolist(), std=std.tolist(), keep_std_positive=True, weight_dtype="float64", **kwargs)

    def build(self, input_shape):
        _check_input_shape(self, input_shape, self.num_features)
        num_features = self.num_features or input_shape[-1]
        if num_features is None:
            raise ValueError(f"{self.name} needs a known feature count. Received: input_shape={input_shape}")
        constraint = MinValue(MIN_STD) if self.keep_std_positive else None
        self.mean = self.add_weight(name="mean", shape=(num_features,), initializer="zeros", dtype=self.weight_dtype)
        self.std = self.add_weight(
            name="std", shape=(num_features,), initializer="ones", constraint=constraint, dtype=self.weight_dtype
        )
        if self.initial_mean is not None:
            self.mean.assign(self.initial_mean.astype(self.mean.dtype))
        if self.initial_std is not None:
            self.std.assign(self.initial_std.astype(self.std.dtype))

    def call(self, x):
        mean, std = ops.cast(self.mean, x.dtype), ops.cast(self.std, x.dtype)
        if self.keep_std_positive:
            x = ops.where(ops.isnan(x), mean, x)
        return (x - mean) / (std + RECIPE_EPSILON)

    def get_config(self):
        config = super().get_config()
        mean, std = (None if v is None else v.tolist() for v in (self.initial_mean, self.initial_std))
        config.update(mean=mean, std=std, keep_std_positive=self.keep_std_positive, weight_dtype=self.weight_dtype)
        return config


class _DatasetLayer(keras.layers.Layer):
    """y = (x - _shift) / _scale, NaN -> _fill, 0 where not _scaled (float64 numpy).

    `_statistics` holds the constructor's arguments, for `get_config`.
    """

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)

    def get_config(self):
        return {**super().get_config(), **{k: v.tolist() for k, v in self._statistics.items()}}

    def build(self, input_shape):
        _check_input_shape(self, input_shape, len(self._shift))

    def call(self, x):
        x = ops.cast(x, "float64")
        x = ops.where(ops.isnan(x), ops.convert_to_tensor(self._fill, "float64"), x)
        y = x - ops.convert_to_tensor(self._shift, "float64")
        if keras.backend.backend() == "tensorflow":
            # The tf.Transform graph's own kernels (kernels.py).
            return scale_clip_float32(y, np.where(self._scaled, 1.0 / np.where(self._scaled, self._scale, 1.0), 0.0))
        scale = ops.convert_to_tensor(np.where(self._scaled, self._scale, 1.0), "float64")
        y = ops.where(ops.convert_to_tensor(self._scaled), y / scale, ops.zeros_like(y))
        return ops.cast(ops.clip(y, -OUTPUT_LIMIT, OUTPUT_LIMIT), "float32")


@_register
class DatasetZScore(_DatasetLayer):
    """Z-score with full-dataset statistics baked in as float64 constants.

    y = (x - mean) / std in float64, returned as float32; x may be float32 or
    float64. NaN is imputed with the mean (y = 0). A feature whose std is 0 or
    not finite maps to 0. y is clipped to [-1e6, 1e6] (`OUTPUT_LIMIT`), so
    +-inf inputs give finite outputs.

    Args:
        mean: full-dataset mean, one finite float per feature.
        std: full-dataset population std, one float >= 0 per feature.
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Example:
    >>> layer = DatasetZScore(mean=[1.4e9, 5.0], std=[3e7, 0.0])
    >>> keras.ops.convert_to_numpy(layer(np.array([[1.43e9, 7.0], [np.nan, 5.0]])))
    array([[1., 0.],
           [0., 0.]], dtype=float32)
    """

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self._fill = self._shift = _as_vector("mean", mean)
        self._scale = _as_std(std)
        _check_lengths(mean=self._shift, std=self._scale)
        self._scaled = np.isfinite(self._scale) & (self._scale > 0)
        self._statistics = {"mean": self._shift, "std": self._scale}


@_register
class DatasetMinMax(_DatasetLayer):
    """Min-max scaling with full-dataset statistics baked in as float64 constants.

    y = (x - min) / (max - min) in float64, returned as float32; x may be
    float32 or float64. NaN is imputed with the mean: (mean - min) / (max -
    min). A feature with max == min maps to 0. y is not clipped to [0, 1],
    only to [-1e6, 1e6] (`OUTPUT_LIMIT`), so +-inf inputs give finite outputs.

    Args:
        min: full-dataset minimum, one finite float per feature.
        max: full-dataset maximum, one finite float >= min per feature.
        mean: full-dataset mean, one finite float per feature (imputes NaN).
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Example:
    >>> layer = DatasetMinMax(min=[0.0, 3.0], max=[10.0, 3.0], mean=[4.0, 3.0])
    >>> keras.ops.convert_to_numpy(layer(np.array([[5.0, 9.0], [np.nan, 3.0], [20.0, 3.0]])))
    array([[0.5, 0. ],
           [0.4, 0. ],
           [2. , 0. ]], dtype=float32)
    """

    def __init__(self, min, max, mean, **kwargs):
        super().__init__(**kwargs)
        self._shift, self._max = _as_vector("min", min), _as_vector("max", max)
        self._fill = _as_vector("mean", mean)
        _check_lengths(min=self._shift, max=self._max, mean=self._fill)
        if np.any(self._max < self._shift):
            raise ValueError(f"`max` must be >= `min` for every feature. Received: min={min!r}, max={max!r}")
        self._scale = self._max - self._shift
        self._scaled = self._scale > 0
        self._statistics = {"min": self._shift, "max": self._max, "mean": self._fill}
