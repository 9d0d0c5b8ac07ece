"""The same float64 values give the same statistics, bit for bit, whatever
the input format and partitioning, the number of workers, and whether
`stats` or `transform` computes them; and those bits are the exact values
rounded once (tests/conftest.py exact_stats, in fractions)."""

import itertools
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from normpipe.components import statistics
from tests.conftest import exact_stats, run_cli, write_csv

pytestmark = pytest.mark.slow

ROWS = 12_000
TWO_WORKERS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def adversarial_table() -> dict:
    """Seeded columns that split-dependent float64 sums get wrong in their
    last bits: a 1e6 offset, +-1e16 among small integers, magnitudes from
    1e-300 to 1e300, subnormals, values near +-1.7e308; some cells missing."""
    rng = np.random.default_rng(30)
    cancel = rng.integers(-9, 10, ROWS).astype(np.float64)
    cancel[rng.random(ROWS) < 0.05] = 1e16
    cancel[rng.random(ROWS) < 0.05] = -1e16
    columns = {
        "offset": 1e6 + rng.normal(0, 1, ROWS),
        "cancel": cancel,
        "magnitudes": np.exp(rng.uniform(-690, 690, ROWS)) * rng.choice([-1.0, 1.0], ROWS),
        "subnormal": rng.integers(1, 2**40, ROWS).astype(np.float64) * 5e-324,
        "extreme": rng.choice([1.7e308, -1.7e308, 1.6e308, -np.finfo(np.float64).max], ROWS),
        "plain": rng.normal(3, 2, ROWS),
    }
    for values in columns.values():
        values[rng.random(ROWS) < 0.03] = np.nan
    return columns


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """{name: path}: the table as one CSV, as 7 CSVs, and as Parquet in 5 row groups."""
    root = tmp_path_factory.mktemp("exact")
    table = adversarial_table()
    single = write_csv(root / "one.csv", table)
    parts = root / "seven"
    parts.mkdir()
    bounds = np.linspace(0, ROWS, 8).astype(int)
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        write_csv(parts / f"part-{k}.csv", {n: v[a:b] for n, v in table.items()})
    parquet = root / "five_groups.parquet"
    pq.write_table(pa.table({n: pa.array(v, from_pandas=True) for n, v in table.items()}), str(parquet),
                   row_group_size=ROWS // 5 + 1)
    assert pq.ParquetFile(str(parquet)).num_row_groups == 5
    return {"table": table, "one": str(single), "seven": str(parts), "parquet": str(parquet), "root": root}


def features(out_dir) -> str:
    """statistics.json's `features` as canonical JSON text (bad_values dropped: 0 everywhere)."""
    with open(out_dir / "statistics.json") as f:
        document = json.load(f)
    for figures in document["features"].values():
        assert figures.pop("bad_values") == 0
    return json.dumps(document["features"], sort_keys=True)


def run(command, path, out_dir, *flags):
    result = run_cli([command, "--input", path, "--output-dir", str(out_dir), *flags], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]  # no numpy warning, no refusal
    return result


def test_every_format_partitioning_worker_count_and_command_gives_the_same_bits(inputs):
    root = inputs["root"]
    runs = {
        "stats one csv": ("stats", inputs["one"]),
        "stats seven csvs": ("stats", inputs["seven"]),
        "stats parquet": ("stats", inputs["parquet"]),
        "stats one csv, 2 workers": ("stats", inputs["one"], *TWO_WORKERS),
        "transform one csv": ("transform", inputs["one"]),
        "transform seven csvs, 2 workers": ("transform", inputs["seven"], *TWO_WORKERS),
    }
    texts = {}
    for k, (name, (command, path, *flags)) in enumerate(runs.items()):
        out = root / f"out{k}"
        run(command, path, out, *flags)
        texts[name] = features(out)
        if command == "transform":  # the graph's own constants: the same numbers
            graph = statistics.read_statistics(str(out / "transform"))["features"]
            assert json.dumps(graph, sort_keys=True) == json.dumps(
                {n: {k: v for k, v in f.items() if k != "bad_values"} for n, f in json.loads(texts[name]).items()},
                sort_keys=True)
    reference = texts["stats one csv"]
    for name, text in texts.items():
        assert text == reference, name
    got = json.loads(reference)
    for name, values in inputs["table"].items():
        expected = exact_stats(values)
        if math.isinf(expected["var"]):
            expected["var"] = None  # beyond float64; std still given
        assert got[name] == expected, name
    assert got["extreme"]["var"] is None and got["extreme"]["std"] > 1e308
