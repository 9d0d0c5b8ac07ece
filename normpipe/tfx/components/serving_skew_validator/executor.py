"""ServingSkewValidator's executor: example_skew's checks, then TFX's blessing convention."""

import itertools
import logging

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from normpipe.io import atomic, paths, tfrecord_reader
from normpipe.serving import example_skew
from normpipe.tfx.components.splits import split_files

MAX_EXAMPLES = 1000
BLESSED_KEY = "blessed"  # what Pusher reads (tfx.components.util.model_utils.is_infra_validated)
BLESSED_FILE, NOT_BLESSED_FILE = "INFRA_BLESSED", "INFRA_NOT_BLESSED"
CHECKS_FILE = "checks.txt"


def read_examples(files, limit) -> list:
    """The first `limit` serialized records of TFRecord files (gzip or not)."""
    records = (record for path in files for _, _, record in tfrecord_reader.read_tfrecord_file(path))
    return list(itertools.islice(records, limit))


def mark(blessing, blessed: bool, lines) -> None:
    """Writes checks.txt and the marker file, and sets `blessed` 1 or 0."""
    paths.makedirs(blessing.uri)
    atomic.write_text_atomic(paths.join(blessing.uri, CHECKS_FILE), "\n".join(lines) + "\n")
    with paths.open(paths.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "w") as f:
        f.write("")
    blessing.set_int_custom_property(BLESSED_KEY, 1 if blessed else 0)


class Executor(base_executor.BaseExecutor):
    """Loads the model's Format-Serving/ export as TF Serving does and checks it
    on the split's raw examples against the transform graph."""

    def Do(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict["model"])
        version_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        graph_dir = artifact_utils.get_single_uri(input_dict["transform_graph"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        split = exec_properties.get("split") or "eval"
        limit = int(exec_properties.get("max_examples") or MAX_EXAMPLES)
        serialized = read_examples(split_files(examples, [split]), limit)
        lines = []

        def report(line):
            lines.append(line)
            logging.info("ServingSkewValidator: %s", line)

        blessed = example_skew.check_export(version_dir, graph_dir, serialized, report=report,
                                            p50_ms=exec_properties.get("latency_p50_ms"),
                                            p99_ms=exec_properties.get("latency_p99_ms"))
        report(f"{'blessed' if blessed else 'NOT blessed'}: {version_dir}")
        mark(blessing, blessed, lines)
