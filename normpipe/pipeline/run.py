"""`normpipe run`: statistics -> transform -> compare -> train -> export -> verify.

Each stage reuses the previous one's outputs. Layout under <output-dir>:
  statistics.json, transform/, transformed/ (with --materialize), comparison.{json,md,png},
  model/ (with --label), serving/<model-name>/<version>/, serving/models.config,
  report.html, run.json (what ran, normpipe's and its stack's versions,
  timings, command line, input fingerprint). Without --label there is
  nothing to predict: the export is the normalization itself
  (serving_default returns the normalized features).
"""

import dataclasses
import hashlib
import subprocess
import sys
import time
from typing import Tuple

from normpipe.components import report
from normpipe.components.train import TrainOptions
from normpipe.core.errors import UserError
from normpipe.io import atomic, ingest, paths
from normpipe.pipeline.compare import run_compare
from normpipe.pipeline.config import ExportConfig, InputConfig
from normpipe.pipeline.progress import progress
from normpipe.pipeline.train import TrainConfig, check_config, format_metrics, train_and_export
from normpipe.pipeline.transform import TransformConfig, run_transform
from normpipe.serving import export, servable_files, serving_layout
from normpipe.version import __version__


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Every stage's options: what to read (its label, if any, is the
    target), the comparison's batch sizes and seed, training, the export."""

    input: InputConfig
    output_dir: str
    method: str = "zscore"
    options: TrainOptions = TrainOptions()
    export: ExportConfig = ExportConfig()
    batch_sizes: Tuple[int, ...] = (1, 2, 8, 32, 128, 1024, 8192)
    seed: int = 0
    all_variants: bool = True
    materialize: bool = False


def fingerprint(files) -> dict:
    """sha256 over the input files' bytes, with their sizes."""
    digest, total = hashlib.sha256(), 0
    for path in files:
        with paths.open_input(path) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                total += len(block)
    return {"sha256": digest.hexdigest(), "bytes": total, "files": list(files)}


def versions() -> dict:
    import apache_beam  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel

    return {"normpipe": __version__, "python": sys.version.split()[0], "tensorflow": tf.__version__,
            "tensorflow_transform": tft.__version__, "apache_beam": apache_beam.__version__,
            "keras": keras.__version__}


class _Stages:
    def __init__(self):
        self.timings = {}

    def run(self, name, fn, *args):
        progress(f"stage {name}: start")
        start = time.time()
        result = fn(*args)
        self.timings[name] = round(time.time() - start, 2)
        progress(f"stage {name}: done in {self.timings[name]:.1f}s")
        return result


def verify_in_fresh_process(version_dir):
    """Runs `normpipe verify` as TF Serving would meet the export: a new process."""
    # -P: the working directory is not put on sys.path, so a user's own
    # package named like one of normpipe's cannot shadow it (Python >= 3.11).
    isolate = ["-P"] if sys.version_info >= (3, 11) else []
    result = subprocess.run([sys.executable, *isolate, "-m", "normpipe", "verify", "--model-dir", version_dir],
                            capture_output=True, text=True, check=False)
    lines = [l for l in result.stdout.splitlines() if l.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")]
    for line in lines:
        progress(f"verify: {line}")
    return result.returncode == 0, lines


def sample_rows(spec):
    """(the first rows' numeric features [n, F], {categorical column: their texts})."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    columns = next(ingest.iter_columns(spec))
    limit = serving_layout.sample_limit(len(spec.features))
    texts = {n: [v.decode("utf-8", "replace") for v in columns[n][:limit]] for n in spec.categorical}
    return np.stack([columns[n] for n in spec.features], axis=1)[:limit], texts


def run_all(config: RunConfig, argv, beam_args=()) -> dict:
    out, stages, started = config.output_dir, _Stages(), time.time()
    label = config.input.label
    train_config = TrainConfig(input=config.input, output_dir=out, method=config.method, options=config.options,
                               export=config.export, all_variants=config.all_variants)
    if label:
        check_config(train_config)
    else:
        serving_layout.check_model_name(config.export.model_name)
        if config.options.task or config.options.model_fn:
            raise UserError("--task and --model-fn need --label: without one there is nothing to train")
    transform_config = TransformConfig(input=config.input, output_dir=out, method=config.method,
                                       materialize=config.materialize)
    spec, stats = stages.run("statistics+transform", run_transform, transform_config, beam_args)
    comparison = stages.run("compare", run_compare, spec, out, config.method, config.batch_sizes, config.seed)
    rows, texts = sample_rows(spec)
    metrics = None
    if label:
        metrics, version_dir = stages.run("train+export", train_and_export, spec, stats, train_config)
    else:
        version_dir = stages.run("export", export.export_normalization_model, paths.join(out, "transform"),
                                 paths.join(out, "serving"), config.export.model_name,
                                 config.export.model_version, None, config.export.serving_base_path,
                                 config.export.serving_inputs)
    verified, verify_lines = stages.run("verify", verify_in_fresh_process, version_dir)
    first = {n: float(v) for n, v in zip(spec.features, rows[0])}
    if serving_layout.read_features_file(version_dir)["serving_inputs"] == "matrix":
        first = list(first.values())  # one [1, F] matrix, the columns in the export's order
        if texts:  # several inputs: each instance names them
            first = {serving_layout.MATRIX_INPUT: first}
    if texts:
        first.update({n: values[0] for n, values in texts.items()})
    curl = report.curl_command(config.export.model_name, first)
    report.write_report(paths.join(out, "report.html"), stats=stats, comparison=comparison,
                        png_path=paths.join(out, "comparison.png"), metrics=metrics,
                        signatures=servable_files.signature_summary(version_dir), verify_lines=verify_lines, curl=curl,
                        version_dir=version_dir)
    document = {
        "command_line": ["normpipe"] + list(argv), "stages": list(stages.timings), "timings_s": stages.timings,
        "total_s": round(time.time() - started, 2), "versions": versions(), "input": fingerprint(spec.files),
        "label": label, "method": config.method, "normalization": config.options.normalization if label else None,
        "export": version_dir, "verified": verified, "curl": curl,
    }
    atomic.write_json_atomic(paths.join(out, "run.json"), document)
    return {"run": document, "comparison": comparison, "verify_lines": verify_lines, "metrics": metrics}


# A request for a wide model holds every feature: beyond this many characters
# the terminal gets a pointer to the command instead of the command.
MAX_TERMINAL_CURL = 2000


def _terminal_curl(curl: str, num_features: int, output_dir: str) -> str:
    if len(curl) <= MAX_TERMINAL_CURL:
        return curl
    return (f"a request with all {num_features:,} features ({len(curl):,} characters): the \"curl\" command in "
            f"{paths.absolute(paths.join(output_dir, 'run.json'))}, also in report.html")


def summary(result, output_dir, model_name) -> str:
    """The short terminal summary: where the report is and the numbers that matter."""
    comparison = result["comparison"]
    def error_at(b):
        errors = [r["mean_abs_error"] for r in comparison["records"]
                  if r["batch_size"] == b and r["order"] == "shuffled" and r["method"] == comparison["methods"][0]]
        errors = [e for e in errors if e is not None]
        return f"{sum(errors) / len(errors):.3g}" if errors else "n/a (all NaN)"
    skew = next((l for l in result["verify_lines"] if " transform_skew:" in l), "transform_skew: not run")
    serving = paths.absolute(paths.join(output_dir, "serving"))
    lines = [
        f"report:  {paths.absolute(paths.join(output_dir, 'report.html'))}",
        f"per-batch {comparison['methods'][0]} error (mean |per-batch - full|, shuffled): "
        f"batch 1: {error_at(1) if 1 in comparison['batch_sizes'] else 'n/a'}, "
        f"batch 32: {error_at(32) if 32 in comparison['batch_sizes'] else 'n/a'}",
        f"serving skew: {skew}",
        f"verify: {'all checks passed' if result['run']['verified'] else 'FAILED (see report)'}",
        *([format_metrics(result["metrics"])] if result.get("metrics") else []),
        f"serve:   tensorflow_model_server --rest_api_port=8501 --model_config_file={serving}/models.config",
        f"   or:   docker run -p 8501:8501 -v {serving}/{model_name}:/models/{model_name} "
        f"-e MODEL_NAME={model_name} tensorflow/serving",
        f"try:     {_terminal_curl(result['run']['curl'], len(comparison['features']), output_dir)}",
    ]
    return "\n".join(lines)
