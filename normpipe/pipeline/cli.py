"""normpipe command line: `normpipe <command> [flags] [beam flags]`.

normpipe's own flags build a stage config; every other flag goes to Beam's
PipelineOptions (`--runner`, `--direct_num_workers`, `--job_endpoint`, ...).
"""

import argparse
import contextlib
import gc
import logging
import os
import sys

from normpipe.pipeline import demo, versions  # neither imports TensorFlow or Beam

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _split_list(text):
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list. Received: {text!r}")
    return items


def _add_input_flags(parser):
    parser.add_argument("--input", required=True, help="CSV, TFRecord or Parquet file, directory or glob")
    parser.add_argument("--output-dir", required=True, help="directory for the outputs")
    parser.add_argument("--format", choices=("csv", "tfrecord", "parquet"),
                        help="input format (default: by file name)")
    parser.add_argument("--features", type=_split_list, help="comma-separated numeric columns (default: inferred)")
    parser.add_argument("--label", help="label column, excluded from normalization")
    parser.add_argument(
        "--bad-values", choices=("error", "missing"), default="error",
        help="a non-numeric or infinite value in a numeric column: error (default) or missing (counted)",
    )


def _add_model_flags(parser):
    parser.add_argument("--task", choices=("regression", "classification"),
                        help="what the label is (default: inferred: strings, 0/1 or a few non-negative integers "
                             "are classes, other numbers regression)")
    parser.add_argument("--model-fn", help="package.module.function returning a compiled Keras 3 model, called as "
                        "model_fn(feature_names=[...], num_classes=K); the variants are then not trained")


def _add_overwrite_flag(parser):
    parser.add_argument(
        "--overwrite", action=argparse.BooleanOptionalAction, default=False,
        help="replace the outputs of an earlier run in --output-dir (export versions are always kept)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normpipe", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=versions.VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="full-dataset statistics to statistics.json")
    _add_input_flags(stats)
    _add_overwrite_flag(stats)
    tfm = commands.add_parser("transform", help="tf.Transform graph + transformed TFRecords")
    _add_input_flags(tfm)
    _add_overwrite_flag(tfm)
    _add_transform_flags(tfm)
    compare = commands.add_parser("compare", help="per-batch vs full-dataset normalization")
    _add_input_flags(compare)
    _add_overwrite_flag(compare)
    _add_transform_flags(compare)
    compare.add_argument("--batch-sizes", type=_split_ints, default=(1, 2, 8, 32, 128, 1024, 8192))
    compare.add_argument("--seed", type=int, default=0, help="seed of the shuffled order")
    trn = commands.add_parser("train", help="train a small model, export it for TF Serving")
    _add_input_flags(trn)
    _add_overwrite_flag(trn)
    trn.add_argument("--method", choices=("zscore", "minmax", "both"), default="zscore")
    trn.add_argument("--normalization", choices=("tft", "constant", "learned", "batch"), default="tft")
    trn.add_argument("--allow-batch-statistics", action=argparse.BooleanOptionalAction, default=False)
    trn.add_argument("--all-variants", action=argparse.BooleanOptionalAction, default=True,
                     help="also train the other variants to report their metrics (default: yes)")
    _add_model_flags(trn)
    trn.add_argument("--epochs", type=int, default=5)
    trn.add_argument("--batch-size", type=int, help="training batch size (default: from the row count, 64 to 4096)")
    _add_comparison_rows_flag(trn)
    _add_serving_inputs_flag(trn)
    trn.add_argument("--model-name", default="normpipe")
    trn.add_argument("--model-version", type=int)
    trn.add_argument("--serving-base-path", help="write models.config for a server that sees the serving "
                     "directory at this path (e.g. /models); default: its absolute local path")
    ver = commands.add_parser("verify", help="load an export as TF Serving does and check for skew")
    ver.add_argument("--model-dir", required=True, help="a version directory, or a model directory (newest version)")
    run = commands.add_parser("run", help="statistics -> transform -> compare -> train -> export -> verify")
    _add_input_flags(run)
    _add_overwrite_flag(run)
    run.add_argument("--method", choices=("zscore", "minmax", "both"), default="zscore")
    run.add_argument("--normalization", choices=("tft", "constant", "learned"), default="tft")
    run.add_argument("--model-name", default="normpipe")
    run.add_argument("--model-version", type=int)
    run.add_argument("--serving-base-path", help="write models.config for a server that sees the serving "
                     "directory at this path (e.g. /models); default: its absolute local path")
    run.add_argument("--batch-sizes", type=_split_ints, default=(1, 2, 8, 32, 128, 1024, 8192))
    run.add_argument("--seed", type=int, default=0)
    _add_model_flags(run)
    run.add_argument("--epochs", type=int, default=5)
    run.add_argument("--batch-size", type=int, help="training batch size (default: from the row count, 64 to 4096)")
    _add_comparison_rows_flag(run)
    _add_serving_inputs_flag(run)
    run.add_argument("--all-variants", action=argparse.BooleanOptionalAction, default=True,
                     help="train every normalization variant to report its metrics (default: yes)")
    run.add_argument("--materialize", action=argparse.BooleanOptionalAction, default=False,
                     help="also write the transformed data as gzip TFRecords; no later stage reads them (default: no)")
    demo.add_parser(commands)
    prd = commands.add_parser("predict", help="send CSV rows to a TF Serving REST endpoint")
    prd.add_argument("--server", required=True, help="e.g. http://localhost:8501")
    prd.add_argument("--model", required=True, help="the model name on the server")
    prd.add_argument("--input", required=True, help="CSV with a header row; empty cell = missing")
    prd.add_argument("--signature", default="serving_default")
    prd.add_argument("--timeout", type=float, default=30.0)
    prd.add_argument("--model-dir", help="the export (a version or model directory): its column order, which a "
                     "model whose serving_default takes one [batch, F] matrix needs")
    exp = commands.add_parser("export", help="the transform graph as a TF Serving SavedModel")
    exp.add_argument("--output-dir", required=True, help="a directory that `normpipe transform` wrote")
    exp.add_argument("--model-name", default="normpipe", help="[A-Za-z0-9._-]+ (default: normpipe)")
    exp.add_argument("--model-version", type=int, help="integer version (default: the next free one)")
    exp.add_argument("--serving-base-path", help="write models.config for a server that sees the serving "
                     "directory at this path (e.g. /models); default: its absolute local path")
    exp.add_argument("--transform-dir", help="a tf.Transform output made with normpipe's preprocessing_fn, e.g. "
                     "a TFX Transform component's transform_graph (default: OUTPUT_DIR/transform)")
    _add_serving_inputs_flag(exp)
    return parser


def _split_ints(text):
    try:
        values = tuple(int(v) for v in _split_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers. Received: {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1. Received: {text!r}")
    return values




# train.COMPARISON_ROWS, written out: importing train.py imports Keras, which
# the parser must not wait for (tests/pipeline/test_run_cli.py checks they agree).
COMPARISON_ROWS = 1_000_000


def _add_comparison_rows_flag(parser):
    parser.add_argument("--comparison-rows", type=int, default=COMPARISON_ROWS,
                        help="the variants trained only to be compared (all but --normalization) train on the first "
                             "N training rows per epoch, the exported one on all (default 1000000; 0: all rows)")


def _add_serving_inputs_flag(parser):
    parser.add_argument("--serving-inputs", choices=("auto", "named", "matrix"), default="auto",
                        help="serving_default and transform_features take one DT_DOUBLE input per feature (named) "
                             "or one [batch, F] matrix (matrix); auto: matrix beyond 256 features")


def _add_transform_flags(parser):
    parser.add_argument("--method", choices=("zscore", "minmax", "both"), default="zscore")
    parser.add_argument(
        "--materialize", action=argparse.BooleanOptionalAction, default=True,
        help="write the transformed data as gzip TFRecords (default: yes)",
    )


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _ArgumentError(message)


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
        return _run_command(args, beam_args, argv)
    lock = outputs.RunLock(args.output_dir, args.command).acquire()
    code, started = 1, False
    try:
        unfinished = lock.unfinished
        outputs.check_output_dir(args.command, args.output_dir, args.overwrite or unfinished)
        started = True
        code = _run_command(args, beam_args, argv)
        if code == 0:
            outputs.remove_stale(args.command, args.output_dir, _produced(args))
    finally:
        lock.release(code == 0, started)
    return code


def _progress_to_stderr():
    """Keras prints its per-epoch lines on stdout; they are progress, and
    stdout is for results."""
    return contextlib.redirect_stdout(sys.stderr)


def _input_config(args):
    from normpipe.pipeline.config import InputConfig  # pylint: disable=import-outside-toplevel

    return InputConfig(path=args.input, format=args.format, features=args.features, label=args.label,
                       bad_values=args.bad_values)


def _export_config(args):
    from normpipe.pipeline.config import ExportConfig  # pylint: disable=import-outside-toplevel

    return ExportConfig(model_name=args.model_name, model_version=args.model_version,
                        serving_base_path=args.serving_base_path, serving_inputs=args.serving_inputs)


def _train_options(args):
    from normpipe.components.train import TrainOptions  # pylint: disable=import-outside-toplevel

    return TrainOptions(normalization=args.normalization, epochs=args.epochs, batch_size=args.batch_size,
                        comparison_rows=args.comparison_rows or None, task=getattr(args, "task", None),
                        model_fn=getattr(args, "model_fn", None))


def _run_command(args, beam_args, argv=()) -> int:
    if args.command == "stats":
        from normpipe.pipeline import stats  # pylint: disable=import-outside-toplevel

        config = stats.StatsConfig(input=_input_config(args), output_dir=args.output_dir)
        document = stats.run_stats(config, beam_args)
        print(stats.format_table(document))
        return 0
    if args.command in ("transform", "compare"):
        from normpipe.pipeline import transform  # pylint: disable=import-outside-toplevel

        config = transform.TransformConfig(input=_input_config(args), output_dir=args.output_dir, method=args.method,
                                           materialize=args.materialize)
        spec, _ = transform.run_transform(config, beam_args)
        if args.command == "compare":
            from normpipe.pipeline import compare  # pylint: disable=import-outside-toplevel

            compare.run_compare(spec, args.output_dir, args.method, args.batch_sizes, args.seed)
        return 0
    if args.command == "train":
        from normpipe.pipeline import train  # pylint: disable=import-outside-toplevel

        config = train.TrainConfig(
            input=_input_config(args), output_dir=args.output_dir, method=args.method, options=_train_options(args),
            export=_export_config(args), allow_batch_statistics=args.allow_batch_statistics,
            all_variants=args.all_variants,
        )
        with _progress_to_stderr():
            document, _ = train.run_train(config, beam_args)
        print(train.format_metrics(document))
        return 0
    if args.command == "run":
        from normpipe.pipeline import run  # pylint: disable=import-outside-toplevel

        config = run.RunConfig(
            input=_input_config(args), output_dir=args.output_dir, method=args.method, options=_train_options(args),
            export=_export_config(args), batch_sizes=args.batch_sizes, seed=args.seed,
            all_variants=args.all_variants, materialize=args.materialize,
        )
        with _progress_to_stderr():
            result = run.run_all(config, argv, beam_args)
        print(run.summary(result, args.output_dir, args.model_name))
        return 0 if result["run"]["verified"] else 1
    if args.command == "predict":
        import json  # pylint: disable=import-outside-toplevel

        from normpipe.serving import serving_client  # pylint: disable=import-outside-toplevel

        import time  # pylint: disable=import-outside-toplevel

        serving_client.check_input(args.input)  # before any call to the server
        # --timeout bounds the whole command: the metadata call and the predict call.
        deadline = time.monotonic() + args.timeout
        names = serving_client.model_inputs(args.server, args.model, args.signature, args.timeout, deadline)
        columns = serving_client.matrix_columns(names, args.model_dir)
        rows = serving_client.read_rows(args.input, columns or names)
        if columns:
            rows = [[row[c] for c in columns] for row in rows]
        predictions = serving_client.predict(args.server, args.model, rows, args.signature, args.timeout, deadline)
        for prediction in predictions:
            print(json.dumps(prediction))
        return 0
    if args.command == "verify":
        from normpipe.serving import verify  # pylint: disable=import-outside-toplevel

        return 0 if verify.verify(args.model_dir) else 1
    if args.command == "export":
        from normpipe.serving import export  # pylint: disable=import-outside-toplevel
        from normpipe.core.errors import UserError  # pylint: disable=import-outside-toplevel
        from normpipe.pipeline.progress import progress  # pylint: disable=import-outside-toplevel

        from normpipe.io import atomic  # pylint: disable=import-outside-toplevel
        from normpipe.io import paths  # pylint: disable=import-outside-toplevel

        transform_dir = args.transform_dir or paths.join(args.output_dir, "transform")
        if not paths.isdir(paths.join(transform_dir, "transform_fn")):
            raise UserError(f"{transform_dir}: no transform output (transform_fn/); run `normpipe transform` first")
        atomic.check_complete(transform_dir, "transform output")
        serving = paths.join(args.output_dir, "serving")
        path = export.export_normalization_model(transform_dir, serving, args.model_name, args.model_version,
                                                 base_path=args.serving_base_path, serving_inputs=args.serving_inputs)
        progress(f"exported {path} (signatures: serving_default, serving_examples, transform_features)")
        progress(f"serve: tensorflow_model_server --rest_api_port=8501 --model_config_file={paths.absolute(serving)}/models.config")
        return 0
    raise AssertionError(args.command)


# Commands that run a Beam pipeline.
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
        from normpipe.pipeline import beam_options  # pylint: disable=import-outside-toplevel

        checked = beam_options.check_beam_args(beam_args, command)
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
    """A full or read-only disk, reported on one line (outputs are written
    atomically, so nothing partial is left under a final name)."""
    from normpipe.pipeline.outputs import storage_error  # pylint: disable=import-outside-toplevel

    reason = storage_error(exc)
    if reason is None:
        return None
    where = getattr(args, "output_dir", None) or getattr(args, "model_dir", None)
    return f"cannot write the outputs{f' in {where}' if where else ''}: {reason}"


# TF Serving's version numbers are int64.
MAX_MODEL_VERSION = 2**63 - 1


def check_args(args) -> None:
    """Argument errors that need no data, raised before any work."""
    from normpipe.core.errors import UserError  # pylint: disable=import-outside-toplevel

    for flag in ("epochs", "batch_size"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be a positive integer. Received: {value}")
    if getattr(args, "comparison_rows", 0) < 0:
        raise UserError(f"--comparison-rows must be 0 (every row) or a positive integer. Received: {args.comparison_rows}")
    version = getattr(args, "model_version", None)
    if version is not None and not 1 <= version <= MAX_MODEL_VERSION:
        raise UserError(f"--model-version must be an integer from 1 to {MAX_MODEL_VERSION} (TF Serving's "
                        f"int64 version). Received: {version}")
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not 0 < timeout < float("inf"):
        raise UserError(f"--timeout must be a positive number of seconds. Received: {timeout}")
    if getattr(args, "server", None) is not None:
        from normpipe.serving.serving_client import check_server_url  # pylint: disable=import-outside-toplevel

        check_server_url(args.server)
    if getattr(args, "model_name", None) is not None:
        from normpipe.serving.serving_layout import check_model_name  # pylint: disable=import-outside-toplevel

        check_model_name(args.model_name)


def main(argv=None) -> int:
    """`normpipe <command> ...`: exit status 0 (done), 1 (verify failed), 2 (a user error, one line), or on a
    closed pipe, SIGINT or SIGTERM 141, 130, 143 (see pipeline/exits.py)."""
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
        message = find_user_error(exc) or _worker_import_error(exc) or _job_server_error(exc, beam_args)
        if message is None:
            message = _storage_message(args, exc)
        if message is None:
            raise
        print(f"normpipe: error: {message}", file=sys.stderr)
        return 2


def _quiet_logs():
    logging.getLogger().setLevel(logging.WARNING)
    # A user error raised in a DoFn is reported once, on one line, by main();
    # Beam would also log it with a worker traceback.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    logging.getLogger("apache_beam.runners.worker").setLevel(logging.CRITICAL)
    logging.getLogger("apache_beam.runners.portability").setLevel(logging.CRITICAL)
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
