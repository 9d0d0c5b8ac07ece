"""normpipe command line: `normpipe <command> [flags] [beam flags]`.

normpipe's own flags build a stage config; every other flag goes to Beam's
PipelineOptions (`--runner`, `--direct_num_workers`, `--job_endpoint`, ...).
"""

import gc
import logging
import os
import sys

# Before anything imports gRPC (Beam does): its fork support off. With it
# on, every fork() of a process where gRPC's event engine runs (subprocess
# with a preexec_fn, multiprocessing, a user's model_fn) restarts gRPC's
# poller in the child on descriptors Python has closed, and the child
# aborts (SIGABRT) before it can exec: grpc/grpc#43055. Under load, 305
# of 1,000 such forks aborted without this (tests/test_fork_stress.py's
# stress), none with it. normpipe needs gRPC in no forked child (its subprocesses
# exec at once), as Beam's own tests, which set the same, do not.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from normpipe.pipeline import demo  # imports neither TensorFlow nor Beam
from normpipe.pipeline.commands import run_command
from normpipe.pipeline.flags import build_parser, check_args


def _produced(args):
    """The outputs this invocation writes (see pipeline/outputs.py)."""
    from normpipe.pipeline.outputs import OUTPUTS  # pylint: disable=import-outside-toplevel

    produced = set(OUTPUTS.get(args.command, ()))
    if not getattr(args, "materialize", True):
        produced.discard("transformed")
    if args.command == "run" and not args.label:
        produced.discard("model")
    return produced


def _run(args, beam_args, argv=()) -> int:
    from normpipe.pipeline import outputs  # pylint: disable=import-outside-toplevel

    if getattr(args, "output_dir", None):
        outputs.check_writable(args.output_dir)
    if args.command not in outputs.OUTPUTS:
        return run_command(args, beam_args, argv)
    lock = outputs.RunLock(args.output_dir, args.command).acquire()
    code, started = 1, False
    try:
        unfinished = lock.unfinished
        outputs.check_output_dir(args.command, args.output_dir, args.overwrite or unfinished)
        started = True
        code = run_command(args, beam_args, argv)
        if code == 0:
            outputs.remove_stale(args.command, args.output_dir, _produced(args))
    finally:
        lock.release(code == 0, started)
    return code


PIPELINE_COMMANDS = ("stats", "transform", "compare", "train", "run")


def _absolute_paths(args) -> None:
    """Local paths made absolute, so that workers in another directory (or on
    another machine sharing the storage) read and write the same files; a
    URI (`gs://...`) is kept as it is."""
    from normpipe.io import paths  # pylint: disable=import-outside-toplevel

    for name in ("input", "output_dir", "model_dir", "transform_dir"):
        value = getattr(args, name, None)
        if value:
            setattr(args, name, paths.absolute(value))


def _checked_beam_args(command: str, beam_args) -> list:
    """A pipeline command's Beam flags, checked (beam_options.check_beam_args); other commands take none."""
    if command in PIPELINE_COMMANDS:
        from apache_beam.options.pipeline_options import StandardOptions  # pylint: disable=import-outside-toplevel

        from normpipe.pipeline import (
            beam_options,  # pylint: disable=import-outside-toplevel
            runner_checks,  # pylint: disable=import-outside-toplevel
        )

        checked = beam_options.check_beam_args(beam_args, command)
        options = beam_options.make_options(checked)
        runner_checks.check_runner(options.view_as(StandardOptions).runner)
        runner_checks.check_job_server_jar(options)
        runner_checks.check_cluster_master(options, beam_options.endpoint_wait(checked))
        beam_options.check_job_endpoint(checked)
        return checked
    if beam_args:
        from normpipe.core.errors import UserError  # pylint: disable=import-outside-toplevel

        raise UserError(f"unrecognized arguments for `{command}`: {' '.join(beam_args)}")
    return []


def _run_staged(args, beam_args, argv) -> int:
    """`_run`, with normpipe's wheel staged for remote workers when needed (see staging.py)."""
    if args.command not in PIPELINE_COMMANDS:
        return _run(args, beam_args, argv)
    from normpipe.pipeline import staging  # pylint: disable=import-outside-toplevel

    with staging.staged(beam_args) as staged_args:
        return _run(args, staged_args, argv)


def _storage_message(args, exc):
    """A full or read-only disk or an I/O error, reported on one line
    (outputs are written atomically, so nothing partial is left under a
    final name)."""
    from normpipe.pipeline.outputs import storage_error  # pylint: disable=import-outside-toplevel

    reason = storage_error(exc)
    if reason is None:
        return None
    where = getattr(args, "output_dir", None) or getattr(args, "model_dir", None)
    return f"cannot write the outputs{f' in {where}' if where else ''}: {reason}"


# TF Serving's version numbers are int64.
def main(argv=None) -> int:
    """`normpipe <command> ...`: exit status 0 (done), 1 (verify failed, or the storage failed: full,
    read-only or an I/O error, one line), 2 (a user error, one line), or on a closed pipe, SIGINT or
    SIGTERM 141, 130, 143 (see pipeline/exits.py)."""
    from normpipe.pipeline import exits  # pylint: disable=import-outside-toplevel

    with exits.guarded():
        try:
            code = _main(argv)
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (exits.Terminated)
            return exits.interrupted(exc)
        except Exception as exc:  # pylint: disable=broad-except
            if exits.closed_pipe(exc) or "BrokenPipeError" in str(exc):
                return exits.SIGPIPE_STATUS
            raise
        return exits.SIGPIPE_STATUS if code == 0 and exits.closed_pipe() else code


def _main(argv) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    _quiet_logs()
    from normpipe.core.errors import find_user_error  # pylint: disable=import-outside-toplevel

    try:
        if args.command == "demo":
            args, beam_args, argv = demo.as_run(parser, args, beam_args)
        check_args(args)
        beam_args = _checked_beam_args(args.command, beam_args)
        _absolute_paths(args)
        code = _run_staged(args, beam_args, argv)
        # TF and Beam leave millions of objects; the interpreter's final
        # collection over them costs ~1 s at exit and frees nothing useful.
        gc.freeze()
        return code
    except Exception as exc:  # pylint: disable=broad-except
        message = (find_user_error(exc) or _worker_import_error(exc) or _job_server_error(exc, beam_args)
                   or _job_failure(exc, beam_args))
        status = 2
        if message is None:
            message, status = _storage_message(args, exc), 1  # the machine's fault, not the input's
        if message is None:
            raise
        print(f"normpipe: error: {message}", file=sys.stderr)
        return status


def _quiet_logs():
    logging.getLogger().setLevel(logging.WARNING)
    # A user error raised in a DoFn is reported once, on one line, by main();
    # Beam would also log it with a worker traceback.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    logging.getLogger("apache_beam.runners.worker").setLevel(logging.CRITICAL)
    logging.getLogger("apache_beam.runners.portability").setLevel(logging.CRITICAL)
    # "Really starting service ... with cmd" for a job server jar (Flink, Spark) is a WARNING.
    logging.getLogger("apache_beam.utils.subprocess_server").setLevel(logging.ERROR)
    # The portable runner logs a failed job's messages on the root logger,
    # worker tracebacks included; the same text is in the error it raises.
    logging.getLogger().addFilter(_drop_job_error_messages)


def _drop_job_error_messages(record) -> bool:
    return not (record.module == "portable_runner" and record.levelno >= logging.ERROR)


def _job_server_error(exc: BaseException, beam_args):
    """One line for a job endpoint that does not answer, or None."""
    if type(exc).__name__ != "FutureTimeoutError":
        return None
    from apache_beam.options.pipeline_options import PortableOptions  # pylint: disable=import-outside-toplevel

    from normpipe.pipeline import beam_options  # pylint: disable=import-outside-toplevel

    endpoint = beam_options.make_options(beam_args).view_as(PortableOptions).job_endpoint
    return f"no Beam job server answered at --job_endpoint={endpoint}" if endpoint else None


def _job_failure(exc: BaseException, beam_args):
    """One line for a job a cluster failed or cancelled (runner_checks.job_failure), or None."""
    from normpipe.pipeline import beam_options, runner_checks  # pylint: disable=import-outside-toplevel

    try:
        options = beam_options.make_options(beam_args)
    except Exception:  # pylint: disable=broad-except
        return None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        message = runner_checks.job_failure(exc, options)
        if message:
            return message
        exc = exc.__cause__ or exc.__context__
    return None


def _worker_import_error(exc: BaseException):
    """One line for a Beam worker that cannot import normpipe, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "No module named 'normpipe" in str(exc):
            return ("a Beam worker cannot import normpipe (No module named 'normpipe'): install normpipe in the "
                    "workers' environment, or let normpipe stage itself (see README, Runners)")
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
