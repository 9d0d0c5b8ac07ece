"""Beam options: every flag normpipe does not own goes to PipelineOptions."""

import os
import shutil
import tempfile

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions


# The engine DirectRunner picks for a batch pipeline like normpipe's. Naming
# it directly skips Beam's default runner's attempt to start Prism (which
# downloads a binary) and DirectRunner's own compatibility pass: ~0.5 s each.
LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.fn_runner.FnApiRunner"


def make_options(beam_args) -> PipelineOptions:
    """PipelineOptions from the pass-through flags; DirectRunner's engine by default.

    `--runner` (DirectRunner, PortableRunner, FlinkRunner, DataflowRunner, ...)
    and `--direct_running_mode`/`--direct_num_workers` pass straight through.
    """
    beam_args = list(beam_args or [])
    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        # Worker processes would log a user error (bad value in the data) with
        # a traceback; normpipe reports it once, on one line. Pass
        # --default_sdk_harness_log_level=INFO to see worker logs.
        beam_args.append("--default_sdk_harness_log_level=CRITICAL")
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing" and not direct.direct_num_workers:
        direct.direct_num_workers = os.cpu_count() or 1
    return options


class TempDir:
    """A scratch directory under the output directory, removed on exit.

    tf.Transform writes its intermediate SavedModels here; it sits under the
    output directory so that remote workers can reach it when the output is
    on shared storage.
    """

    def __init__(self, output_dir: str, prefix: str = ".tmp-"):
        os.makedirs(output_dir, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=prefix, dir=output_dir)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False
