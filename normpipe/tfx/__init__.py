"""The module TFX's Transform and Trainer components name.

    Transform(examples=..., schema=..., preprocessing_fn="normpipe.tfx.preprocessing_fn",
              custom_config={"label": "tips", "method": "zscore"})
    Trainer(examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            run_fn="normpipe.tfx.run_fn", custom_config={"label": "tips"}, ...)

or `module_file=normpipe.tfx.__file__` for either. A preprocessing_fn of
one's own calls `normpipe.tfx.normalize(inputs, ...)` beside tf.Transform's
other mappers (see its docstring). `custom_config` keys (all optional,
defaults as on the command line):

  features      numeric raw features to normalize (default: every numeric
                input but the label and the passthrough columns, in name
                order)
  label         passed through as float32 (missing = NaN), and the Trainer's
                target; required by run_fn
  method        "zscore" (default), "minmax" or "both"
  exponents     {feature: k}: normalize x * 2**k (only for values beyond
                2**+-256, see exact_float.py; no statistic depends on it)
  passthrough   [column, ...]: inputs emitted unchanged under their own
                names, strings included; a VarLen (sparse) one densified to
                [batch, 1] with "" or 0 where a row has no value
  categorical   [column, ...]: text or integer inputs whose vocabulary ids
                the graph emits as `<column>_id` (int64; 0 = missing, then
                the vocabulary, then the out-of-vocabulary buckets; see
                normpipe/components/categories.py). Default: every string
                input but the label and the passthrough columns; [] for none
  vocabulary    {"top_k": 1000, "min_count": 5, "oov_buckets": 1}: the
                categorical columns' vocabulary options
  epochs, batch_size, learning_rate, hidden, shuffle_buffer   run_fn's training
  task          "regression" or "classification" (default: inferred from the
                labels, see normpipe/components/labels.py); a string label
                is classes, their names the graph's vocabulary
  model_fn      "package.module.function" (or a callable) returning a
                compiled Keras 3 model, called as model_fn(feature_names=[...],
                categorical={id output: size}, num_classes=K), trained by
                run_fn instead of normpipe's model; `categorical` holds
                normpipe's ids and the user's own integer features with a
                vocabulary (tft.compute_and_apply_vocabulary's), with their
                number of ids

The preprocessing_fn takes what TFX Transform passes: dense [batch, 1] int64
or float32 features (fixed-length in the schema), tf.SparseTensor for VarLen
ones (a row without a value is missing), and also dense [batch] or float64.
Its outputs are `normalize`'s (`<name>_z`, `<name>_01`), the categorical
ids, the label and the passthrough columns, nothing else; the float64 statistics stay inside the
transform graph, where `normpipe.read_statistics(transform_graph_dir)`
reads them.

Layer: the top, beside `normpipe.pipeline`; it may import every layer, and
nothing in normpipe imports it.
"""

import dataclasses

from normpipe.components import categories, preprocessing, train
from normpipe.io import paths
from normpipe.tfx.normalization import check_passthrough, normalize, normalize_options, passthrough_outputs

__all__ = ["FnArgs", "normalize", "preprocessing_fn", "run_fn", "transform_options"]

_TRAIN_KEYS = {"epochs", "batch_size", "learning_rate", "hidden", "shuffle_buffer", "task", "model_fn"}
_KEYS = {"features", "label", "method", "exponents", "passthrough", "categorical", "vocabulary"} | _TRAIN_KEYS


def _check_config(custom_config) -> dict:
    config = dict(custom_config or {})
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ValueError(f"custom_config has unknown keys {unknown} (known: {sorted(_KEYS)}). Received: {config!r}")
    return config


def transform_options(inputs: dict, custom_config=None) -> preprocessing.TransformOptions:
    """The TransformOptions a custom_config gives for these raw inputs."""
    config = _check_config(custom_config)
    label = config.get("label")
    if label is not None and label not in inputs:
        raise ValueError(f"custom_config label must be an input ({', '.join(sorted(inputs))}). Received: {label!r}")
    exclude = {label} | set(config.get("passthrough") or ())
    chosen = _categorical(inputs, config, exclude)
    options = normalize_options(inputs, config.get("features") or None, config.get("method", "zscore"),
                                exponents=config.get("exponents"), label=label, exclude=exclude | set(chosen))
    vocabulary = config.get("vocabulary") or {}
    if not isinstance(vocabulary, dict) or set(vocabulary) - {"top_k", "min_count", "oov_buckets"}:
        raise ValueError(f"custom_config vocabulary must be a dict of top_k, min_count, oov_buckets. "
                         f"Received: {vocabulary!r}")
    return dataclasses.replace(options, categorical=chosen, vocabulary=categories.VocabularyOptions(**vocabulary))


def _categorical(inputs: dict, config: dict, exclude) -> tuple:
    """custom_config["categorical"] checked against the inputs, or every string input but `exclude`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    named = config.get("categorical")
    if named is None:
        return tuple(sorted(n for n, v in inputs.items() if n not in exclude and v.dtype == tf.string))
    if isinstance(named, (str, bytes)) or not all(isinstance(n, str) for n in named):
        raise ValueError(f"custom_config categorical must be a list of input names. Received: {named!r}")
    wrong = [n for n in named if n not in inputs or n in exclude or not (
        inputs[n].dtype == tf.string or inputs[n].dtype.is_integer)]
    if wrong or len(set(named)) != len(named):
        raise ValueError(f"custom_config categorical must name string or integer inputs once each, not the label or "
                         f"a passthrough column. Received: {list(named)}")
    return tuple(named)


def label_outputs(inputs: dict, config: dict) -> dict:
    """{label: float32 [batch], missing as NaN}, or {} without a label: the
    Trainer's target, as preprocessing_fn emits it."""
    label = config.get("label")
    return {label: preprocessing.label_column(inputs, label)} if label else {}


def preprocessing_fn(inputs, custom_config=None):
    """TFX Transform's entry point: `normalize`'s outputs, the label and the
    passthrough columns (see the module docstring)."""
    config = _check_config(custom_config)
    options = transform_options(inputs, config)
    taken = [options.label] + [name for method in options.methods for name in options.output_names(method)]
    taken += list(options.id_outputs)
    passthrough = check_passthrough(inputs, config.get("passthrough") or (), taken)
    # normalize() itself, with the label recorded in the graph's description
    outputs = preprocessing.normalized_outputs(inputs, options)
    outputs.update(preprocessing.categorical_outputs(inputs, options))
    outputs.update(label_outputs(inputs, config))
    outputs.update(passthrough_outputs(inputs, passthrough))
    return outputs


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
                                    if k in _TRAIN_KEYS - {"shuffle_buffer"}})
    trainer.train_and_write(fn_args, label, options, int(config.get("shuffle_buffer", 100_000)))
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
