"""Progress lines on stderr, separate from results on stdout."""

import sys
import time

_START = time.time()
INTERVAL_S = 10.0


def progress(message: str) -> None:
    print(f"[normpipe {time.time() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


class RowRate:
    """Rows read so far and rows/s, reported every `interval` seconds.

    `add(n)` after each block of rows; `summary()` for the end-of-stage line.
    In a Beam pipeline with several worker processes each reports its own
    rows ("in this process").
    """

    def __init__(self, what: str, interval: float = INTERVAL_S, where: str = ""):
        self.what, self.interval, self.where = what, interval, where
        self.rows, self.started = 0, time.time()
        self._last = self.started

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.time()
        if now - self._last >= self.interval:
            self._last = now
            progress(f"{self.what}: {self.rows:,} rows read{self.where}, {self.rate():,.0f} rows/s")

    def rate(self) -> float:
        return self.rows / max(time.time() - self.started, 1e-9)

    def summary(self) -> str:
        return f"{self.rows:,} rows in {time.time() - self.started:.1f}s ({self.rate():,.0f} rows/s)"


def rows_per_s(rows: int, seconds: float) -> str:
    return f"{rows / max(seconds, 1e-9):,.0f} rows/s"
