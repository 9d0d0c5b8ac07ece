"""normalize: normpipe's full-dataset normalization as one call inside any
tf.Transform preprocessing_fn, and the pieces of normpipe.tfx.preprocessing_fn
around it (the columns passed through unchanged).

The graph it builds is the command line's (normpipe/components/
preprocessing.py and statistics.py); this module checks the arguments a
user gives and turns them into that graph's TransformOptions.
"""

from collections.abc import Mapping

import tensorflow as tf

from normpipe.components import preprocessing

# |k| beyond this scales every float64 value to 0 or inf.
_MAX_EXPONENT = 1074


def is_numeric(value) -> bool:
    """An integer or floating input, dense or tf.SparseTensor."""
    return value.dtype.is_integer or value.dtype.is_floating


def _received(value) -> str:
    return f"Received: {value!r}"


def _check_inputs(inputs) -> None:
    if not isinstance(inputs, Mapping):
        raise ValueError(f"inputs must be the dict of tensors a preprocessing_fn is given. "
                         f"Received: {type(inputs).__name__}")


def select_features(inputs, features=None, exclude=()) -> tuple:
    """The features to normalize: `features` checked against `inputs`, or
    (None) every numeric input but `exclude`, in name order."""
    _check_inputs(inputs)
    if features is None:
        chosen = tuple(sorted(n for n, v in inputs.items() if n not in set(exclude) and is_numeric(v)))
        if not chosen:
            kinds = {n: v.dtype.name for n, v in inputs.items()}
            raise ValueError(f"inputs hold no numeric feature to normalize. Received: {kinds}")
        return chosen
    chosen = _names(features, "features must be a list of input names")
    unknown = [n for n in chosen if n not in inputs]
    if unknown:
        raise ValueError(f"features must be inputs ({', '.join(sorted(inputs))}). Received: unknown {unknown}")
    duplicated = sorted({n for n in chosen if chosen.count(n) > 1})
    if duplicated or not chosen:
        raise ValueError(f"features must name each input once and at least one. {_received(list(chosen))}")
    not_numeric = {n: inputs[n].dtype.name for n in chosen if not is_numeric(inputs[n])}
    if not_numeric:
        raise ValueError(f"features must be numeric (int or float) inputs. Received: {not_numeric}")
    return chosen


def _names(names, message) -> tuple:
    """A list of names as a tuple; a string or anything else is a ValueError."""
    try:
        names_tuple = tuple(names) if not isinstance(names, (str, bytes)) else None
    except TypeError:
        names_tuple = None
    if names_tuple is None or not all(isinstance(n, str) for n in names_tuple):
        raise ValueError(f"{message}. {_received(names)}")
    return names_tuple


def _exponents(features, exponents):
    exponents = {} if exponents is None else exponents
    if not isinstance(exponents, Mapping):
        raise ValueError(f"exponents must be a dict {{feature: k}}. {_received(exponents)}")
    unknown = sorted(set(exponents) - set(features))
    if unknown:
        raise ValueError(f"exponents must name normalized features ({', '.join(features)}). "
                         f"Received: unknown {unknown}")
    bad = {n: k for n, k in exponents.items()
           if isinstance(k, bool) or not isinstance(k, int) or abs(k) > _MAX_EXPONENT}
    if bad:
        raise ValueError(f"exponents must be integers between -{_MAX_EXPONENT} and {_MAX_EXPONENT}. "
                         f"{_received(bad)}")
    return tuple(int(exponents.get(n, 0)) for n in features)


def normalize_options(inputs, features=None, method="zscore", *, exponents=None, label=None,
                      exclude=()) -> preprocessing.TransformOptions:
    """The TransformOptions of a `normalize` call (see there); `label` is
    recorded in the graph's description, `exclude` kept out of the default
    features. No matrix outputs: every output of a TFX graph is
    materialized."""
    if method not in preprocessing.METHODS + ("both",):
        raise ValueError(f"method must be one of zscore, minmax, both. {_received(method)}")
    chosen = select_features(inputs, features, exclude)
    return preprocessing.TransformOptions(
        chosen, method, label, exponents=_exponents(chosen, exponents),
        matrix_outputs=False)


def normalize(inputs, features=None, method="zscore", *, exponents=None) -> dict:
    """Full-dataset normalization of numeric inputs, inside a preprocessing_fn.

    For each feature x, over the whole dataset (exact statistics rounded
    once to float64, see docs/what-is-computed.md; population variance,
    ddof=0):

        x_z  = (x - mean) / std                      method "zscore"
        x_01 = (x - min) / (max - min)               method "minmax"

    ("both" gives both). A missing value (an absent value of a
    tf.SparseTensor, or NaN) is imputed with the feature's mean, so it maps
    to 0.0 under "zscore" and to (mean - min) / (max - min) under "minmax".
    A feature with zero variance (or min == max, or no present value) maps
    to 0.0 everywhere. Results are clipped to +-1e6 and returned as float32
    [batch] tensors named `<feature>_z` / `<feature>_01`; nothing else is
    returned, so the caller adds its own outputs beside them. The
    statistics (count, missing, mean, var, std, min, max) stay in the transform
    graph, tied to these outputs, and `normpipe.read_statistics(transform_dir)`
    reads them back: keep at least one of these outputs in the dict the
    preprocessing_fn returns. Call it once per preprocessing_fn, with every
    feature to normalize.

    The statistics are the command line's, bit for bit: exact sums rounded
    once, the same on any runner and however the data is split, and as
    accurate on data with a large offset (1e6 + small noise) as without.

    Args:
      inputs: the preprocessing_fn's inputs: dense `[batch]` or `[batch, 1]`
        int or float tensors (int64 exact up to 2**53, float32 widened
        exactly), or `tf.SparseTensor`s of VarLen features with at most one
        value per row (TFX's Transform passes both).
      features: input names to normalize, in order. None: every numeric
        (integer or floating) input, in name order; string and bool inputs
        are skipped, so a label or an id column that is numeric is included
        unless `features` leaves it out.
      method: "zscore", "minmax" or "both".
      exponents: {feature: int k}: normalize x * 2**k (exact; only useful
        for values beyond 2**+-256, e.g. 1e-300-scale data, which
        TensorFlow's arithmetic would flush to zero). The statistics do not
        depend on it. Missing features get 0.

    Returns:
      {`<feature>_z` and/or `<feature>_01`: float32 [batch]}.

    Raises:
      ValueError: an argument that is not as described above.

    Example:

    >>> import tempfile
    >>> import tensorflow as tf, tensorflow_transform as tft
    >>> import tensorflow_transform.beam as tft_beam
    >>> from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
    >>> import normpipe.tfx
    >>> def preprocessing_fn(inputs):
    ...     outputs = normpipe.tfx.normalize(inputs, ["fare", "miles"])
    ...     outputs["company_id"] = tft.compute_and_apply_vocabulary(inputs["company"])
    ...     return outputs
    >>> rows = [{"fare": 5.0, "miles": 1, "company": "a"}, {"fare": 15.0, "miles": 3, "company": "b"},
    ...         {"fare": 10.0, "miles": 2, "company": "a"}]
    >>> metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
    ...     "fare": tf.io.FixedLenFeature([], tf.float32), "miles": tf.io.FixedLenFeature([], tf.int64),
    ...     "company": tf.io.FixedLenFeature([], tf.string)}))
    >>> with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    ...     (out, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
    >>> [(round(float(r["fare_z"]), 4), int(r["company_id"])) for r in out]
    [(-1.2247, 0), (1.2247, 1), (0.0, 0)]
    """
    return preprocessing.normalized_outputs(
        inputs, normalize_options(inputs, features, method, exponents=exponents))


def check_passthrough(inputs, names, taken=()) -> tuple:
    """`names` (custom_config["passthrough"]) checked: inputs, none of them
    an output name in `taken` (the label, the normalized outputs)."""
    names = _names(names, "custom_config passthrough must be a list of input names")
    unknown = [n for n in names if n not in inputs]
    if unknown:
        raise ValueError(f"custom_config passthrough must be inputs ({', '.join(sorted(inputs))}). "
                         f"Received: unknown {unknown}")
    clash = sorted({n for n in names if n in set(taken) or preprocessing.is_internal(n) or names.count(n) > 1})
    if clash:
        raise ValueError(f"custom_config passthrough names an output twice (the label, a normalized output, or "
                         f"twice in the list). Received: {clash}")
    return names


def passthrough_outputs(inputs, names) -> dict:
    """The named inputs, unchanged; a tf.SparseTensor (a VarLen feature)
    densified to [batch, 1], as TFX gives a fixed-length one, its missing
    values "" for strings and 0 for numbers (the filling of TFX's own
    taxi example). A row with more than one value is an error."""
    outputs = {}
    for name in names:
        value = inputs[name]
        if isinstance(value, tf.SparseTensor):
            value = _densify(value, name)
        outputs[name] = value
    return outputs


def _densify(value: tf.SparseTensor, name: str) -> tf.Tensor:
    batch = value.dense_shape[0]
    width = value.dense_shape[1] if value.shape.rank == 2 else tf.constant(1, tf.int64)
    check = tf.debugging.assert_less_equal(
        width, tf.constant(1, tf.int64), message=f"passthrough {name!r}: a row holds more than one value")
    with tf.control_dependencies([check]):
        rows = tf.identity(value.indices[:, :1])
    default = "" if value.dtype == tf.string else tf.zeros([], value.dtype)
    column = tf.SparseTensor(tf.concat([rows, tf.zeros_like(rows)], axis=1), value.values, tf.stack([batch, 1]))
    return tf.reshape(tf.sparse.to_dense(column, default_value=default), [-1, 1])
