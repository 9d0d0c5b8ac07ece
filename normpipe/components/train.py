"""Train: a small Keras 3 model on full-dataset-normalized features.

How the normalization is embedded (`normalization`):

  tft       the model takes the tf.Transform graph's outputs (the values the
            transformed TFRecords hold); at serving the graph runs in front
            of it
  constant  raw float64 in, `DatasetZScore` / `DatasetMinMax` with the
            full-dataset statistics as constants, then the model
  learned   raw in, `LearnedNormalization.from_statistics` (trainable mean and
            std initialised from the full dataset, std kept >= 1e-6)
  batch     raw in, the recipe's per-batch `BatchZScore` / `BatchMinMax`;
            a one-row request gets 0 or NaN, so it needs an explicit opt-in

Every variant sees the same rows in the same split: a row is held out for
evaluation when a hash of its normalized float32 values and label (identical
in the TFRecords and in the graph's output for the raw row) is 0 mod 5.
The task is regression (MSE, reported as MAE), binary classification (labels
0 and 1: a sigmoid output, binary cross-entropy) or multiclass (K classes: a
softmax over K, sparse categorical cross-entropy), both reported as accuracy;
labels.py decides which. Missing labels are dropped.
Training streams from spool.py's chunks (the tft variant on the graph's
normalized values, the others on raw float64); each variant is evaluated on every evaluation row
at a large batch, and at batch size 1 on a fixed-size sample of them.
"""

import dataclasses
from typing import Optional, Tuple

import keras
import numpy as np

from normpipe.components import layers
from normpipe.components.dataset import _MIX, EVAL_BUCKETS

VARIANTS = ("tft", "constant", "learned", "batch")
IDS = "ids"  # the models' second input: the categorical columns' ids, int64 [batch, C]
DEFAULT_BATCH_SIZE = 128
# The training budget of the variants trained only for the side-by-side
# comparison (all but the exported one): the first this many training rows,
# reshuffled every epoch, the same rows for each. The exported variant
# trains on every row. A whole run then grows with the data by one network's
# training, not by four.
COMPARISON_ROWS = 1_000_000


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Args: normalization (one of VARIANTS), epochs, batch_size (None:
    `auto_batch_size` of the number of training rows), learning_rate, hidden
    (units per hidden layer), eval_batch_size (the large evaluation batch),
    seed, comparison_rows (the variants other than `normalization`, trained
    only to be compared, train on the first that many training rows per
    epoch, the same for each; None: on every row), task (None: inferred
    from the label, see labels.py; "regression" or "classification"),
    model_fn (a user's model instead of normpipe's: a dotted path
    `package.module.function` or a callable, see user_model.py; None:
    normpipe's own variants)."""

    normalization: str = "tft"
    epochs: int = 5
    batch_size: Optional[int] = None
    learning_rate: float = 1e-3
    hidden: Tuple[int, ...] = (64, 32)
    eval_batch_size: int = 4096
    seed: int = 0
    comparison_rows: Optional[int] = COMPARISON_ROWS
    task: Optional[str] = None
    model_fn: Optional[object] = None

    def __post_init__(self):
        if self.normalization not in VARIANTS:
            raise ValueError(f"normalization must be one of {', '.join(VARIANTS)}. Received: {self.normalization!r}")
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError(f"epochs and batch_size must be >= 1. Received: {self.epochs}, {self.batch_size}")
        if self.comparison_rows is not None and self.comparison_rows < 1:
            raise ValueError(f"comparison_rows must be >= 1 or None. Received: {self.comparison_rows}")
        if self.task not in (None, "regression", "classification"):
            raise ValueError(f"task must be None, 'regression' or 'classification'. Received: {self.task!r}")

    def batch_size_for(self, train_rows: int) -> int:
        return self.batch_size or auto_batch_size(train_rows)


def auto_batch_size(train_rows: int) -> int:
    """About 500 steps per epoch, as a power of two in [64, 4096].

    Small data keeps enough steps to learn in a few epochs; large data gets
    batches big enough that each step's fixed cost (a few hundred
    microseconds) stops mattering: 12k rows -> 64, 800k -> 2048, 4M -> 4096.
    """
    target = max(train_rows, 1) / 500
    return int(min(4096, max(64, 2 ** round(np.log2(max(target, 1.0))))))


def eval_mask(normalized: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Rows held out for evaluation: a hash of the float32 bits is 0 mod 5
    (dataset.holdout_mask computes the same in TensorFlow)."""
    bits = np.concatenate([normalized.astype(np.float32), label.astype(np.float32)[:, None]], axis=1)
    words = bits.view(np.uint32).astype(np.uint64)
    h = np.zeros(len(words), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h = (h ^ words[:, j]) * _MIX
            h ^= h >> np.uint64(29)
    return (h % np.uint64(EVAL_BUCKETS)) == 0


def infer_task(y: np.ndarray) -> str:
    return "classification" if np.isin(y, (0.0, 1.0)).all() else "regression"


def normalization_layer(variant, method, stats):
    """The first layer of the raw-input variants (None for tft)."""
    mean, std, low, high = (np.nan_to_num(np.asarray(stats[k], np.float64)) for k in ("mean", "std", "min", "max"))
    if variant == "constant":
        if method == "zscore":
            return layers.DatasetZScore(mean.tolist(), std.tolist(), name="normalize")
        return layers.DatasetMinMax(low.tolist(), high.tolist(), mean.tolist(), name="normalize")
    if variant == "learned":
        return layers.LearnedNormalization.from_statistics(mean.tolist(), std.tolist(), name="normalize")
    if variant == "batch":
        return (layers.BatchZScore if method == "zscore" else layers.BatchMinMax)(name="normalize")
    return None


def loss_and_metric(task, num_classes=2):
    """(loss, a new metric object): MSE and MAE for regression, binary
    cross-entropy and accuracy for two classes, sparse categorical
    cross-entropy and accuracy for more."""
    if task == "classification" and num_classes > 2:
        return "sparse_categorical_crossentropy", keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if task == "classification":
        return "binary_crossentropy", keras.metrics.BinaryAccuracy(name="accuracy")
    return "mse", keras.metrics.MeanAbsoluteError(name="mae")


def embedding_width(size: int) -> int:
    """An embedding's width for `size` ids: 1.6 * size**0.56 (a common rule
    of thumb for tabular data), between 2 and 16 for a small MLP."""
    return int(min(16, max(2, round(1.6 * size ** 0.56))))


def build_model(variant, num_features, task, options, method="zscore", stats=None, num_classes=2,
                categorical=None) -> keras.Model:
    """normpipe's MLP; it ends in Dense(1) (regression), a sigmoid (two
    classes) or a softmax over `num_classes` (more).

    `categorical` ({id output: number of ids}, in the order of the ids'
    columns): the model takes a second input, IDS (int64 [batch, C]), and
    each column's ids go through an Embedding (`embedding_width`) whose
    output joins the normalized features before the first Dense layer.
    """
    keras.utils.set_random_seed(options.seed)
    raw = variant != "tft"
    inputs = keras.Input((num_features,), dtype="float64" if raw else "float32", name="features")
    h = normalization_layer(variant, method, stats)(inputs) if raw else inputs
    if categorical:
        ids = keras.Input((len(categorical),), dtype="int64", name=IDS)
        embedded = [keras.layers.Embedding(size, embedding_width(size), name=f"{name}_embedding")(ids[:, j])
                    for j, (name, size) in enumerate(categorical.items())]
        h = keras.layers.Concatenate(name="features_and_categories")([keras.ops.cast(h, "float32")] + embedded)
        inputs = [inputs, ids]
    for units in options.hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    multiclass = task == "classification" and num_classes > 2
    activation = "softmax" if multiclass else "sigmoid" if task == "classification" else None
    outputs = keras.layers.Dense(num_classes if multiclass else 1, activation=activation, name="prediction")(h)
    model = keras.Model(inputs, outputs, name=f"normpipe_{variant}")
    loss, metric = loss_and_metric(task, num_classes)
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate), loss=loss, metrics=[metric])
    return model


def joint_model(models: dict, inputs_of: dict, task, options, num_classes=2) -> keras.Model:
    """The variants' models side by side in one Keras model, to train and
    evaluate them in one pass over the data.

    `models`: {variant: build_model(...)}; `inputs_of`: {variant: input
    name} (variants that take the same features share an input). The joint
    loss is the sum of the variants' losses, and no weight is shared, so
    each model's gradient is that of its own loss, and Adam, which adapts
    each weight on its own, takes the steps it would take training that
    model alone on the same batches; one training step, with its fixed
    cost, serves every variant.
    """
    first = {}
    for variant, model in models.items():
        first.setdefault(inputs_of[variant], model.inputs[0])
        if len(model.inputs) > 1:
            first.setdefault(IDS, model.inputs[1])
    inputs = {name: keras.Input(tensor.shape[1:], dtype=tensor.dtype, name=name) for name, tensor in first.items()}
    outputs = {variant: model([inputs[inputs_of[variant]], inputs[IDS]] if len(model.inputs) > 1
                              else inputs[inputs_of[variant]]) for variant, model in models.items()}
    joint = keras.Model(inputs, outputs, name="normpipe_variants")
    loss = {variant: loss_and_metric(task, num_classes)[0] for variant in models}
    metrics = {variant: [loss_and_metric(task, num_classes)[1]] for variant in models}
    joint.compile(optimizer=keras.optimizers.Adam(options.learning_rate), loss=loss, metrics=metrics,
                  steps_per_execution=16)
    return joint


# A variant whose network is another's: constant's first Dense layer takes
# what tft's takes, the float32 values of the tf.Transform graph's own kernels
# (layers._DatasetLayer) on the same full-dataset statistics, and
# build_model gives both the same initial weights, so training it beside tft
# would compute tft's weights a second time (a quarter of the four variants'
# training). It takes tft's trained weights instead, and is evaluated
# through its own normalization layer.
SAME_NETWORK = {"constant": "tft"}


def networks_to_train(variants) -> list:
    """The variants that train a network of their own (see SAME_NETWORK)."""
    return [v for v in variants if SAME_NETWORK.get(v) not in variants]


def _dense_layers(model):
    """The layers a network is (Dense and the categories' Embeddings), in build order."""
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Embedding))]


def share_trained_weights(models: dict):
    """Gives each variant of SAME_NETWORK its source's trained Dense weights."""
    for variant, source in SAME_NETWORK.items():
        if variant in models and source in models:
            for own, trained in zip(_dense_layers(models[variant]), _dense_layers(models[source]), strict=True):
                own.set_weights(trained.get_weights())


def budgets(variants, exported) -> dict:
    """{variant: "every_row" | "comparison"}: the exported variant's network
    (its own, or the one it takes, see SAME_NETWORK) trains on every row,
    the others on the comparison budget (TrainOptions.comparison_rows)."""
    trained = networks_to_train(variants)
    network = lambda v: SAME_NETWORK[v] if v not in trained else v  # noqa: E731
    if exported not in variants:
        return dict.fromkeys(variants, "every_row")
    return {v: "every_row" if network(v) == network(exported) else "comparison" for v in variants}


def _fit(models, inputs_of, task, options, data, batch_size, verbose, num_classes=2):
    """Trains `models` side by side (joint_model) on data(batch_size)."""
    joint = joint_model(models, inputs_of, task, options, num_classes)
    needed = {inputs_of[v] for v in models} | ({IDS} if any(len(m.inputs) > 1 for m in models.values()) else set())
    keep = lambda x, y: ({k: x[k] for k in needed}, {v: y[v] for v in models})  # noqa: E731
    joint.fit(data(batch_size).map(keep), epochs=options.epochs, shuffle=False, verbose=verbose)


def fit_and_evaluate_variants(models: dict, inputs_of: dict, task, train_data, eval_data, sample_data, options,
                              batch_size, verbose=2, comparison_data=None, num_classes=2) -> dict:
    """Trains `models` ({variant: build_model(...)}) side by side (see
    joint_model; a variant of SAME_NETWORK takes its source's weights) on
    train_data(batch_size); returns {variant: {"metric": name, "batch_1":
    {"loss", name}, "batch_<eval batch size>": {...}}}, from one evaluation
    pass of every variant at batch size 1 on sample_data(1) and one at
    options.eval_batch_size on eval_data, with "network": the variant whose
    weights it took for a variant of SAME_NETWORK. The datasets give
    ({input: x}, {variant: y}) for every variant.

    `comparison_data` (a factory like train_data, of the comparison budget's
    rows): the variants trained only to be compared (`budgets`) train side
    by side on it, and the exported one, options.normalization, alone on
    train_data; None: all of them on train_data, in one pass per epoch."""
    variants = list(models)
    trained = networks_to_train(variants)
    budget = budgets(variants, options.normalization)
    groups = [(trained, train_data)]
    if comparison_data is not None and "comparison" in budget.values():
        groups = [([v for v in trained if budget[v] == b], data)
                  for b, data in (("every_row", train_data), ("comparison", comparison_data))]
    for networks, data in groups:
        if networks:
            _fit({v: models[v] for v in networks}, inputs_of, task, options, data, batch_size, verbose,
                 num_classes)
    if trained != variants:
        share_trained_weights(models)
    joint = joint_model(models, inputs_of, task, options, num_classes)
    metric = loss_and_metric(task, num_classes)[1].name
    results = {v: {"metric": metric} for v in variants}
    for variant in set(variants) - set(trained):
        results[variant]["network"] = SAME_NETWORK[variant]  # trained as that variant's, not again
    for batch, data in ((1, sample_data(1)), (options.eval_batch_size, eval_data(options.eval_batch_size))):
        values = joint.evaluate(data, verbose=0, return_dict=True)
        for variant in variants:
            # Keras names a figure "<output>_<name>", or "<name>" when there is one output
            prefix = f"{variant}_" if len(variants) > 1 else ""
            results[variant][f"batch_{batch}"] = {"loss": _finite_or_none(values[f"{prefix}loss"]),
                                                  metric: _finite_or_none(values[f"{prefix}{metric}"])}
    return results


def _finite_or_none(value):
    """JSON has no NaN: a NaN metric (the recipe at batch size 1) becomes null."""
    value = float(value)
    return value if np.isfinite(value) else None
