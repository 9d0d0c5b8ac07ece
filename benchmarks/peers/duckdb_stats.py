"""Peer: DuckDB `read_csv`, then avg/stddev_pop/min/max per column in SQL.

count, mean, std (population, ddof=0), min and max of every column, as
DOUBLE, empty cells read as NULL and skipped; DuckDB uses all the machine's
cores by default. Prints one JSON line:
{"method": "duckdb", "rows": N, "features": {name: {count, mean, std, min, max}}}.

Usage: python duckdb_stats.py FILE.csv
"""

import json
import sys

import duckdb


def main(argv) -> int:
    path = argv[1]
    con = duckdb.connect()
    names = [row[0] for row in con.execute("DESCRIBE SELECT * FROM read_csv(?, header = true)", [path]).fetchall()]
    types = ", ".join(f"'{n}': 'DOUBLE'" for n in names)
    parts = ["count(*)"]
    for n in names:
        q = f'"{n}"'
        parts += [f"count({q})", f"avg({q})", f"stddev_pop({q})", f"min({q})", f"max({q})"]
    row = con.execute(f"SELECT {', '.join(parts)} FROM read_csv(?, header = true, columns = {{{types}}})",
                      [path]).fetchone()
    features = {}
    for i, n in enumerate(names):
        count, mean, std, low, high = row[1 + 5 * i: 6 + 5 * i]
        features[n] = {"count": int(count), "mean": mean, "std": std, "min": low, "max": high}
    print(json.dumps({"method": "duckdb", "rows": int(row[0]), "features": features}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
