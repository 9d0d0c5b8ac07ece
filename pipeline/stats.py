"""`normpipe stats`: full-dataset statistics to <output-dir>/statistics.json."""

import dataclasses
import os
import time
from typing import Optional, Tuple

import apache_beam as beam
import tensorflow_transform.beam as tft_beam

from components import atomic, ingest, statistics
from pipeline import beam_options
from pipeline.progress import progress


@dataclasses.dataclass(frozen=True)
class StatsConfig:
    input: str
    output_dir: str
    format: Optional[str] = None
    features: Optional[Tuple[str, ...]] = None
    label: Optional[str] = None

    def __post_init__(self):
        if self.format not in (None, "csv", "tfrecord"):
            raise ValueError(f"format must be 'csv' or 'tfrecord'. Received: {self.format!r}")


def inspect(config) -> ingest.InputSpec:
    spec = ingest.inspect_input(config.input, config.format, config.features, config.label)
    progress(
        f"input: {len(spec.files)} {spec.format} file(s); numeric features: {', '.join(spec.features)}"
        + (f"; label: {spec.label}" if spec.label else "")
        + (f"; string columns left alone: {', '.join(spec.strings)}" if spec.strings else "")
    )
    return spec


def statistics_document(spec: ingest.InputSpec, stats: dict) -> dict:
    return {
        "num_examples": stats["num_examples"],
        "features": stats["features"],
        "dtype": "float64",
        "input": {"files": list(spec.files), "format": spec.format},
        "label": spec.label,
        "string_columns": list(spec.strings),
    }


def run_stats(config: StatsConfig, beam_args=()) -> dict:
    """Runs the statistics pipeline; returns the statistics.json document."""
    spec = inspect(config)
    options = beam_options.make_options(beam_args)
    start = time.time()
    with beam_options.TempDir(config.output_dir) as tmp:
        transform_dir = os.path.join(tmp, "transform")
        with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=os.path.join(tmp, "tft")):
            _ = (
                p
                | "ReadInput" >> ingest.ReadRecordBatches(spec)
                | "ComputeStatistics" >> statistics.AnalyzeStatistics(
                    spec.features, ingest.tensor_adapter_config(spec), transform_dir, spec.centers
                )
            )
        stats = statistics.read_statistics(transform_dir, spec.features, spec.numeric)
    if stats["num_examples"] == 0:
        from components.errors import UserError  # pylint: disable=import-outside-toplevel

        raise UserError(f"{config.input}: no data rows")
    progress(f"statistics: {stats['num_examples']:,} rows analyzed in {time.time() - start:.1f}s")
    document = statistics_document(spec, stats)
    path = os.path.join(config.output_dir, "statistics.json")
    atomic.write_json_atomic(path, document)
    progress(f"wrote {path}")
    return document


def format_table(document: dict) -> str:
    """A fixed-width summary table of statistics.json."""
    head = f"{'feature':<24} {'count':>8} {'missing':>8} {'mean':>14} {'std':>12} {'min':>14} {'max':>14}"
    lines = [head, "-" * len(head)]

    def num(v, width):
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.6g}"

    for name, s in document["features"].items():
        lines.append(
            f"{name[:24]:<24} {s['count']:>8} {s['missing']:>8} {num(s['mean'], 14)} "
            f"{num(s['std'], 12)} {num(s['min'], 14)} {num(s['max'], 14)}"
        )
    return "\n".join(lines)
