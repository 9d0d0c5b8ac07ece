"""run_fn's training: normpipe's model or the user's `model_fn`, any label.

The task comes from the labels as `normpipe train` decides it
(components/labels.py): a string label's classes are the transform graph's
vocabulary, an integer label with a few values is multiclass, and
custom_config["task"] overrides the inference. custom_config["model_fn"]
(a dotted path or a callable, see components/user_model.py) replaces
normpipe's MLP; a model with named inputs may take any transformed feature,
a vocabulary id of the user's own preprocessing_fn included.
"""

import numpy as np

from normpipe.components import labels, train, transform, user_model
from normpipe.serving import export


def label_task(data, label, task, classes) -> labels.LabelTask:
    """The LabelTask of the training labels (one pass over them)."""
    counts = labels.LabelCounts()
    for y in data:
        counts.add(np.asarray(y, np.float64))
    return labels.resolve_task(counts, task, classes, label)


def _as_columns(x: dict, names, dtypes) -> dict:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return {n: tf.reshape(tf.cast(x[n], dtypes[n]), [-1, 1]) for n in names}


def category_sizes(tft_output, metadata, names, label) -> dict:
    """{transformed integer feature: number of ids}: normpipe's categorical
    ids (metadata["category_sizes"]), then any other integer output with a
    vocabulary domain in the transformed schema (what
    tft.compute_and_apply_vocabulary emits), in name order."""

    sizes = dict(metadata.get("category_sizes") or {})
    for name, spec in sorted(tft_output.transformed_feature_spec().items()):
        if name in sizes or name in set(names) or name == label or not spec.dtype.is_integer:
            continue
        try:
            sizes[name] = int(tft_output.num_buckets_for_transformed_feature(name))
        except ValueError:  # an integer output without a domain: not a vocabulary's
            continue
    return sizes


def _split_ids(sizes):
    """(x, y) of dict batches -> ([normalized matrix, ids matrix], y) for
    normpipe's model, each id checked against its number of ids (`sizes`)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    def split(x, y, names):
        ids = [_checked_ids(x[n], n, sizes[n]) for n in sizes]
        return (tf.stack([tf.cast(x[n], tf.float32) for n in names], axis=1), tf.stack(ids, axis=1)), y

    return split


def _checked_ids(value, name, size):
    """int64 [batch] ids, or an error naming the feature when one is beyond the
    transform graph's vocabulary: examples transformed by another Transform
    run than the graph's would otherwise fail deep in an Embedding's gather."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    ids = tf.cast(tf.reshape(value, [-1]), tf.int64)
    check = tf.debugging.assert_less(
        ids, tf.constant(size, tf.int64),
        message=f"run_fn: transformed feature {name!r} holds an id beyond the {size} ids of the transform graph's "
                "vocabulary; were the examples transformed by another Transform run than fn_args.transform_output's?")
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def train_and_write(fn_args, label, options: train.TrainOptions, shuffle_buffer):
    """Trains (normpipe's model or options.model_fn's) and writes the servable;
    options.task, when set, overrides the task the labels imply."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    from normpipe.components.dataset import input_fn  # pylint: disable=import-outside-toplevel

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    metadata = transform.read_metadata(fn_args.transform_output)
    method = "zscore" if "zscore" in metadata["methods"] else "minmax"
    names = list(metadata["outputs"][method])
    available = sorted(n for n in tft_output.transformed_feature_spec() if n != label)
    batch_size = options.batch_size or train.DEFAULT_BATCH_SIZE

    def data(files, batch_size, shuffle, epochs=1, matrix=True):
        return input_fn(files, tft_output, batch_size, label, features=names if matrix else None, shuffle=shuffle,
                        num_epochs=epochs, shuffle_buffer=shuffle_buffer, seed=options.seed)

    task = label_task((y for _, y in data(fn_args.train_files, 65536, False)), label, options.task,
                      metadata.get("classes"))
    sizes = category_sizes(tft_output, metadata, names, label)
    own = {n: sizes[n] for n in metadata.get("category_sizes") or {}}  # normpipe's ids: its model embeds them
    if options.model_fn is not None:
        model = user_model.build(options.model_fn, names, task.num_classes, available, where="custom_config model_fn",
                                 categorical=sizes)
    else:
        model = train.build_model("tft", len(names), task.task, options, method, num_classes=max(task.num_classes, 2),
                                  categorical=own)
    named = user_model.input_names(model, available)
    dtypes = {t.name: t.dtype for t in model.inputs}
    prepare = (lambda x, y: (_as_columns(x, named, dtypes), y)) if named else (lambda x, y: (x, y))
    if named is None and len(model.inputs) > 1:  # normpipe's model: the features and its ids
        split = _split_ids(own)
        prepare = lambda x, y: split(x, y, names)  # noqa: E731
    matrix = named is None and len(model.inputs) == 1  # else batches of named columns
    steps = getattr(fn_args, "train_steps", None)
    if steps:
        model.fit(data(fn_args.train_files, batch_size, True, None, matrix).map(prepare), epochs=1,
                  steps_per_epoch=steps, verbose=2)
    else:
        model.fit(data(fn_args.train_files, batch_size, True, matrix=matrix).map(prepare),
                  epochs=options.epochs, verbose=2)
    model.evaluate(data(fn_args.eval_files, options.eval_batch_size, False, matrix=matrix).map(prepare),
                   steps=getattr(fn_args, "eval_steps", None) or None, verbose=2)
    export.write_servable(fn_args.serving_model_dir, fn_args.transform_output, model, "tft", names, task=task.task,
                          classes=task.classes or None)
    return model, task
