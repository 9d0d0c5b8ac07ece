"""Local worker processes: Beam's FnApiRunner with Beam's own SDK worker
subprocesses, through public interfaces only. These tests fail if a Beam
upgrade changes what normpipe relies on: FnApiRunner(default_environment=...)
running every stage in that environment, direct_num_workers honoured in
in_memory mode, and a SubprocessSDKEnvironment command run through a shell."""

import glob
import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from normpipe.pipeline import beam_options

MP = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.mark.parametrize(
    "flags",
    [[], ["--direct_running_mode=multi_threading", "--direct_num_workers=2"], ["--direct_num_workers=2"],
     MP + ["--runner=PortableRunner", "--job_endpoint=localhost:1"]],
)
def test_beam_chooses_the_runner_without_multi_processing(flags):
    assert beam_options.runner_for(beam_options.make_options(flags)) is None


@pytest.mark.parametrize("level, quiet", [(None, True), ("INFO", False)])
def test_multi_processing_runner_runs_beams_worker_main(level, quiet):
    flags = MP + ([f"--default_sdk_harness_log_level={level}"] if level else [])
    options = beam_options.make_options(flags)
    runner = beam_options.runner_for(options)
    assert isinstance(runner, FnApiRunner)
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    command = beam_options.worker_command(options)
    assert "-m apache_beam.runners.worker.sdk_worker_main" in command
    assert command.endswith("2>/dev/null") is quiet


def _tagged(x):
    return json.dumps([x, x * x, os.getpid()])


@pytest.mark.slow
def test_multi_processing_runs_elements_in_two_worker_subprocesses(tmp_path):
    out = str(tmp_path / "out")
    options = beam_options.make_options(MP)
    runner = beam_options.runner_for(options)
    with beam.Pipeline(runner=runner, options=options) as p:
        _ = p | beam.Create(list(range(400))) | beam.Reshuffle() | beam.Map(_tagged) | beam.io.WriteToText(out)
    rows = [json.loads(line) for path in glob.glob(out + "*") for line in open(path)]
    assert sorted((x, sq) for x, sq, _ in rows) == [(x, x * x) for x in range(400)]
    pids = {pid for *_, pid in rows}
    assert len(pids) == 2 and os.getpid() not in pids
