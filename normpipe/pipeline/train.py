"""`normpipe train`: transform, train each normalization variant, export one.

Layout under <output-dir> (besides the transform stage's):
  model/model.keras            the exported variant's Keras model
  model/metrics.json           eval metric of every variant at batch size 1
                               and at a large batch
  serving/<name>/<version>/    the SavedModel for TF Serving
"""

import dataclasses
import os
import tempfile
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from normpipe.components import atomic, compare, export, train, transform
from normpipe.components.errors import UserError
from normpipe.pipeline.progress import progress
from normpipe.pipeline.transform import TransformConfig, run_transform


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    input: str
    output_dir: str
    label: str
    format: Optional[str] = None
    features: Optional[Tuple[str, ...]] = None
    method: str = "zscore"
    normalization: str = "tft"
    allow_batch_statistics: bool = False
    all_variants: bool = True
    model_name: str = "normpipe"
    model_version: Optional[int] = None
    options: train.TrainOptions = train.TrainOptions()
    bad_values: str = "error"

    def __post_init__(self):
        if self.normalization not in train.VARIANTS:
            raise ValueError(f"normalization must be one of {', '.join(train.VARIANTS)}. Received: {self.normalization!r}")


def check_config(config: TrainConfig) -> None:
    """User errors that need no data: fail before any work."""
    if not config.label:
        raise UserError("--label is required: train needs a target column")
    if config.normalization == "batch" and not config.allow_batch_statistics:
        raise UserError(
            "--normalization batch uses per-batch statistics: a one-row request gives 0 (z-score) or NaN "
            "(min-max). Pass --allow-batch-statistics to export it anyway"
        )
    export.check_model_name(config.model_name)


def run_train(config: TrainConfig, beam_args=()):
    check_config(config)
    transform_config = TransformConfig(config.input, config.output_dir, config.format, config.features, config.label,
                                       bad_values=config.bad_values, method=config.method)
    spec, stats_document = run_transform(transform_config, beam_args)
    return train_and_export(spec, stats_document, config)


def _model_input_fn(variant, model, graph, names, features):
    """Rows -> what the model takes, for the in-pipeline predictions."""

    def predict(rows):
        if variant == "tft":
            columns = {n: rows[:, j] for j, n in enumerate(features)}
            columns.update({n: np.full(len(rows), np.nan) for n in graph.metadata["raw_inputs"] if n not in columns})
            outputs = graph(columns)
            x = np.stack([outputs[n] for n in names], axis=1)
        else:
            x = rows
        # One call on a float64 tensor for the whole sample, as one serving
        # request would be (model.predict would cast numpy float64 to float32).
        return np.asarray(model(tf.constant(x), training=False)).reshape(-1)

    return predict


def _save_keras(model, path):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=directory)
    os.close(fd)
    atomic.make_public_file(tmp)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def train_and_export(spec, stats_document, config: TrainConfig):
    """Trains the variants on the transform stage's outputs; exports the chosen one."""
    out = config.output_dir
    graph = transform.TransformGraph(os.path.join(out, "transform"))
    method = "zscore" if "zscore" in graph.metadata["methods"] else "minmax"
    names = compare.output_names(spec.features, method)
    stats = compare.full_statistics(stats_document, spec.features)
    tft_data = train.transformed_arrays(os.path.join(out, "transformed"), names, spec.label)
    raw_data = train.raw_arrays(spec, graph, names)
    task = train.infer_task(tft_data[0][1])
    progress(f"train: label {spec.label!r} ({task}); {len(tft_data[0][0]):,} train / {len(tft_data[1][0]):,} eval rows")
    variants = train.VARIANTS if config.all_variants else (config.normalization,)
    metrics, models = {}, {}
    for variant in variants:
        model = train.build_model(variant, len(spec.features), task, config.options, method, stats)
        if variant == "tft":
            data = tft_data
        elif variant == "batch":
            data = [(train.impute_for_batch_variant(x, stats), y) for x, y in raw_data]
        else:
            data = raw_data
        progress(f"train: variant {variant} ({config.options.epochs} epochs)")
        metrics[variant] = train.fit_and_evaluate(model, data[0], data[1], config.options)
        models[variant] = model
    chosen = models[config.normalization]
    _save_keras(chosen, os.path.join(out, "model", "model.keras"))
    document = {"label": spec.label, "task": task, "method": method, "exported": config.normalization, "variants": metrics}
    atomic.write_json_atomic(os.path.join(out, "model", "metrics.json"), document)
    sample = raw_data[1][0][: export.MAX_WARMUP]
    version_dir = export.export_model(
        os.path.join(out, "transform"), os.path.join(out, "serving"), config.model_name, config.model_version,
        model=chosen, variant=config.normalization, model_inputs=names, sample_rows=sample,
        predict_fn=_model_input_fn(config.normalization, chosen, graph, names, spec.features),
    )
    progress(f"exported {version_dir}")
    return document, version_dir


def format_metrics(document) -> str:
    lines = [f"{'variant':<10} {'metric':<9} {'batch 1':>12} {'large batch':>12}"]
    for variant, m in document["variants"].items():
        metric = m["metric"]
        small = m["batch_1"][metric]
        large = [v for k, v in m.items() if k.startswith("batch_") and k != "batch_1"][0][metric]
        cell = lambda v: f"{v:>12.4g}" if v is not None else f"{'NaN':>12}"  # noqa: E731
        lines.append(f"{variant:<10} {metric:<9} {cell(small)} {cell(large)}")
    return "\n".join(lines)
