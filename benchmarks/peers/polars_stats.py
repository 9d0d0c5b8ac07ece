"""Peer: Polars `scan_csv` (lazy, streaming), then mean/std/min/max per column.

count, mean, std (population, ddof=0), min and max of every column, in
Float64, empty cells read as null and skipped; Polars uses all the
machine's cores by default. Prints one JSON line:
{"method": "polars", "rows": N, "features": {name: {count, mean, std, min, max}}}.

Usage: python polars_stats.py FILE.csv
"""

import json
import sys

import polars as pl


def main(argv) -> int:
    path = argv[1]
    names = list(pl.scan_csv(path).collect_schema().names())
    frame = pl.scan_csv(path, schema=dict.fromkeys(names, pl.Float64))
    exprs = [pl.len().alias("__rows")]
    for n in names:
        c = pl.col(n)
        exprs += [c.count().alias(f"{n}|count"), c.mean().alias(f"{n}|mean"), c.std(ddof=0).alias(f"{n}|std"),
                  c.min().alias(f"{n}|min"), c.max().alias(f"{n}|max")]
    row = frame.select(exprs).collect().row(0, named=True)
    features = {n: {k: row[f"{n}|{k}"] for k in ("count", "mean", "std", "min", "max")} for n in names}
    for f in features.values():
        f["count"] = int(f["count"])
    print(json.dumps({"method": "polars", "rows": int(row["__rows"]), "features": features}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
