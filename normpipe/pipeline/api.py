"""Whole stages as Python functions: what `normpipe stats` and `normpipe
transform` run, without the command line."""

from typing import Optional, Sequence

from normpipe.pipeline import stats as _stats
from normpipe.pipeline import transform as _transform
from normpipe.pipeline.config import InputConfig


def compute_statistics(input: str, output_dir: str, *, format: Optional[str] = None,  # noqa: A002
                       features: Optional[Sequence[str]] = None, label: Optional[str] = None,
                       bad_values: str = "error", beam_args: Sequence[str] = ()) -> dict:
    """Full-dataset statistics of `input`; writes and returns statistics.json.

    `input` is a CSV or TFRecord file, directory or glob; `beam_args` are Beam
    pipeline flags (`--runner=...`). Returns {"num_examples": N, "features":
    {name: {count, missing, mean, var, std, min, max, bad_values}}, ...}:
    float64, population variance (ddof=0), min/max/mean over present values.
    Raises normpipe.core.errors.UserError on bad input.
    """
    source = InputConfig(path=input, format=format, features=_tuple(features), label=label, bad_values=bad_values)
    config = _stats.StatsConfig(input=source, output_dir=output_dir)
    return _stats.run_stats(config, beam_args)


def transform(input: str, output_dir: str, *, method: str = "zscore", format: Optional[str] = None,  # noqa: A002
              features: Optional[Sequence[str]] = None, label: Optional[str] = None, bad_values: str = "error",
              materialize: bool = True, beam_args: Sequence[str] = ()) -> dict:
    """Analyze and transform `input`; returns the statistics.json document.

    Writes `output_dir/transform/` (the tf.Transform output: transform_fn/,
    transformed_metadata/, metadata/), `output_dir/transformed/` (gzip
    TFRecords of the normalized tf.train.Examples, unless materialize=False)
    and `output_dir/statistics.json`.
    """
    source = InputConfig(path=input, format=format, features=_tuple(features), label=label, bad_values=bad_values)
    config = _transform.TransformConfig(input=source, output_dir=output_dir, method=method, materialize=materialize)
    _, document = _transform.run_transform(config, beam_args)
    return document


def _tuple(values):
    return None if values is None else tuple(values)
