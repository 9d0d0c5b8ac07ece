"""The command line's flags: one parser per command, and the checks that need no data.

Every flag is ours (it builds a stage config), Beam's (it passes through to
PipelineOptions) or an error; booleans are BooleanOptionalAction. Nothing
here imports TensorFlow or Beam, so `normpipe --help` is instant.
"""

import argparse

from normpipe.pipeline import demo, versions


def _split_list(text):
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list. Received: {text!r}")
    return items


def _column_list(text):
    """A comma-separated list of columns; "" is the empty list."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _add_vocabulary_flags(parser):
    parser.add_argument("--vocabulary-top-k", type=_positive_int, default=1000,
                        help="the most frequent values of a categorical column that get their own id (default: 1000)")
    parser.add_argument("--vocabulary-min-count", type=_positive_int, default=5,
                        help="a categorical value seen fewer times shares the out-of-vocabulary id (default: 5)")
    parser.add_argument("--oov-buckets", type=_positive_int, default=1,
                        help="ids for out-of-vocabulary values, unseen ones included (default: 1)")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}")
    return value


def _add_input_flags(parser):
    parser.add_argument("--input", required=True, help="CSV, TFRecord or Parquet file, directory or glob")
    parser.add_argument("--output-dir", required=True, help="directory for the outputs")
    parser.add_argument("--format", choices=("csv", "tfrecord", "parquet"),
                        help="input format (default: by file name)")
    parser.add_argument("--features", type=_split_list, help="comma-separated numeric columns (default: inferred)")
    parser.add_argument("--label", help="label column, excluded from normalization")
    parser.add_argument("--categorical", type=_column_list,
                        help="comma-separated columns read as categories, text or integer codes (default: every "
                             "text column but the label; \"\" for none)")
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
    _add_vocabulary_flags(tfm)
    _add_overwrite_flag(tfm)
    _add_transform_flags(tfm)
    compare = commands.add_parser("compare", help="per-batch vs full-dataset normalization")
    _add_input_flags(compare)
    _add_vocabulary_flags(compare)
    _add_overwrite_flag(compare)
    _add_transform_flags(compare)
    compare.add_argument("--batch-sizes", type=_split_ints, default=(1, 2, 8, 32, 128, 1024, 8192))
    compare.add_argument("--seed", type=int, default=0, help="seed of the shuffled order")
    trn = commands.add_parser("train", help="train a small model, export it for TF Serving")
    _add_input_flags(trn)
    _add_vocabulary_flags(trn)
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
    _add_vocabulary_flags(run)
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
