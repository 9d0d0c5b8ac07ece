"""Arguments and names refused before any work: one line, exit 2, nothing written."""

import os

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli, write_csv


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 50
    return write_csv(tmp_path_factory.mktemp("refusals") / "d.csv",
                     {"a": rng.normal(size=n), "b": rng.normal(size=n), "a_z": rng.normal(size=n), "b_01": rng.normal(size=n)})


def assert_nothing_written(out):
    assert not os.path.exists(out) or os.listdir(out) == [], os.listdir(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--label", "a_z", "--features", "a,b"], "'a_z'"),
        (["train", "--label", "b_01", "--features", "a,b", "--method", "minmax"], "'b_01'"),
        (["transform", "--features", "a,a_z"], "'a_z'"),
    ],
    ids=["label_named_like_zscore_output", "label_named_like_minmax_output", "feature_named_like_output"],
)
def test_name_colliding_with_a_normalized_output_is_refused(tmp_path, csv_path, args, expected):
    out = tmp_path / "out"
    result = run_cli([*args, "--input", str(csv_path), "--output-dir", str(out)])
    assert_user_error(result, expected)
    line = next(l for l in result.stderr.splitlines() if l.startswith("normpipe: error:"))
    assert "'a'" in line or "'b'" in line  # the feature whose output it collides with
    assert_nothing_written(out)


@pytest.mark.slow
def test_label_not_colliding_with_the_chosen_method_runs_transform(tmp_path, csv_path):
    # b_01 is only an output name with --method minmax or both
    out = tmp_path / "out"
    result = run_cli(["transform", "--input", str(csv_path), "--output-dir", str(out), "--features", "a,b",
                      "--label", "b_01", "--no-materialize"])
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--epochs", "0"], "--epochs must be a positive integer"),
        (["train", "--label", "b", "--batch-size", "0"], "--batch-size must be a positive integer"),
        (["run", "--model-version", "0"], "--model-version must be an integer from 1 to 9223372036854775807"),
        (["run", "--model-version", "99999999999999999999"], "--model-version must be an integer from 1 to"),
        (["train", "--label", "b", "--model-name", ".hidden"], "not start with '.'"),
    ],
    ids=["epochs_0", "batch_size_0", "model_version_0", "model_version_beyond_int64", "hidden_model_name"],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, csv_path, args, expected):
    out = tmp_path / "out"
    result = run_cli([*args, "--input", str(csv_path), "--output-dir", str(out)])
    assert_user_error(result, expected)
    assert_nothing_written(out)


@pytest.mark.slow
def test_export_refuses_a_hidden_model_name(tmp_path):
    result = run_cli(["export", "--output-dir", str(tmp_path), "--model-name", ".hidden"])
    assert_user_error(result, "not start with '.'")


@pytest.mark.parametrize("command", ["stats", "run"])
def test_column_named_like_the_graph_input_is_refused(tmp_path, command):
    path = write_csv(tmp_path / "d.csv", {"a": np.arange(5.0), "normpipe_feature_matrix": np.arange(5.0)})
    out = tmp_path / "out"
    result = run_cli([command, "--input", str(path), "--output-dir", str(out)])
    assert_user_error(result, "'normpipe_feature_matrix': the name is the transform graph's own input")
    assert_nothing_written(out)
