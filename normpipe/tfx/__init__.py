"""The module TFX's Transform and Trainer components name.

    Transform(examples=..., schema=..., preprocessing_fn="normpipe.tfx.preprocessing_fn",
              custom_config={"label": "tips", "method": "zscore"})
    Trainer(examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            run_fn="normpipe.tfx.run_fn", custom_config={"label": "tips"}, ...)

or `module_file=normpipe.tfx.__file__` for either. `custom_config` keys (all
optional, defaults as on the command line):

  features      numeric raw features to normalize (default: every numeric
                input but the label, in name order)
  label         passed through as float32 (missing = NaN), and the Trainer's
                target; required by run_fn
  method        "zscore" (default), "minmax" or "both"
  exponents     {feature: k}: scale a feature by 2**k before its mean and
                variance (only for values beyond 2**+-256, see exact_float.py)
  centers       {feature: c}: the centering constant of a feature's mean and
                variance (default: the midpoint of its min and max, from a
                first analysis pass)
  epochs, batch_size, learning_rate, hidden, shuffle_buffer   run_fn's training
  task          "regression" or "classification" (default: inferred from the
                labels, see normpipe/components/labels.py); a string label
                is classes, their names the graph's vocabulary
  model_fn      "package.module.function" (or a callable) returning a
                compiled Keras 3 model, called as model_fn(feature_names=[...],
                num_classes=K), trained by run_fn instead of normpipe's model

The preprocessing_fn takes what TFX Transform passes: dense [batch, 1] int64
or float32 features (fixed-length in the schema), tf.SparseTensor for VarLen
ones (a row without a value is missing), and also dense [batch] or float64.
Its outputs are the normalized features (`<name>_z`, `<name>_01`) and the
label, nothing else; the float64 statistics stay inside the transform graph,
where `normpipe.read_statistics(transform_graph_dir)` reads them.

Layer: the top, beside `normpipe.pipeline`; it may import every layer, and
nothing in normpipe imports it.
"""

import dataclasses

from normpipe.components import train, transform
from normpipe.io import paths

_TRAIN_KEYS = {"epochs", "batch_size", "learning_rate", "hidden", "shuffle_buffer", "task", "model_fn"}
_KEYS = {"features", "label", "method", "exponents", "centers"} | _TRAIN_KEYS


def _check_config(custom_config) -> dict:
    config = dict(custom_config or {})
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ValueError(f"custom_config has unknown keys {unknown} (known: {sorted(_KEYS)}). Received: {config!r}")
    return config


def _is_numeric(value) -> bool:
    return value.dtype.is_integer or value.dtype.is_floating


def transform_options(inputs: dict, custom_config=None) -> transform.TransformOptions:
    """The TransformOptions a custom_config gives for these raw inputs."""
    config = _check_config(custom_config)
    label = config.get("label")
    if label is not None and label not in inputs:
        raise ValueError(f"custom_config label must be an input ({', '.join(sorted(inputs))}). Received: {label!r}")
    features = config.get("features") or sorted(n for n, v in inputs.items() if n != label and _is_numeric(v))
    unknown = [n for n in features if n not in inputs]
    if unknown:
        raise ValueError(f"custom_config features must be inputs ({', '.join(sorted(inputs))}). Received: {unknown}")
    exponents, centers = config.get("exponents") or {}, config.get("centers")
    return transform.TransformOptions(
        tuple(features), config.get("method", "zscore"), label,
        centers=None if centers is None else tuple(float(centers[n]) for n in features),
        exponents=tuple(int(exponents.get(n, 0)) for n in features),
        matrix_outputs=False,
    )


def preprocessing_fn(inputs, custom_config=None):
    """TFX Transform's entry point: full-dataset normalization (see module docstring)."""
    return transform.make_preprocessing_fn(transform_options(inputs, custom_config))(inputs)


def run_fn(fn_args):
    """TFX Trainer's entry point.

    Trains normpipe's model (the `tft` variant: it takes the transformed
    features), or custom_config["model_fn"]'s, through `input_fn` on `fn_args.train_files`, evaluates it on
    `fn_args.eval_files`, and writes at `fn_args.serving_model_dir` the
    servable `normpipe train` exports: the transform graph in front of the
    model, with serving_default, serving_examples and transform_features.
    `fn_args.train_steps` / `eval_steps`, when set, bound the steps.
    """
    from normpipe.tfx import trainer  # pylint: disable=import-outside-toplevel

    config = _check_config(getattr(fn_args, "custom_config", None))
    label = config.get("label")
    if not label:
        raise ValueError(f"run_fn needs custom_config['label']. Received: {config!r}")
    options = train.TrainOptions(**{k: tuple(v) if k == "hidden" else v for k, v in config.items()
                                    if k in _TRAIN_KEYS - {"shuffle_buffer", "task", "model_fn"}})
    trainer.train_and_write(fn_args, config, label, options, int(config.get("shuffle_buffer", 100_000)))
    return paths.absolute(fn_args.serving_model_dir)


@dataclasses.dataclass
class FnArgs:
    """The fields of TFX's `FnArgs` that run_fn reads, for running it without TFX."""

    train_files: list
    eval_files: list
    transform_output: str
    serving_model_dir: str
    custom_config: dict = dataclasses.field(default_factory=dict)
    train_steps: int = None
    eval_steps: int = None
