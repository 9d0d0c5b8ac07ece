"""`normpipe stats`: full-dataset statistics to <output-dir>/statistics.json.

The statistics are computed in numpy inside the Beam pipeline
(`components.moments`): TensorFlow and tf.Transform are not imported, which
keeps the command's start-up short. `normpipe transform` computes the same
figures inside its tf.Transform graph (`components.statistics`).

The last progress lines say where the time went: parse (pyarrow's CSV
parsing and float conversion), convert (checks and canonical batches),
analyze (the per-batch moments), summed over all workers from Beam's
counters, and the pipeline's own wall time, besides writing.
"""

import dataclasses
import os
import time

import apache_beam as beam
import pyarrow as pa

from normpipe.components import category_counts, moments
from normpipe.core.errors import UserError
from normpipe.io import atomic, ingest
from normpipe.pipeline import beam_options
from normpipe.pipeline.config import InputConfig
from normpipe.pipeline.progress import RowRate, progress, rows_per_s


class ReportRows(beam.DoFn):
    """Passes record batches through, printing rows read and rows/s every ~10 s."""

    def __init__(self, what: str):
        super().__init__()
        self._what = what
        self._rate = None

    def setup(self):
        self._rate = RowRate(self._what, where=" (this process)")

    def process(self, batch):
        self._rate.add(batch.num_rows)
        yield batch


@dataclasses.dataclass(frozen=True, kw_only=True)
class StatsConfig:
    """What to read, and the directory statistics.json goes to."""

    input: InputConfig
    output_dir: str

    def __post_init__(self):
        if not isinstance(self.input, InputConfig):
            raise ValueError(f"input must be an InputConfig. Received: {self.input!r}")


def inspect(config: StatsConfig) -> ingest.InputSpec:
    """Types the input a stage config (a StatsConfig or a subclass) names."""
    source = config.input
    spec = ingest.inspect_input(source.path, source.format, source.features, source.label, source.bad_values,
                                source.categorical)
    progress(
        f"input: {len(spec.files)} {spec.format} file(s); numeric features: {_names(spec.features)}"
        + (f"; categorical: {_names(spec.categorical)}" if spec.categorical else "")
        + (f"; label: {spec.label}" if spec.label else "")
        + (f"; string columns left alone: {_names(spec.strings)}" if spec.strings else "")
    )
    if spec.renamed:
        pairs = ", ".join(f"{old!r} -> {new}" for old, new in spec.renamed.items())
        progress(f"columns renamed to valid TensorFlow names: {pairs}")
    for name in spec.mostly_numeric:
        progress(
            f"column {spec.original_name(name)!r} holds mostly numbers but also text in its first rows, so it is "
            "left alone as a string column (--features forces it numeric; --bad-values=missing reads the text as missing)"
        )
    return spec


def _names(names, limit=20) -> str:
    """A progress line's list of columns; wide data is abbreviated."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])}, ... ({len(names):,} in all)"


def statistics_document(spec: ingest.InputSpec, stats: dict, bad_counts=None, categories=None) -> dict:
    """statistics.json: the statistics plus what was read and how.

    Each feature gets `bad_values`, how many of its `missing` values were bad
    values read as missing (always 0 with --bad-values=error). `categories`:
    each categorical column's count, missing, distinct count and most
    frequent values with their counts (components/category_counts.py).
    """
    bad_counts = bad_counts or {}
    features = {name: {**entry, "bad_values": int(bad_counts.get(name, 0))} for name, entry in stats["features"].items()}
    document = {
        "num_examples": stats["num_examples"],
        "features": features,
        "dtype": "float64",
        "input": {"files": list(spec.files), "format": spec.format},
        "label": spec.label,
        "string_columns": list(spec.strings),
        "categorical": {name: (categories or {}).get(name) for name in spec.categorical},
        "renamed": spec.renamed,
        "bad_values_policy": spec.bad_values,
    }
    if spec.label:
        document["label_bad_values"] = int(bad_counts.get(spec.label, 0))
    return document


def report_bad_values(spec: ingest.InputSpec, bad_counts: dict) -> None:
    """One progress line with the bad values read as missing, per column."""
    if bad_counts:
        listed = ", ".join(f"{spec.original_name(n)} {c:,}" for n, c in sorted(bad_counts.items()))
        progress(f"bad values read as missing: {listed}")


def read_transform_statistics(transform_dir: str) -> dict:
    """The statistics inside a tf.Transform output (imports TensorFlow)."""
    from normpipe.components import statistics  # pylint: disable=import-outside-toplevel

    return statistics.read_statistics(transform_dir)


def read_results(config: StatsConfig, spec, transform_dir: str, bad_values_path: str, start: float, stage: str,
                 done: str, read=read_transform_statistics):
    """(statistics, bad-value counts) of a finished statistics or transform
    pipeline; one progress line "<stage>: N rows <done> in Ns (rows/s)" and
    one with the bad values read as missing. Raises UserError when the input
    held no row. `read` reads the statistics from `transform_dir`."""
    stats = read(transform_dir)
    bad_counts = ingest.read_bad_value_counts(bad_values_path)
    if stats["num_examples"] == 0:
        raise UserError(f"{config.input.path}: no data rows")
    seconds = time.time() - start
    rows = stats["num_examples"]
    progress(f"{stage}: {rows:,} rows {done} in {seconds:.1f}s ({rows_per_s(rows, seconds)})")
    report_bad_values(spec, bad_counts)
    return stats, bad_counts


def run_stats(config: StatsConfig, beam_args=(), spec=None) -> dict:
    """Runs the statistics pipeline; returns the statistics.json document.

    `spec`: the typed input, when the caller has inspected it already."""
    spec = spec or inspect(config)
    options = beam_options.make_options(beam_args)
    start = time.time()
    with beam_options.TempDir(config.output_dir, options=options) as tmp:
        matrix_path = os.path.join(tmp, "statistics_matrix.json")
        bad_values_path = os.path.join(tmp, "bad_values.json")
        # With --bad-values=error a bad value stops the run, so there is no
        # count to sum: the pipeline is then built without that branch (a
        # CombineGlobally costs start-up time on a small input).
        counts_path = bad_values_path if spec.bad_values == "missing" else None
        categories_path = os.path.join(tmp, "categories.json")
        with beam_options.pipeline(options) as p:
            batches = (
                p
                | "ReadInput" >> ingest.ReadRecordBatches(spec, bad_values_path=counts_path)
                | "ReportProgress" >> beam.ParDo(ReportRows("statistics")).with_output_types(pa.RecordBatch)
            )
            _ = batches | "ComputeStatistics" >> moments.ComputeMoments(spec.features, matrix_path)
            if spec.categorical:
                _ = batches | "CountCategories" >> category_counts.CountCategories(spec, categories_path)
            result = p.run()
            result.wait_until_finish()
        pipeline_s = time.time() - start

        def read(path):
            return moments.summarize(moments.read_matrix(path), spec.features)

        stats, bad_counts = read_results(config, spec, matrix_path, bad_values_path, start, "statistics", "analyzed",
                                         read=read)
        counted = category_counts.read_counts(categories_path)
    written = time.time()
    document = statistics_document(spec, stats, bad_counts, counted)
    path = os.path.join(config.output_dir, "statistics.json")
    atomic.write_json_atomic(path, document)
    progress(f"wrote {path}")
    progress(stage_times_line(counter_seconds(result), pipeline_s, time.time() - written))
    return document


def counter_seconds(result) -> dict:
    """{parse, convert, analyze: seconds} from the pipeline's normpipe/*_us
    counters, summed over steps and workers ({} where the runner reports none)."""
    from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=import-outside-toplevel

    try:
        counters = result.metrics().query(MetricsFilter().with_namespace("normpipe"))["counters"]
    except (NotImplementedError, AttributeError, KeyError):
        return {}
    seconds = {}
    for counter in counters:
        name = counter.key.metric.name
        if name.endswith("_us"):
            value = counter.committed if counter.committed is not None else counter.attempted
            seconds[name[:-3]] = seconds.get(name[:-3], 0.0) + (value or 0) / 1e6
    return seconds


def stage_times_line(seconds: dict, pipeline_s: float, write_s: float) -> str:
    """"time: parse 1.2s, convert 0.3s, analyze 0.4s (worker seconds); pipeline 2.5s, write 0.0s"."""
    parts = [f"{name} {seconds[name]:.2f}s" for name in ("parse", "convert", "analyze") if name in seconds]
    inside = f"{', '.join(parts)} (summed over workers); " if parts else ""
    return f"time: {inside}pipeline {pipeline_s:.2f}s wall, write {write_s:.2f}s"


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
    categories = {name: c for name, c in (document.get("categorical") or {}).items() if c}
    if categories:
        head = f"{'categorical':<24} {'count':>8} {'missing':>8} {'distinct':>9}  most frequent"
        lines += ["", head, "-" * len(head)]
        for name, c in categories.items():
            top = ", ".join(f"{value!r} {count}" for value, count in c["top"][:3])
            lines.append(f"{name[:24]:<24} {c['count']:>8} {c['missing']:>8} {c['distinct']:>9}  {top}")
    return "\n".join(lines)
