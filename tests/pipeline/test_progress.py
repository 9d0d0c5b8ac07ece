"""Progress lines: rows read and rows/s on stderr."""

import re

from normpipe.pipeline import progress


def test_row_rate_reports_rows_read_and_rate_every_interval(capsys):
    rate = progress.RowRate("compare", interval=0.0, where=" (this process)")
    rate.add(1000)
    rate.add(2500)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert re.search(r"compare: 3,500 rows read \(this process\), [\d,]+ rows/s$", lines[1])
    assert rate.rows == 3500 and rate.summary().startswith("3,500 rows in ")


def test_row_rate_is_quiet_between_intervals(capsys):
    rate = progress.RowRate("statistics", interval=3600.0)
    for _ in range(10):
        rate.add(10)
    assert capsys.readouterr().err == "" and rate.rows == 100
