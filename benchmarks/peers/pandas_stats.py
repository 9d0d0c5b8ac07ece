"""Peer: pandas `read_csv(engine="pyarrow")`, then per-column statistics.

count, mean, std (population, ddof=0), min and max of every column, in
float64, missing (empty cells, read as NaN) skipped. Prints one JSON line:
{"method": "pandas", "rows": N, "features": {name: {count, mean, std, min, max}}}.

Usage: python pandas_stats.py FILE.csv
"""

import json
import sys

import pandas as pd


def column_stats(frame: pd.DataFrame) -> dict:
    return {
        name: {
            "count": int(col.count()),
            "mean": float(col.mean()),
            "std": float(col.std(ddof=0)),
            "min": float(col.min()),
            "max": float(col.max()),
        }
        for name, col in frame.items()
    }


def main(argv) -> int:
    frame = pd.read_csv(argv[1], engine="pyarrow", dtype="float64")
    print(json.dumps({"method": "pandas", "rows": len(frame), "features": column_stats(frame)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
