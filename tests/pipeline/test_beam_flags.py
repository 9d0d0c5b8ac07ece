"""Every flag is normpipe's, Beam's, or refused; paths are made absolute."""

import json
import os
import subprocess
import sys
import time

import pytest

from normpipe.core.errors import UserError
from normpipe.pipeline import beam_options, cli
from tests.conftest import TAXI_CSV, assert_user_error, free_port, run_cli


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--featurs=fare"], "unknown flag(s) for `stats`: --featurs=fare"),
        (["--runner=DirectRunner", "--job_endpont=localhost:1"], "unknown flag(s) for `stats`: --job_endpont"),
        (["stray"], "unknown flag(s) for `stats`: stray"),
        (["--", "--runer=PortableRunner"], "unknown flag(s) for `stats`: --runer=PortableRunner"),
        (["--direct_num_workers=two"], "Beam flag: argument --direct_num_workers: invalid int value: 'two'"),
    ],
)
def test_flags_beam_does_not_know_are_refused(flags, expected):
    with pytest.raises(UserError) as info:
        beam_options.check_beam_args(flags, "stats")
    assert expected in info.value.message


def test_flags_after_double_dash_are_beams():
    flags = ["--", "--runner=PortableRunner", "--job_endpoint", "localhost:8099", "--environment_type=LOOPBACK"]
    assert beam_options.check_beam_args(flags, "stats") == flags[1:]
    options = beam_options.make_options(beam_options.check_beam_args(flags, "stats"))
    assert options.get_all_options()["runner"] == "PortableRunner"
    assert options.get_all_options()["job_endpoint"] == "localhost:8099"


def test_runner_specific_flags_are_known():
    flags = ["--runner=FlinkRunner", "--flink_master=host:8081", "--runner=SparkRunner",
             "--spark_master_url=spark://h:7077", "--project=p", "--region=r", "--temp_location=gs://b/t",
             "--setup_file=./setup.py", "--extra_package=x.whl", "--sdk_container_image=img",
             "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert beam_options.check_beam_args(flags, "stats") == flags


def test_relative_paths_become_absolute_and_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["stats", "--input", "data/x.csv", "--output-dir", "gs://bucket/out"])
    cli._absolute_paths(args)  # pylint: disable=protected-access
    assert args.input == str(tmp_path / "data" / "x.csv")
    assert args.output_dir == "gs://bucket/out"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["stats", "--input", TAXI_CSV, "--output-dir", "{tmp}", "--labl=tips"], "unknown flag(s) for `stats`: --labl=tips"),
        (["verify", "--model-dir", "{tmp}", "--runner=DirectRunner"], "unrecognized arguments for `verify`: --runner"),
    ],
)
def test_misspelt_flag_exits_2_before_any_work(tmp_path, argv, expected):
    result = run_cli([a.replace("{tmp}", str(tmp_path / "out")) for a in argv])
    assert_user_error(result, expected)
    assert not (tmp_path / "out").exists()


def test_beam_flags_after_double_dash_reach_the_runner(tmp_path):
    """The runner named after `--` is the one that runs: nothing listens on
    the job endpoint, so the portable runner fails (the local runner would
    have succeeded)."""
    port = free_port()
    result = run_cli(["stats", "--input", TAXI_CSV, "--output-dir", str(tmp_path / "out"), "--",
                      "--runner=PortableRunner", f"--job_endpoint=localhost:{port}", "--job_server_timeout=2"])
    assert_user_error(result, f"no Beam job server answered at --job_endpoint=localhost:{port}")
    assert not (tmp_path / "out" / "statistics.json").exists()


def test_relative_input_and_output_are_recorded_absolute(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("x,y\n1,2\n3,5\n")
    exe = os.path.join(os.path.dirname(sys.executable), "normpipe")
    result = subprocess.run([exe, "stats", "--input", "in/a.csv", "--output-dir", "out", "--runner=DirectRunner"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "out" / "statistics.json") as f:
        document = json.load(f)
    assert document["input"]["files"] == [str(tmp_path / "in" / "a.csv")]
    assert document["features"]["y"]["mean"] == 3.5


def _silent_listener():
    """A TCP port that accepts connections and never says a word."""
    import socket  # pylint: disable=import-outside-toplevel

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _stats_against(endpoint, out, *flags):
    """(result, seconds) of `normpipe stats` submitted to `endpoint`."""
    started = time.monotonic()
    result = run_cli(["stats", "--input", TAXI_CSV, "--output-dir", str(out), "--", "--runner=PortableRunner",
                      f"--job_endpoint={endpoint}", *flags], timeout=150)
    return result, time.monotonic() - started


@pytest.mark.parametrize("kind", ["unused_port", "silent_listener"])
def test_unanswered_job_endpoint_ends_within_a_minute_with_beams_default_timeout(tmp_path, kind):
    """No --job_server_timeout (Beam's default is 300 s): one line naming the
    endpoint, exit 2, within a minute. On a loaded machine the start-up alone
    may take long: the bound then grows by what a 1 s wait costs beyond 30 s."""
    listener = _silent_listener() if kind == "silent_listener" else None
    endpoint = f"127.0.0.1:{listener.getsockname()[1] if listener else free_port()}"
    try:
        result, elapsed = _stats_against(endpoint, tmp_path / "out")
        reference, startup = _stats_against(endpoint, tmp_path / "ref", "--job_server_timeout=1")
    finally:
        if listener:
            listener.close()
    assert_user_error(result, f"no Beam job server answered at --job_endpoint={endpoint}")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert_user_error(reference, f"--job_endpoint={endpoint} within 1 s")
    assert elapsed < max(60, startup + 30), (elapsed, startup)
    assert not (tmp_path / "out").exists()
