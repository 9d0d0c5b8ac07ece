"""What each command runs: its flags made into a stage config, the stage called.

Each branch imports its stage when it runs, so a command loads only what it
needs (`normpipe stats` never imports TensorFlow).
"""

import contextlib
import sys


def _progress_to_stderr():
    """Keras prints its per-epoch lines on stdout; they are progress, and
    stdout is for results."""
    return contextlib.redirect_stdout(sys.stderr)


def _input_config(args):
    from normpipe.components.categories import VocabularyOptions  # pylint: disable=import-outside-toplevel
    from normpipe.pipeline.config import InputConfig  # pylint: disable=import-outside-toplevel

    vocabulary = VocabularyOptions()
    if hasattr(args, "vocabulary_top_k"):
        vocabulary = VocabularyOptions(top_k=args.vocabulary_top_k, min_count=args.vocabulary_min_count,
                                       oov_buckets=args.oov_buckets)
    return InputConfig(path=args.input, format=args.format, features=args.features, label=args.label,
                       bad_values=args.bad_values, categorical=args.categorical, vocabulary=vocabulary)


def _export_config(args):
    from normpipe.pipeline.config import ExportConfig  # pylint: disable=import-outside-toplevel

    return ExportConfig(model_name=args.model_name, model_version=args.model_version,
                        serving_base_path=args.serving_base_path, serving_inputs=args.serving_inputs)


def _train_options(args):
    from normpipe.components.train import TrainOptions  # pylint: disable=import-outside-toplevel

    return TrainOptions(normalization=args.normalization, epochs=args.epochs, batch_size=args.batch_size,
                        comparison_rows=args.comparison_rows or None, task=getattr(args, "task", None),
                        model_fn=getattr(args, "model_fn", None))


def run_command(args, beam_args, argv=()) -> int:
    """Runs one parsed command; returns its exit status."""
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
        import time  # pylint: disable=import-outside-toplevel

        from normpipe.serving import serving_client  # pylint: disable=import-outside-toplevel

        serving_client.check_input(args.input)  # before any call to the server
        # --timeout bounds the whole command: the metadata call and the predict call.
        deadline = time.monotonic() + args.timeout
        inputs = serving_client.model_inputs(args.server, args.model, args.signature, args.timeout, deadline) or {}
        texts = [n for n, dtype in inputs.items() if dtype == "DT_STRING"]  # categorical columns
        numbers = [n for n in inputs if n not in set(texts)]
        columns = serving_client.matrix_columns(numbers, args.model_dir)
        rows = serving_client.read_rows(args.input, columns or numbers or None, texts)
        rows = serving_client.request_rows(rows, columns, texts)
        predictions = serving_client.predict(args.server, args.model, rows, args.signature, args.timeout, deadline)
        for prediction in predictions:
            print(json.dumps(prediction))
        return 0
    if args.command == "verify":
        from normpipe.serving import verify  # pylint: disable=import-outside-toplevel

        return 0 if verify.verify(args.model_dir) else 1
    if args.command == "export":
        from normpipe.core.errors import UserError  # pylint: disable=import-outside-toplevel
        from normpipe.io import (
            atomic,  # pylint: disable=import-outside-toplevel
            paths,  # pylint: disable=import-outside-toplevel
        )
        from normpipe.pipeline.progress import progress  # pylint: disable=import-outside-toplevel
        from normpipe.serving import export  # pylint: disable=import-outside-toplevel

        transform_dir = args.transform_dir or paths.join(args.output_dir, "transform")
        if not paths.isdir(paths.join(transform_dir, "transform_fn")):
            raise UserError(f"{transform_dir}: no transform output (transform_fn/); run `normpipe transform` first")
        atomic.check_complete(transform_dir, "transform output")
        serving = paths.join(args.output_dir, "serving")
        path = export.export_normalization_model(transform_dir, serving, args.model_name, args.model_version,
                                                 base_path=args.serving_base_path, serving_inputs=args.serving_inputs)
        progress(f"exported {path} (signatures: serving_default, serving_examples, transform_features)")
        progress(
            "serve: tensorflow_model_server --rest_api_port=8501 "
            f"--model_config_file={paths.absolute(serving)}/models.config"
        )
        return 0
    raise AssertionError(args.command)


# Commands that run a Beam pipeline.
