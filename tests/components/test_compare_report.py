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


def _errors_document(features=8, sizes=(1, 2, 8, 32, 128, 1024), methods=("zscore", "minmax")):
    """Errors falling with the batch size, one curve per feature and method."""
    records = [
        {"feature": f"feature_{i}", "method": m, "order": order, "batch_size": b,
         "mean_abs_error": (1 + i) / b ** 0.5, "nonfinite_fraction": 0.0}
        for m in methods for order in ("file", "shuffled") for i in range(features) for b in sizes
    ]
    return {"num_examples": 5000, "features": [f"feature_{i}" for i in range(features)], "methods": list(methods),
            "batch_sizes": list(sizes), "records": records}


@pytest.mark.parametrize("features, methods", [(8, ("zscore",)), (8, ("zscore", "minmax")), (20, ("zscore", "minmax"))])
def test_legend_covers_no_plotted_area_and_stays_in_the_figure(features, methods):
    fig = compare_report.build_figure(_errors_document(features, methods=methods))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        assert legends, "the plot has a legend"
        entries = sum(len(legend.get_texts()) for legend in legends)
        assert entries == features
        figure_box = fig.bbox
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                assert not box.overlaps(ax.get_window_extent(renderer)), (box, ax.get_window_extent(renderer))
            assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 + 1
            assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1 + 1
    finally:
        compare_report.plt.close(fig)
