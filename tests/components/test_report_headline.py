"""report.html's headline box: first on the page, and what it says when a part of the run is missing."""

import html.parser

from normpipe.components import report, report_headline


class _Order(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.events = []

    def handle_starttag(self, tag, attrs):
        if tag == "table" or ("class", "headline") in attrs:
            self.events.append("headline" if tag == "div" else tag)


STATS = {"num_examples": 3, "features": {"a": {"count": 3, "missing": 0, "mean": 1.0, "std": 0.5, "min": 0.5,
                                              "max": 1.5}}}
COMPARISON = {"num_examples": 3, "features": ["a", "b"], "methods": ["minmax"], "batch_sizes": [1, 4],
              "records": [{"feature": f, "method": "minmax", "order": o, "batch_size": b, "mean_abs_error": e,
                           "nonfinite_fraction": 0.0}
                          for f, e1 in (("a", 0.25), ("b", None)) for o in ("file", "shuffled")
                          for b, e in ((1, e1), (4, 0.0))]}


def test_box_comes_before_every_table_without_a_label():
    page = report.render(stats=STATS, comparison=COMPARISON, png_path=None, metrics=None, signatures={},
                         verify_lines=["PASS transform_skew: max |diff| 0 on 3 rows"], curl="curl", version_dir="v")
    parser = _Order()
    parser.feed(page)
    assert parser.events[0] == "headline" and parser.events[1:] and set(parser.events[1:]) == {"table"}
    assert "Model: no label" in page
    # an all-NaN feature (None) is left out of the mean: only a's 0.25 counts
    assert "0.25 at batch size 1, 0 at batch size 4" in page
    assert "Serving skew: PASS transform_skew: max |diff| 0 on 3 rows" in page


def test_model_line_without_the_per_batch_variant_says_so():
    metrics = {"label": "y", "variants": {"tft": {"metric": "accuracy", "batch_1": {"accuracy": 0.875}}},
               "baseline": {"what": "majority class", "batch_1": {"accuracy": 0.5}}}
    line = report_headline.model_line(metrics)
    assert "per-batch normalization not trained" in line and "full-dataset (tft) 0.875" in line
    assert "baseline (majority class) 0.5" in line and "higher is better" in line


def test_missing_verify_and_comparison_are_named():
    assert report_headline.skew_line([]) == "Serving skew: transform_skew not run."
    assert report_headline.normalization_line(None).startswith("Normalization: no per-batch comparison")
