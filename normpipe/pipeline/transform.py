"""`normpipe transform`: tf.Transform output and transformed TFRecords.

Layout under <output-dir>:
  transform/              transform_fn/, transformed_metadata/ (tf.Transform),
                          normpipe_transform.json (raw inputs, outputs,
                          renamed columns)
  transformed/            part-*.tfrecord.gz of tf.train.Example (unless
                          --no-materialize)
  statistics.json         decoded from transform/'s graph: the same numbers
"""

import dataclasses
import os
import time

import apache_beam as beam
import pyarrow as pa
import tensorflow_transform.beam as tft_beam

from normpipe.components import category_counts, preprocessing, transform
from normpipe.io import atomic, column_names, ingest
from normpipe.pipeline import beam_options
from normpipe.pipeline.progress import progress
from normpipe.pipeline.stats import ReportRows, StatsConfig, inspect, read_results, statistics_document
from normpipe.serving import serving_layout


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformConfig(StatsConfig):
    """What `StatsConfig` reads, plus what to emit: the method and whether to write the transformed data."""

    method: str = "zscore"
    materialize: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.method not in preprocessing.METHODS + ("both",):
            raise ValueError(f"method must be zscore, minmax or both. Received: {self.method!r}")


def run_transform(config: TransformConfig, beam_args=()):
    """Runs analysis + transform in one Beam pipeline; returns (spec, statistics doc)."""
    spec = inspect(config)
    methods = preprocessing.METHODS if config.method == "both" else (config.method,)
    column_names.check_output_names(spec.features, spec.label, [preprocessing.SUFFIX[m] for m in methods],
                                    spec.original_name)
    options = preprocessing.TransformOptions(spec.features, config.method, spec.label, exponents=spec.exponents,
                                             categorical=spec.categorical, vocabulary=config.input.vocabulary)
    start = time.time()
    beam_opts = beam_options.make_options(beam_args)
    with beam_options.TempDir(config.output_dir, options=beam_opts) as tmp:
        transform_dir = os.path.join(tmp, "transform")
        examples_dir = os.path.join(tmp, "transformed")
        prefix = os.path.join(examples_dir, "part") if config.materialize else None
        bad_values_path = os.path.join(tmp, "bad_values.json")
        sample = ingest.first_rows(spec, serving_layout.sample_limit(len(spec.features)))
        sample = None if sample is None else ingest.to_feature_matrix(sample, spec)
        categories_path = os.path.join(tmp, "categories.json")
        with beam_options.pipeline(beam_opts) as built, built as p, tft_beam.Context(temp_dir=os.path.join(tmp, "tft")):
            batches = (
                p
                | "ReadInput" >> ingest.ReadRecordBatches(spec, bad_values_path=bad_values_path)
                | "ReportProgress" >> beam.ParDo(ReportRows("transform")).with_output_types(pa.RecordBatch)
            )
            if spec.categorical:
                _ = batches | "CountCategories" >> category_counts.CountCategories(spec, categories_path)
            _ = (
                batches
                | "ToFeatureMatrix" >> ingest.ToFeatureMatrix(spec)
                | "Transform" >> transform.AnalyzeAndTransform(
                    options, ingest.tensor_adapter_config(spec), transform_dir, prefix,
                    sample=sample, sample_path=os.path.join(transform_dir, transform.SAMPLE_FILE),
                )
            )
        transform.write_metadata(transform_dir, options, spec.numeric, spec.renamed, spec.int64_columns,
                                 string_label=spec.string_label, codes=spec.codes)
        stats, bad_counts = read_results(config, spec, transform_dir, bad_values_path, start, "transform",
                                         "analyzed and transformed")
        counted = category_counts.read_counts(categories_path)
        atomic.publish_directory(transform_dir, os.path.join(config.output_dir, "transform"))
        if config.materialize:
            atomic.publish_directory(examples_dir, os.path.join(config.output_dir, "transformed"))
    document = statistics_document(spec, stats, bad_counts, counted)
    atomic.write_json_atomic(os.path.join(config.output_dir, "statistics.json"), document)
    progress(f"wrote {config.output_dir}/transform/, statistics.json" + (", transformed/" if config.materialize else ""))
    return spec, document
