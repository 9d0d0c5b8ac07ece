"""Labels: the label's graph output, what task it is, and its classes.

In the transform graph (`label_output`) a numeric label passes through as
float32 (missing as NaN). A string label gets a vocabulary computed over the
whole dataset by tf.Transform (`tft.vocabulary`, file VOCABULARY in the
graph's assets), and its output is the class index as float32; an empty or
missing string is a missing label (NaN). The class order is tf.Transform's
vocabulary order: decreasing frequency, ties in reverse lexicographic order
(counts {a: 5, c: 3, b: 3} give a, c, b), so class 0 is the most frequent.

The task (`resolve_task`), unless `--task` / custom_config["task"] names it:

  string label                       classification, the vocabulary's classes
  every value 0 or 1                 binary classification, classes "0", "1"
  non-negative integers, more than   multiclass, classes "0" .. str(max),
  two distinct values, max < 32      the label's value being its index
  anything else                      regression

`--task classification` takes any non-negative integer label (classes
"0" .. str(max)); `--task regression` takes any numeric label. Two classes
train a sigmoid output (P(class 1)), more a softmax over K.
"""

import collections
import dataclasses
from typing import Optional, Tuple

import numpy as np

from normpipe.core.errors import UserError

TASKS = ("regression", "classification")
VOCABULARY = "normpipe_label_classes"
MAX_INFERRED_CLASSES = 32
_MAX_COUNTED = 1 << 16  # distinct training labels counted for the baseline


def check_task(task) -> Optional[str]:
    """None (infer) or one of TASKS."""
    if task not in (None,) + TASKS:
        raise UserError(f"--task must be regression or classification. Received: {task!r}")
    return task


def is_string(value) -> bool:
    """Whether a preprocessing_fn input (dense or sparse) holds strings."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return value.dtype == tf.string


def string_column(value):
    """A string input as [batch], missing (an absent VarLen value) as ""."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(tf.sparse.reshape(value, tf.stack([value.dense_shape[0], -1])), default_value="")
        if value.shape.rank == 2 and value.shape[1] == 1:
            return value[:, 0]
        # a batch where no row has a value is [batch, 0]: a column of "" after it keeps [batch]
        return tf.concat([value, tf.fill(tf.stack([tf.shape(value)[0], 1]), "")], axis=1)[:, 0]
    return tf.squeeze(value, axis=1) if value.shape.rank == 2 else value


def label_output(value, name):
    """The label's graph output: float32 [batch], missing as NaN (see the
    module docstring); a string label's value is its class index."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    from normpipe.components import statistics  # pylint: disable=import-outside-toplevel

    if not is_string(value):
        return tf.cast(statistics.as_column(value, name), tf.float32)
    strings = string_column(value)
    present = tf.not_equal(strings, "")
    vocabulary = tft.vocabulary(tf.boolean_mask(strings, present), vocab_filename=VOCABULARY)
    index = tft.apply_vocabulary(strings, vocabulary, default_value=-1)
    missing = tf.fill(tf.shape(strings), tf.constant(np.nan, tf.float32))
    return tf.where(tf.logical_and(present, index >= 0), tf.cast(index, tf.float32), missing)


def read_classes(transform_dir: str):
    """The string label's class names in index order, from the graph's
    vocabulary asset, or None when the graph has no label vocabulary."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    path = f"{transform_dir.rstrip('/')}/transform_fn/assets/{VOCABULARY}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return [line.decode("utf-8") for line in f.read().split(b"\n") if line]


@dataclasses.dataclass
class LabelCounts:
    """What the training labels are like, gathered chunk by chunk."""

    rows: int = 0
    integral: bool = True
    minimum: float = np.inf
    maximum: float = -np.inf
    counts: Optional[collections.Counter] = dataclasses.field(default_factory=collections.Counter)

    def add(self, y: np.ndarray) -> None:
        if not len(y):
            return
        self.rows += len(y)
        self.integral = self.integral and bool(np.all(np.floor(y) == y))
        self.minimum, self.maximum = min(self.minimum, float(y.min())), max(self.maximum, float(y.max()))
        if self.counts is not None:
            values, counts = np.unique(y, return_counts=True)
            self.counts.update(dict(zip(values.tolist(), counts.tolist())))
            if len(self.counts) > _MAX_COUNTED:
                self.counts = None

    @property
    def distinct(self) -> Optional[int]:
        return None if self.counts is None else len(self.counts)

    def majority(self) -> float:
        """The most frequent training label (ties: the smallest)."""
        return float(min(self.counts.items(), key=lambda item: (-item[1], item[0]))[0])


@dataclasses.dataclass(frozen=True)
class LabelTask:
    """task: "regression" or "classification"; classes: the class names in
    index order (classification only)."""

    task: str
    classes: Tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """0 for regression, else K (what a user's model_fn is given)."""
        return len(self.classes) if self.task == "classification" else 0

    @property
    def multiclass(self) -> bool:
        return self.num_classes > 2


def _integer_classes(counts: LabelCounts, label: str) -> Tuple[str, ...]:
    if not counts.integral or counts.minimum < 0:
        raise UserError(f"--task classification: label {label!r} must hold non-negative integers (class indices); "
                        f"it holds values in [{counts.minimum:g}, {counts.maximum:g}]")
    return tuple(str(i) for i in range(max(2, int(counts.maximum) + 1)))


def resolve_task(counts: LabelCounts, requested=None, classes=None, label="label") -> LabelTask:
    """The LabelTask of a label (see the module docstring); `classes`: a
    string label's vocabulary."""
    check_task(requested)
    if classes is not None:
        if requested == "regression":
            raise UserError(f"--task regression: label {label!r} holds strings, not numbers")
        if len(classes) < 2:
            raise UserError(f"label {label!r} has {len(classes)} class(es) ({', '.join(classes)}); "
                            "classification needs at least 2")
        return LabelTask("classification", tuple(classes))
    if requested == "regression":
        return LabelTask("regression")
    if requested == "classification":
        return LabelTask("classification", _integer_classes(counts, label))
    if counts.rows and counts.minimum >= 0 and counts.maximum <= 1 and counts.integral:
        return LabelTask("classification", ("0", "1"))
    if (counts.integral and counts.minimum >= 0 and counts.maximum < MAX_INFERRED_CLASSES
            and counts.distinct is not None and counts.distinct > 2):
        return LabelTask("classification", _integer_classes(counts, label))
    return LabelTask("regression")
