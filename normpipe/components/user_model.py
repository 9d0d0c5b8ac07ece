"""The user's own model: `model_fn(feature_names=[...], categorical={...}, num_classes=K)`.

`model_fn` is a callable, or a dotted path `package.module.function` to one,
that returns a compiled Keras 3 model (K = 0 for regression, else the number
of classes). `categorical` ({id output: number of ids}, e.g. {"company_id":
60}) lists the categorical columns' vocabulary ids (components/categories.py)
and is passed when model_fn takes it (or **kwargs). Its input is either

  one float32 [batch, F] matrix   the named transformed features, in the
                                  order of `feature_names`, or
  named inputs                    `keras.Input(shape=(1,), name=...)`, each a
                                  transformed feature's [batch, 1]: float32
                                  for a normalized feature, int64 (or any
                                  dtype the input declares) for an id

and its output [batch] or [batch, 1] for regression (and two classes: the
probability of class 1), [batch, K] probabilities for classification.
normpipe trains it as it is compiled, on the same split and batches as its
own model, and reports its accuracy or MAE beside the same baseline.
"""

import importlib

import numpy as np

from normpipe.core.errors import UserError


def load_model_fn(model_fn):
    """The callable that `model_fn` (a callable or a dotted path) names."""
    if callable(model_fn):
        return model_fn
    if not isinstance(model_fn, str) or "." not in model_fn:
        raise UserError(f"--model-fn must be a dotted path package.module.function. Received: {model_fn!r}")
    module_name, _, attribute = model_fn.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # pylint: disable=broad-except  -- any import failure is the user's to fix
        raise UserError(f"--model-fn {model_fn!r}: cannot import {module_name!r}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise UserError(f"--model-fn {model_fn!r}: {module_name!r} has no callable {attribute!r}")
    return found


def input_names(model, available):
    """The model's named inputs, or None for a model that takes one
    [batch, F] matrix: inputs are named when each is [batch, 1] and named
    after one of the `available` transformed features."""
    names = [tensor.name for tensor in model.inputs]
    shapes = [tuple(tensor.shape) for tensor in model.inputs]
    if all(shape == (None, 1) for shape in shapes) and all(n in set(available) for n in names):
        return names
    return None


def _takes_categorical(fn) -> bool:
    import inspect  # pylint: disable=import-outside-toplevel

    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "categorical" or p.kind == p.VAR_KEYWORD for p in parameters)


def build(model_fn, feature_names, num_classes, available=None, where="--model-fn", categorical=None):
    """Calls model_fn and checks what it returned; `available`: the
    transformed features a named input may be (default: feature_names and
    the `categorical` ids)."""
    import keras  # pylint: disable=import-outside-toplevel

    fn = load_model_fn(model_fn)
    categorical = dict(categorical or {})
    available = list(available or list(feature_names) + list(categorical))
    extra = {"categorical": categorical} if _takes_categorical(fn) else {}
    try:
        model = fn(feature_names=list(feature_names), num_classes=int(num_classes), **extra)
    except Exception as exc:  # pylint: disable=broad-except  -- the user's code failed
        raise UserError(f"{where}: model_fn(feature_names=..., num_classes={num_classes}) failed: "
                        f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}") from None
    if not isinstance(model, keras.Model):
        raise UserError(f"{where}: model_fn must return a keras.Model (Keras 3). Received: {type(model).__name__}")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise UserError(f"{where}: model_fn must return a compiled model (call model.compile)")
    names = input_names(model, available or feature_names)
    if names is None:
        width = model.inputs[0].shape[-1] if len(model.inputs) == 1 and len(model.inputs[0].shape) == 2 else None
        if len(model.inputs) > 1 or any(tuple(t.shape) == (None, 1) for t in model.inputs[1:]):
            unknown = sorted({t.name for t in model.inputs} - set(available or feature_names))
            raise UserError(f"{where}: the model's inputs {unknown} are not transformed features "
                            f"({', '.join(sorted(available or feature_names))})")
        if width != len(feature_names):
            raise UserError(f"{where}: the model's input has {width} columns, but there are "
                            f"{len(feature_names)} features ({', '.join(feature_names)})")
    check_output(model, num_classes, where)
    return model


def check_output(model, num_classes, where="--model-fn"):
    shape = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else None
    allowed = {(None,), (None, 1)} if num_classes <= 2 else {(None, num_classes)}
    if num_classes == 2:
        allowed.add((None, 2))
    if shape not in allowed:
        wanted = " or ".join(str(list(s)).replace("None", "batch") for s in sorted(allowed, key=len))
        raise UserError(f"{where}: the model's output must be {wanted} for "
                        f"{'regression' if not num_classes else f'{num_classes} classes'}. Received: "
                        f"{'several outputs' if shape is None else str(list(shape)).replace('None', 'batch')}")


def as_model_input(matrix, model, feature_names, ids=None):
    """A [batch, F] matrix of `feature_names` (and `ids`, {id output: int64
    [batch]}) -> what the model takes."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    ids = ids or {}
    names = input_names(model, list(feature_names) + list(ids))
    if names is None:
        return matrix
    index = {n: j for j, n in enumerate(feature_names)}
    dtypes = {t.name: t.dtype for t in model.inputs}
    return {n: matrix[:, index[n]:index[n] + 1] if n in index
            else tf.cast(tf.reshape(ids[n], [-1, 1]), dtypes[n]) for n in names}


def scores(prediction, num_classes) -> np.ndarray:
    """The model's output as [n] (regression; two classes: P(class 1)) or [n, K]."""
    prediction = np.asarray(prediction, np.float64)
    if num_classes > 2:
        return prediction.reshape(len(prediction), num_classes)
    if num_classes == 2 and prediction.ndim == 2 and prediction.shape[1] == 2:
        return prediction[:, 1]
    return prediction.reshape(-1)


def metric_value(prediction, y, num_classes):
    """(name, value): accuracy for classification, MAE for regression."""
    y = np.asarray(y, np.float64).reshape(-1)
    p = scores(prediction, num_classes)
    if num_classes > 2:
        return "accuracy", float(np.mean(np.argmax(p, axis=1) == y))
    if num_classes == 2:
        return "accuracy", float(np.mean((p > 0.5) == (y == 1)))
    return "mae", float(np.mean(np.abs(p - y)))
