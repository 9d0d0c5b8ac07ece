"""Progress lines on stderr, separate from results on stdout."""

import sys
import time

_START = time.time()


def progress(message: str) -> None:
    print(f"[normpipe {time.time() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
