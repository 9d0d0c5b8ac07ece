"""Comparison outputs: the plot and tables for datasets with nothing to plot."""

import json
import os

import pytest

from normpipe.components import compare_report


def _document(errors, sizes=(1, 2)):
    records = [
        {"feature": "a", "method": "zscore", "order": order, "batch_size": b, "mean_abs_error": e,
         "nonfinite_fraction": 0.0 if e is not None else 1.0}
        for order in ("file", "shuffled") for b, e in zip(sizes, errors)
    ]
    return {"num_examples": 1, "features": ["a"], "methods": ["zscore"], "batch_sizes": list(sizes), "records": records}


@pytest.mark.parametrize("errors", [(0.0, 0.0), (None, None), (0.0, None)], ids=["all_zero", "all_nan", "zero_and_nan"])
def test_plot_without_positive_errors_is_written(tmp_path, errors):
    # single_row / two identical rows: every per-batch error is 0 or undefined,
    # nothing can go on a log axis.
    compare_report.write_outputs(_document(errors), str(tmp_path))
    with open(tmp_path / "comparison.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "comparison.json").read_text())["num_examples"] == 1
    assert sorted(n for n in os.listdir(tmp_path)) == ["comparison.json", "comparison.md", "comparison.png"]


def test_plot_with_errors_is_written(tmp_path):
    compare_report.write_outputs(_document((0.5, 0.01)), str(tmp_path))
    assert (tmp_path / "comparison.png").stat().st_size > 1000
