"""`normpipe train`: transform, train each normalization variant, export one.

Layout under <output-dir> (besides the transform stage's):
  model/model.keras            the exported variant's Keras model
  model/metrics.json           eval metric of every variant at batch size 1
                               (on a fixed sample of eval rows) and at a
                               large batch (on all of them), beside a
                               predict-the-mean / majority-class baseline
  .tmp-train-*/                the spooled splits while training (removed)
  serving/<name>/<version>/    the SavedModel for TF Serving
"""

import dataclasses
import os
import shutil
import time

import numpy as np
import tensorflow as tf

from normpipe.components import categories, compare, labels, spool, train, transform, user_model
from normpipe.components.report import training_budget
from normpipe.core.errors import UserError
from normpipe.io import atomic, paths
from normpipe.pipeline.config import ExportConfig, InputConfig
from normpipe.pipeline.progress import progress, rows_per_s
from normpipe.pipeline.transform import TransformConfig, run_transform
from normpipe.serving import export, serving_layout


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What to read (its label is the target), how to train, where to export.

    The exported variant is `options.normalization`; `all_variants` also
    trains the others to report their metrics beside it.
    """

    input: InputConfig
    output_dir: str
    method: str = "zscore"
    options: train.TrainOptions = train.TrainOptions()
    export: ExportConfig = ExportConfig()
    allow_batch_statistics: bool = False
    all_variants: bool = True

    @property
    def normalization(self) -> str:
        return self.options.normalization


def check_config(config: TrainConfig) -> None:
    """User errors that need no data: fail before any work."""
    if not config.input.label:
        raise UserError("--label is required: train needs a target column")
    if config.normalization == "batch" and not config.allow_batch_statistics:
        raise UserError(
            "--normalization batch uses per-batch statistics: a one-row request gives 0 (z-score) or NaN "
            "(min-max). Pass --allow-batch-statistics to export it anyway"
        )
    serving_layout.check_model_name(config.export.model_name)
    serving_layout.serving_inputs_for(config.export.serving_inputs, 0)
    labels.check_task(config.options.task)
    if config.options.model_fn is not None:
        user_model.load_model_fn(config.options.model_fn)
        if config.normalization != "tft":
            raise UserError("--model-fn takes the transformed features: it needs --normalization tft. "
                            f"Received: {config.normalization}")


def run_train(config: TrainConfig, beam_args=()):
    check_config(config)
    transform_config = TransformConfig(input=config.input, output_dir=config.output_dir, method=config.method)
    spec, stats_document = run_transform(transform_config, beam_args)
    return train_and_export(spec, stats_document, config)


def _model_input_fn(variant, model, graph, names, features, num_classes=0, categorical=()):
    """(rows, {categorical column: texts}) -> the in-pipeline predictions."""

    def predict(rows, texts=None):
        columns = {n: rows[:, j] for j, n in enumerate(features)}
        columns.update({c: np.array([str(t).encode("utf-8") for t in (texts or {})[c]], object) for c in categorical})
        outputs = graph(columns)
        ids = {categories.id_name(c): outputs[categories.id_name(c)].astype(np.int64) for c in categorical}
        x = np.stack([outputs[n] for n in names], axis=1) if variant == "tft" else rows
        # One call on a float64 tensor for the whole sample, as one serving
        # request would be (model.predict would cast numpy float64 to float32).
        if variant == "tft" and user_model.input_names(model, list(names) + list(ids)) is not None:
            x = user_model.as_model_input(tf.constant(x), model, names, ids)
        elif len(model.inputs) > 1:
            x = [tf.constant(x), tf.constant(np.stack(list(ids.values()), axis=1))]
        else:
            x = tf.constant(x)
        return user_model.scores(model(x, training=False), num_classes)

    return predict


def _save_keras(model, path):
    """Saves the model in local scratch, then publishes the file atomically
    (atomic.write_bytes_atomic: local rename, or a URI's object copy)."""
    scratch = paths.local_temp_dir(".model-", paths.dirname(path))
    try:
        tmp = os.path.join(scratch, "model.keras")
        model.save(tmp)
        atomic.copy_file_atomic(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _budget_line(variants, budget, limit, train_rows) -> str:
    """The progress line's note of who trains on what (see train.budgets)."""
    compared = [v for v in variants if budget[v] == "comparison"]
    if not compared or limit >= train_rows:
        return ""
    every = [v for v in variants if budget[v] == "every_row"]
    return (f"; {', '.join(compared)} on the first {limit:,} training rows per epoch (--comparison-rows), "
            f"{', '.join(every)} on all {train_rows:,}")


def train_variants(spec, stats, rows, config: TrainConfig, method, category_sizes=None):
    """Trains and evaluates each variant, side by side in one model (see
    train.joint_model), the comparison-only ones on the first
    options.comparison_rows training rows per epoch; returns ({variant:
    metrics}, {variant: model}, batch size)."""
    options = config.options
    batch_size = options.batch_size_for(rows.train_rows)
    variants = train.VARIANTS if config.all_variants else (config.normalization,)
    k = max(rows.label_task.num_classes, 2) if rows.label_task else 2
    models = {v: train.build_model(v, len(spec.features), rows.task, options, method, stats, num_classes=k,
                                   categorical=category_sizes)
              for v in variants}
    data = spool.variant_datasets(rows, variants, options.seed, stats["mean"])
    budget = train.budgets(variants, config.normalization)
    limit = min(options.comparison_rows or rows.train_rows, rows.train_rows)
    comparison = None
    if limit < rows.train_rows:
        comparison = spool.variant_datasets(rows, variants, options.seed, stats["mean"], train_limit=limit)[0]
    trained = train.networks_to_train(variants)
    shared = [f"{v} takes {train.SAME_NETWORK[v]}'s network" for v in variants if v not in trained]
    progress(f"train: {', '.join(variants)} side by side ({options.epochs} epochs, batch size {batch_size}"
             f"{''.join('; ' + s for s in shared)}{_budget_line(variants, budget, limit, rows.train_rows)})")
    started = time.time()
    results = train.fit_and_evaluate_variants(models, spool.INPUTS, rows.task, data[0], data[1], data[2], options,
                                              batch_size, comparison_data=comparison, num_classes=k)
    seconds = round(time.time() - started, 2)
    return _variant_metrics(results, rows, options, seconds, budget, limit), models, batch_size


def _variant_metrics(results, rows, options, seconds, budget=None, limit=None) -> dict:
    """metrics.json's record of each trained model: its evaluation, the rows it
    trained on per epoch and its budget (see train.budgets)."""
    budget = budget or dict.fromkeys(results, "every_row")
    metrics = {}
    for variant, result in results.items():
        result["batch_1"]["rows"] = len(rows.sample_y)
        result[f"batch_{options.eval_batch_size}"]["rows"] = int(rows.eval_rows)
        used = rows.train_rows if budget[variant] == "every_row" else limit
        metrics[variant] = {**result, "train_rows": int(used), "budget": budget[variant],
                            "eval_rows": int(rows.eval_rows), "seconds": seconds}
    return metrics


USER_MODEL = "model_fn"  # the name of a user's model among the variants in metrics.json


def train_user_model(names, rows, config: TrainConfig, category_sizes=None):
    """Trains the model config.options.model_fn builds on the graph's normalized
    features and categorical ids (as the tft variant is trained); returns
    ({USER_MODEL: metrics}, {USER_MODEL: model}, batch size)."""
    options, task = config.options, rows.label_task
    category_sizes = category_sizes or {}
    model = user_model.build(config.options.model_fn, names, task.num_classes, categorical=category_sizes)
    batch_size = options.batch_size_for(rows.train_rows)
    progress(f"train: the model of --model-fn ({options.epochs} epochs, batch size {batch_size}); "
             "the normalization variants are not trained")
    train_data, eval_data, sample_data = spool.variant_datasets(rows, ["tft"], options.seed)
    id_names = list(category_sizes)

    def as_input(x, y):
        ids = {n: x[train.IDS][:, j] for j, n in enumerate(id_names)}
        if user_model.input_names(model, list(names) + id_names) is None and len(model.inputs) > 1:
            return (x["normalized"], x[train.IDS]), y["tft"]
        return user_model.as_model_input(x["normalized"], model, names, ids), y["tft"]

    started = time.time()
    model.fit(train_data(batch_size).map(as_input), epochs=options.epochs, shuffle=False, verbose=2)
    result = {"metric": None}
    for batch, data in ((1, sample_data(1)), (options.eval_batch_size, eval_data(options.eval_batch_size))):
        predicted, labelled = [], []
        for x, y in data.map(as_input):
            predicted.append(np.asarray(model(x, training=False)))
            labelled.append(y.numpy())
        name, value = user_model.metric_value(np.concatenate(predicted), np.concatenate(labelled), task.num_classes)
        result["metric"], result[f"batch_{batch}"] = name, {name: value}
    return _variant_metrics({USER_MODEL: result}, rows, options, round(time.time() - started, 2)), \
        {USER_MODEL: model}, batch_size


def _spool_dir(out):
    """Scratch space for the spooled splits: hidden, under a local output
    directory; in the system's temp directory for an output on a URI."""
    return paths.local_temp_dir(".tmp-train-", out)


def train_and_export(spec, stats_document, config: TrainConfig):
    """Trains the variants (or the model of config.options.model_fn) on the transform
    stage's outputs; exports the chosen one."""
    out = config.output_dir
    graph = transform.TransformGraph(paths.join(out, "transform"))
    method = "zscore" if "zscore" in graph.metadata["methods"] else "minmax"
    names = compare.output_names(spec.features, method)
    stats = compare.full_statistics(stats_document, spec.features)
    scratch = _spool_dir(out)
    try:
        started = time.time()
        rows = spool.spool_splits(spec, graph, names, scratch)
        if rows.train_rows == 0 or rows.eval_rows == 0:
            raise UserError(f"too few labelled rows to train and evaluate ({rows.train_rows} train, "
                            f"{rows.eval_rows} eval)")
        rows.label_task = labels.resolve_task(rows.all_labels, config.options.task, graph.metadata.get("classes"), spec.label)
        seconds = time.time() - started
        classes = f", {rows.label_task.num_classes} classes" if rows.task == "classification" else ""
        progress(f"train: label {spec.label!r} ({rows.task}{classes}); {rows.train_rows:,} train / "
                 f"{rows.eval_rows:,} eval rows read, split and spooled in {seconds:.1f}s "
                 f"({rows_per_s(rows.train_rows + rows.eval_rows, seconds)}); "
                 f"batch size 1 evaluated on the first {len(rows.sample_y):,} eval rows")
        sizes = {categories.id_name(c): graph.metadata["category_sizes"][categories.id_name(c)]
                 for c in spec.categorical}
        if config.options.model_fn is not None:
            metrics, models, batch_size = train_user_model(names, rows, config, sizes)
        else:
            metrics, models, batch_size = train_variants(spec, stats, rows, config, method, sizes)
        document = _metrics_document(spec, rows, config, method, metrics, batch_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    exported = USER_MODEL if config.options.model_fn is not None else config.normalization
    chosen, variant = models[exported], "tft" if config.options.model_fn is not None else config.normalization
    _save_keras(chosen, paths.join(out, "model", "model.keras"))
    atomic.write_json_atomic(paths.join(out, "model", "metrics.json"), document)
    # The verify sample: the rows whose normalized values the transform
    # stage's Beam run recorded (transform.SAMPLE_FILE).
    version_dir = export.export_model(
        paths.join(out, "transform"), paths.join(out, "serving"), config.export.model_name, config.export.model_version,
        model=chosen, variant=variant, model_inputs=names, task=rows.task,
        base_path=config.export.serving_base_path, serving_inputs=config.export.serving_inputs,
        classes=rows.label_task.classes or None,
        predict_fn=_model_input_fn(variant, chosen, graph, names, spec.features, rows.label_task.num_classes,
                                   spec.categorical),
    )
    progress(f"exported {version_dir}")
    return document, version_dir


def _metrics_document(spec, rows, config, method, metrics, batch_size) -> dict:
    options = config.options
    large = f"batch_{options.eval_batch_size}"
    document = {"label": spec.label, "task": rows.task, "method": method,
                "exported": USER_MODEL if config.options.model_fn is not None else config.normalization,
                "batch_size": batch_size, "epochs": options.epochs, "eval_batch_size": options.eval_batch_size,
                "train_rows": int(rows.train_rows), "comparison_rows": options.comparison_rows,
                "eval_sample_rows": len(rows.sample_y), "eval_rows": int(rows.eval_rows),
                "baseline": spool.baseline(rows, large), "variants": metrics}
    if rows.task == "classification" and rows.label_task.classes != ("0", "1"):  # binary 0/1: as it always was
        document["classes"] = list(rows.label_task.classes)
    if config.options.model_fn is not None:
        document["model_fn"] = (
            config.options.model_fn if isinstance(config.options.model_fn, str) else repr(config.options.model_fn)
        )
        document["variants_not_trained"] = "a model_fn was given: the normalization variants were not trained"
    return document


def _cell(value) -> str:
    return f"{value:>12.4g}" if value is not None else f"{'NaN':>12}"


def _verdict(m, baseline, metric, large) -> str:
    """How a variant's batch-size-1 figure compares with its large-batch one
    and with the baseline's (MAE: lower is better; accuracy: higher)."""
    small, big, base = m["batch_1"][metric], m[large][metric], baseline.get("batch_1", {}).get(metric)
    if small is None:
        return "  <- NaN at batch size 1"
    worse = (lambda a, b: a > b * 1.05) if metric != "accuracy" else (lambda a, b: a < b - 0.01)
    notes = []
    if big is not None and worse(small, big):
        notes.append(f"{small / big:.1f}x its large-batch {metric}" if metric != "accuracy"
                     else f"{big - small:+.3f} below its large-batch accuracy")
    if base is not None and not worse(base, small):
        notes.append("no better than the baseline")
    return f"  <- batch size 1: {', '.join(notes)}" if notes else ""


def format_metrics(document) -> str:
    """The metrics table: baseline and each variant, at batch size 1 and large."""
    large = f"batch_{document.get('eval_batch_size', 4096)}"
    baseline = document.get("baseline") or {}
    metric = next(iter(document["variants"].values()))["metric"]
    lines = [
        f"label {document['label']!r} ({document['task']}), {metric} on held-out rows: batch 1 on the first "
        f"{document.get('eval_sample_rows', 0):,} eval rows, {large.replace('_', ' ')} on all "
        f"{document.get('eval_rows', 0):,}; trained at batch size {document.get('batch_size')}",
        f"{'variant':<10} {'metric':<9} {'batch 1':>12} {'large batch':>12}",
    ]
    if baseline:
        lines.append(f"{'baseline':<10} {metric:<9} {_cell(baseline['batch_1'][metric])} "
                     f"{_cell(baseline[large][metric])}  ({baseline['what']})")
    for variant, m in document["variants"].items():
        lines.append(f"{variant:<10} {metric:<9} {_cell(m['batch_1'][metric])} {_cell(m[large][metric])}"
                     + _verdict(m, baseline, metric, large))
    if document.get("classes"):
        lines.insert(1, f"classes (index order): {', '.join(document['classes'])}")
    if document.get("variants_not_trained"):
        lines.append(f"{document['variants_not_trained']} (--model-fn {document.get('model_fn')})")
    collapse, budget = per_batch_collapse(document), training_budget(document)
    return "\n".join(lines + [line for line in (collapse, budget) if line])


def per_batch_collapse(document) -> str:
    """One sentence: the per-batch variant at batch size 1 against a
    full-dataset variant and the baseline, or "" without both."""
    variants, baseline = document["variants"], document.get("baseline") or {}
    full = next((v for v in ("tft", "constant", "learned") if v in variants), None)
    if "batch" not in variants or not full or not baseline:
        return ""
    metric = variants["batch"]["metric"]
    large = f"batch_{document.get('eval_batch_size', 4096)}"
    small, at_large = variants["batch"]["batch_1"][metric], variants["batch"][large][metric]
    reference, base = variants[full]["batch_1"][metric], baseline["batch_1"][metric]
    if small is None:
        return f"per-batch variant at batch size 1: {metric} NaN (its outputs are not numbers)"
    return (f"per-batch variant at batch size 1: {metric} {small:.4g} (at {large.replace('batch_', 'batch ')}: "
            f"{at_large:.4g}); full-dataset {full}: {reference:.4g}; baseline ({baseline['what']}): {base:.4g}")
