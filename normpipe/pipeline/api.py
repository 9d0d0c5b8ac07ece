"""Whole stages as Python functions: what `normpipe stats`, `normpipe
transform` and `normpipe train` run, without the command line."""

from typing import Optional, Sequence

from normpipe.pipeline import stats as _stats
from normpipe.pipeline import transform as _transform
from normpipe.pipeline.config import ExportConfig, InputConfig


def compute_statistics(input: str, output_dir: str, *, format: Optional[str] = None,
                       features: Optional[Sequence[str]] = None, label: Optional[str] = None,
                       bad_values: str = "error", categorical: Optional[Sequence[str]] = None,
                       beam_args: Sequence[str] = ()) -> dict:
    """Full-dataset statistics of `input`; writes and returns statistics.json.

    `input` is a CSV or TFRecord file, directory or glob; `beam_args` are Beam
    pipeline flags (`--runner=...`). Returns {"num_examples": N, "features":
    {name: {count, missing, mean, var, std, min, max, bad_values}}, ...}:
    the exact values rounded once to float64 (the same bits on any runner and
    partitioning), population variance (ddof=0), over present values, and
    "categorical": {column: {count, missing, distinct, top}} for the
    `categorical` columns (None: every text column but the label; (): none).
    Raises normpipe.core.errors.UserError on bad input.
    """
    source = InputConfig(path=input, format=format, features=_tuple(features), label=label, bad_values=bad_values,
                         categorical=_tuple(categorical))
    config = _stats.StatsConfig(input=source, output_dir=output_dir)
    return _stats.run_stats(config, beam_args)


def transform(input: str, output_dir: str, *, method: str = "zscore", format: Optional[str] = None,
              features: Optional[Sequence[str]] = None, label: Optional[str] = None, bad_values: str = "error",
              materialize: bool = True, categorical: Optional[Sequence[str]] = None, vocabulary=None,
              beam_args: Sequence[str] = ()) -> dict:
    """Analyze and transform `input`; returns the statistics.json document.

    Writes `output_dir/transform/` (the tf.Transform output: transform_fn/,
    transformed_metadata/, metadata/), `output_dir/transformed/` (gzip
    TFRecords of the normalized tf.train.Examples, unless materialize=False)
    and `output_dir/statistics.json`. `categorical` (None: every text column
    but the label) get a vocabulary and ids `<column>_id` in the graph;
    `vocabulary`: {"top_k", "min_count", "oov_buckets"} (see
    normpipe/components/categories.py).
    """
    source = _input(input, format, features, label, bad_values, categorical, vocabulary)
    config = _transform.TransformConfig(input=source, output_dir=output_dir, method=method, materialize=materialize)
    _, document = _transform.run_transform(config, beam_args)
    return document


def train(input: str, output_dir: str, *, label: str, task: Optional[str] = None,
          model_fn=None, method: str = "zscore", normalization: str = "tft", epochs: int = 5,
          batch_size: Optional[int] = None, format: Optional[str] = None,
          features: Optional[Sequence[str]] = None, all_variants: bool = True, model_name: str = "normpipe",
          bad_values: str = "error", categorical: Optional[Sequence[str]] = None, vocabulary=None,
          beam_args: Sequence[str] = ()):
    """What `normpipe train` runs: transform, train, export; returns
    (metrics.json document, the export's version directory).

    `task`: "regression" or "classification" (None: inferred, see
    normpipe/components/labels.py). `model_fn`: a callable or a dotted path,
    called as model_fn(feature_names=[...], categorical={id output: number
    of ids}, num_classes=K) (K = 0 for regression; `categorical` passed when
    it takes it), returning a compiled Keras 3 model that is trained and
    exported instead of normpipe's variants. `categorical` and `vocabulary`:
    as for `transform`.
    """
    from normpipe.components.train import TrainOptions  # pylint: disable=import-outside-toplevel
    from normpipe.pipeline import train as _train  # pylint: disable=import-outside-toplevel

    source = _input(input, format, features, label, bad_values, categorical, vocabulary)
    options = TrainOptions(normalization=normalization, epochs=epochs, batch_size=batch_size, task=task,
                           model_fn=model_fn)
    config = _train.TrainConfig(input=source, output_dir=output_dir, method=method, options=options,
                                export=ExportConfig(model_name=model_name), all_variants=all_variants)
    return _train.run_train(config, beam_args)


def _input(path, format, features, label, bad_values, categorical, vocabulary) -> InputConfig:
    from normpipe.components.categories import VocabularyOptions  # pylint: disable=import-outside-toplevel

    return InputConfig(path=path, format=format, features=_tuple(features), label=label, bad_values=bad_values,
                       categorical=_tuple(categorical), vocabulary=VocabularyOptions(**(vocabulary or {})))


def _tuple(values):
    return None if values is None else tuple(values)
