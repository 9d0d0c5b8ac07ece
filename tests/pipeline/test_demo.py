"""`normpipe demo`: `normpipe run` on the sample inside the package; flags passed through or refused."""

import csv
import os

import pytest

import normpipe
from normpipe.pipeline import demo
from normpipe.pipeline.cli import build_parser
from tests.conftest import assert_user_error, run_cli


def _as_run(*flags):
    parser = build_parser()
    args, extra = parser.parse_known_args(["demo", *flags])
    return demo.as_run(parser, args, extra)


def test_demo_is_run_on_the_packaged_sample_with_the_make_demo_flags():
    args, beam_args, argv = _as_run()
    package_dir = os.path.dirname(os.path.abspath(normpipe.__file__))
    assert os.path.abspath(args.input) == os.path.join(package_dir, "data", "chicago_taxi_15k.csv")
    assert (args.command, args.label, args.model_name, args.overwrite) == ("run", "fare", "taxi_fare", True)
    assert args.output_dir == demo.DEFAULT_OUTPUT_DIR and beam_args == []
    assert argv[:2] == ["run", "--input"]
    with open(args.input, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15002 and "fare" in rows[0] and "trip_miles" in rows[0]
    with open(os.path.join(package_dir, "data", "README.md"), encoding="utf-8") as f:
        assert "City of Chicago" in f.read()  # the sample's terms beside it


def test_demo_passes_the_other_run_flags_and_beam_flags_through():
    args, beam_args, argv = _as_run("--output-dir", "d", "--epochs", "2", "--no-overwrite", "--model-name", "m",
                                    "--batch-sizes", "1,32", "--method=minmax", "--direct_num_workers=2")
    assert (args.output_dir, args.epochs, args.overwrite, args.model_name) == ("d", 2, False, "m")
    assert (args.batch_sizes, args.method, args.label) == ((1, 32), "minmax", "fare")
    assert beam_args == ["--direct_num_workers=2"]
    assert argv[-1] == "--direct_num_workers=2"  # run.json's command line holds what ran


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--input", "x.csv"], "--input"),
        (["--inp=x.csv"], "--input"),  # argparse's abbreviation of --input
        (["--label", "tips"], "--label"),
        (["--features", "fare,tips"], "--features"),
        (["--format", "csv"], "--format"),
        (["--bad-values", "missing"], "--bad-values"),
    ],
)
def test_demo_refuses_flags_that_change_its_data(tmp_path, flags, flag):
    out = tmp_path / "out"
    result = run_cli(["demo", "--output-dir", str(out), *flags])
    assert_user_error(result, f"`normpipe demo` runs on its bundled sample and takes no {flag}")
    assert not out.exists()


def test_demo_refuses_a_misspelt_flag_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = run_cli(["demo", "--output-dir", str(out), "--epohcs", "2"])
    assert_user_error(result, "unknown flag(s) for `run`: --epohcs 2")
    assert not out.exists()
