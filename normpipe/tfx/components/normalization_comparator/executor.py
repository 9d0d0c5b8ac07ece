"""NormalizationComparator's executor: `normpipe stats` and `normpipe compare` on an Examples artifact."""

import logging

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from normpipe.components import report, transform
from normpipe.components.compare import CompareOptions
from normpipe.io import atomic, input_spec, paths
from normpipe.pipeline import compare, stats
from normpipe.pipeline.config import InputConfig
from normpipe.tfx.components.splits import json_value, split_files


def comparison_page(statistics: dict, comparison: dict, png_path: str) -> str:
    """comparison.html: the statistics and the comparison, the plot embedded."""
    return report.page("normpipe comparison", [report.statistics_section(statistics),
                                               report.comparison_section(comparison, png_path)])


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads the splits' tf.Examples as `normpipe stats --format tfrecord`
    does, computes statistics.json with a Beam pipeline built from
    beam_pipeline_args, then compares per-batch with the transform graph's
    normalization of the same rows and writes the comparison's files."""

    def Do(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        graph_dir = artifact_utils.get_single_uri(input_dict["transform_graph"])
        statistics_dir = artifact_utils.get_single_uri(output_dict["statistics"])
        comparison_dir = artifact_utils.get_single_uri(output_dict["comparison"])
        splits = json_value(exec_properties.get("splits"), ["train"])
        batch_sizes = json_value(exec_properties.get("batch_sizes"), list(CompareOptions().batch_sizes))
        seed = int(exec_properties.get("seed") or 0)
        method = exec_properties.get("method") or "both"
        for directory in (statistics_dir, comparison_dir):
            paths.makedirs(directory)

        metadata = transform.read_metadata(graph_dir)
        if method != "both" and method not in metadata["methods"]:
            raise ValueError(f"method {method!r}: the transform graph computes {', '.join(metadata['methods'])}. "
                             f"Received: {method!r}")
        files = split_files(examples, splits)
        spec = input_spec.inspect_tfrecord(files, list(metadata["features"]), metadata.get("label"))
        source = InputConfig(path=files[0], format="tfrecord", features=spec.features, label=spec.label)
        config = stats.StatsConfig(input=source, output_dir=statistics_dir)
        logging.info("NormalizationComparator: statistics of %d files of splits %s", len(files), splits)
        statistics = stats.run_stats(config, beam_args=self._beam_pipeline_args, spec=spec)
        document = compare.run_compare(spec, comparison_dir, method, batch_sizes, seed, transform_dir=graph_dir,
                                       stats=statistics)
        page = comparison_page(statistics, document, paths.join(comparison_dir, "comparison.png"))
        atomic.write_text_atomic(paths.join(comparison_dir, "comparison.html"), page)
