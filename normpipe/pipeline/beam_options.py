"""Beam options: every flag normpipe does not own goes to PipelineOptions.

Beam's own parser drops a flag it does not know with a log line and runs on;
`check_beam_args` refuses it instead, so a misspelt flag never reaches Beam.
"""

import contextlib
import io
import os
import shlex
import signal
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, PortableOptions, StandardOptions

from normpipe.core.errors import UserError
from normpipe.io import paths

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
        # --default_sdk_harness_log_level=INFO to see worker logs. A Java job
        # server (Flink, Spark, Dataflow) parses the level with Java's names,
        # which lack CRITICAL: remote workers get ERROR, whose logs stay in
        # the cluster's.
        given = PipelineOptions(beam_args)
        local = not given.view_as(StandardOptions).runner or is_local_runner(given)
        beam_args.append(f"--default_sdk_harness_log_level={'CRITICAL' if local else 'ERROR'}")
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing" and not direct.direct_num_workers:
        direct.direct_num_workers = os.cpu_count() or 1
    return options


def runner_for(options: PipelineOptions):
    """The runner for `options`: None (Beam's choice from --runner) except for
    local worker processes.

    With --direct_running_mode=multi_processing on the local runner, the
    FnApiRunner runs `direct_num_workers` SDK workers as subprocesses, each
    `python -m apache_beam.runners.worker.sdk_worker_main`, exactly as Beam's
    own multi_processing mode does. The one difference is the worker's
    stderr: Beam's harness prints a failed bundle's traceback there besides
    sending the failure to the runner, which raises it here, where it becomes
    one error line. With the worker log level at CRITICAL (normpipe's
    default) the workers' stderr is discarded; any other
    --default_sdk_harness_log_level keeps it.

    Beam's public interfaces only: FnApiRunner(default_environment=...), a
    SubprocessSDKEnvironment (whose command Beam runs through the shell),
    and direct_num_workers, which FnApiRunner honours in every running mode.
    tests/pipeline/test_beam_options.py fails if any of that changes.
    """
    direct = options.view_as(DirectOptions)
    if not is_local_runner(options) or direct.direct_running_mode != "multi_processing":
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=import-outside-toplevel
    from apache_beam.transforms import environments  # pylint: disable=import-outside-toplevel

    command = worker_command(options)
    # "multi_processing" would make FnApiRunner replace the environment with
    # its own command; the worker count applies in any mode.
    direct.direct_running_mode = "in_memory"
    return FnApiRunner(default_environment=environments.SubprocessSDKEnvironment.from_command_string(command))


def worker_command(options: PipelineOptions) -> str:
    """The shell command of one local SDK worker (see runner_for)."""
    command = f"{shlex.quote(sys.executable)} -m apache_beam.runners.worker.sdk_worker_main"
    if options.get_all_options()["default_sdk_harness_log_level"] == "CRITICAL":
        command += " 2>/dev/null"
    return command


def _beam_parser():
    """Beam's own argument parser with every registered PipelineOptions flag.

    `get_all_options(add_extra_args_fn=...)` hands the callback the parser it
    has filled with the flags of every PipelineOptions subclass (standard,
    portable, Dataflow, Flink, Spark, ...); this keeps a reference to it.
    """
    captured = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    if len(captured) != 1 or not hasattr(captured[0], "parse_known_args"):
        raise RuntimeError("apache_beam PipelineOptions.get_all_options no longer passes its parser to add_extra_args_fn")
    return captured[0]


def check_beam_args(beam_args, command: str = "normpipe") -> list:
    """The flags normpipe passes to Beam, or a UserError naming one it cannot use.

    A `--` separating normpipe's flags from Beam's is dropped (the flags after
    it are Beam's). Anything else Beam's parser does not take (an unknown or
    misspelt flag, a stray word, a bad value) is refused.
    """
    args = list(beam_args or [])
    if "--" in args:
        args.remove("--")
    parser = _beam_parser()
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            _, unknown = parser.parse_known_args(args)
    except SystemExit:
        lines = [line for line in messages.getvalue().splitlines() if line.strip()]
        detail = lines[-1].split("error: ", 1)[-1] if lines else "cannot parse"
        raise UserError(f"Beam flag: {detail}") from None
    if unknown:
        shown = " ".join(unknown)
        raise UserError(
            f"unknown flag(s) for `{command}`: {shown} (neither a normpipe flag nor a Beam pipeline option; "
            "see `normpipe " + command + " --help`)"
        )
    return args


# The runners that submit to --job_endpoint (PortableRunner and its subclasses).
PORTABLE_RUNNERS = ("PortableRunner", "FlinkRunner", "SparkRunner", "PrismRunner")
# How long a job endpoint gets to accept a connection when --job_server_timeout
# is not given: Beam's default (300 s) makes one that never answers look like a hang.
ENDPOINT_WAIT_S = 20


def endpoint_wait(beam_args) -> float:
    """Seconds a job endpoint or cluster master gets to answer: --job_server_timeout if given, else ENDPOINT_WAIT_S."""
    given = any(a.split("=", 1)[0] in ("--job_server_timeout", "--job-server-timeout") for a in beam_args)
    return make_options(beam_args).view_as(PortableOptions).job_server_timeout if given else ENDPOINT_WAIT_S


def check_job_endpoint(beam_args) -> None:
    """Refuses, in one line, a --job_endpoint that accepts no gRPC connection.

    The wait is --job_server_timeout when given, else ENDPOINT_WAIT_S. Runs
    before any work; a runner that ignores --job_endpoint, and `embed` (an
    in-process job server), are not probed.
    """
    options = make_options(beam_args)
    runner = options.view_as(StandardOptions).runner
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1]
    endpoint = options.view_as(PortableOptions).job_endpoint
    if name not in PORTABLE_RUNNERS or not endpoint or endpoint == "embed":
        return
    wait = endpoint_wait(beam_args)
    import grpc  # pylint: disable=import-outside-toplevel

    channel = grpc.insecure_channel(endpoint)
    try:
        grpc.channel_ready_future(channel).result(timeout=wait)
    except grpc.FutureTimeoutError:
        raise UserError(f"no Beam job server answered at --job_endpoint={endpoint} within {wait:g} s "
                        "(check the address and that the job server is running; --job_server_timeout "
                        "sets the wait)") from None
    finally:
        channel.close()


def is_local_runner(options: PipelineOptions) -> bool:
    """Whether the pipeline runs in this process's runner (workers on this machine)."""
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name in ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner",
                    "PrismRunner", LOCAL_RUNNER)


class TempDir:
    """A scratch directory for one pipeline, removed on exit.

    tf.Transform writes its intermediate SavedModels and its outputs here;
    they are then published into the output directory
    (atomic.publish_directory). Where it is:

    - a local output directory: under it, so that workers on other machines
      sharing that storage reach it, and publishing is a rename;
    - a URI output and workers on this machine (`options` name a local
      runner): local scratch, published by copy. tf.Transform publishes its
      own output by renaming directories, which TensorFlow's object-store
      filesystems carry out object by object and its `ram://` not at all;
    - a URI output and remote workers (or no `options`): under the output
      URI, where the workers reach it.
    """

    def __init__(self, output_dir: str, prefix: str = ".tmp-", options: PipelineOptions = None):
        if paths.is_local(output_dir) or options is None or not is_local_runner(options):
            self.path = paths.make_temp_dir(output_dir, prefix)
        else:
            self.path = paths.local_temp_dir("normpipe-", output_dir)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        paths.rmtree(self.path)
        return False


@contextlib.contextmanager
def pipeline(options: PipelineOptions):
    """A beam.Pipeline whose local temp dir is removed however it ends.

    Beam's Pipeline makes that directory (`local_tempdir`, in the system's
    temp dir) when it is built and removes it at the end of `run()`; a
    pipeline left before it runs, by an error or a signal while its graph is
    built (tf.Transform traces the preprocessing_fn there), would leave it
    behind (tests/pipeline/test_faults.py).
    """
    # SIGINT and SIGTERM are held while the Pipeline is built: it makes the
    # directory inside its constructor, before `p` exists to be cleaned up; a
    # signal held there is delivered when the mask is restored, inside `try`.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        p = beam.Pipeline(runner=runner_for(options), options=options)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        yield p
    finally:
        paths.rmtree(p.local_tempdir)
