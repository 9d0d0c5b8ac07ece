"""`normpipe demo`: `normpipe run` on the Chicago taxi sample inside the package.

    normpipe demo [--output-dir DIR] [flags of `normpipe run`] [beam flags]

is the run

    normpipe run --input <normpipe/data/chicago_taxi_15k.csv> --label fare
                 --model-name taxi_fare --overwrite --output-dir DIR [flags]

so an installed normpipe shows, in one command, the per-batch recipe failing
a one-row request next to the full-dataset normalization. The sample is
read through importlib.resources; its terms are in normpipe/data/README.md.

The flags that say what data the demo runs on (--input, --format,
--features, --label, --bad-values) are refused with one line, since
`normpipe run` is the command for other data. Every other flag of `run`
(--epochs, --method, --model-name, --no-overwrite, ...) and every Beam flag
is passed to the run as given.
"""

import atexit
import contextlib
from importlib import resources

from normpipe.core.errors import UserError

SAMPLE = "chicago_taxi_15k.csv"
LABEL = "fare"
MODEL_NAME = "taxi_fare"
DEFAULT_OUTPUT_DIR = "normpipe-demo"
# `run` flags that fix the demo's data, and the value each has in the demo's run.
_DATA_FLAGS = {"input": None, "format": None, "features": None, "label": LABEL, "bad_values": "error"}


def add_parser(commands):
    """The `demo` subcommand; its other flags are checked by `run`'s parser in as_run."""
    demo = commands.add_parser(
        "demo", help="`run` on the taxi sample inside the package (what `make demo` runs)",
        usage="normpipe demo [--output-dir DIR] [flags of `normpipe run`] [beam flags]",
        description=f"normpipe run --input <the taxi sample inside the package> --label {LABEL} --model-name "
                    f"{MODEL_NAME} --overwrite --output-dir DIR [flags]: the per-batch recipe failing a one-row "
                    "request, next to the full-dataset normalization.",
        epilog="Every flag of `normpipe run` but --input, --format, --features, --label and --bad-values, and "
               "every Beam flag, is passed to the run as given.",
    )
    demo.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR,
                      help=f"directory for the outputs (default: ./{DEFAULT_OUTPUT_DIR})")
    return demo


def sample_path() -> str:
    """A local path of the packaged sample, valid until the process exits."""
    stack = contextlib.ExitStack()
    # A package imported from a zip has no file of its own: as_file extracts
    # one then, and atexit removes it; an installed package's file is used as it is.
    path = stack.enter_context(resources.as_file(resources.files("normpipe") / "data" / SAMPLE))
    atexit.register(stack.close)
    return str(path)


def run_argv(args, extra) -> list:
    """The `normpipe run` command line of `normpipe demo` with these flags; the user's flags come last."""
    return ["run", "--input", sample_path(), "--label", LABEL, "--model-name", MODEL_NAME, "--overwrite",
            "--output-dir", args.output_dir, *extra]


def as_run(parser, args, extra):
    """(run's args, Beam flags, run's argv) for `normpipe demo`; a flag that changes the demo's data is refused."""
    argv = run_argv(args, extra)
    run_args, beam_args = parser.parse_known_args(argv)
    fixed = dict(_DATA_FLAGS, input=argv[2])
    for name, value in fixed.items():
        if getattr(run_args, name) != value:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"`normpipe demo` runs on its bundled sample and takes no {flag} "
                            f"(use `normpipe run {flag} ...` for other data). Received: {flag} "
                            f"{getattr(run_args, name)!r}")
    return run_args, beam_args, argv
