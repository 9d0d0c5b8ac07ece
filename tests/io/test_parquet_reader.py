"""Parquet input: row groups to canonical batches, the same statistics as CSV, bad files."""

import decimal
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from normpipe.core.errors import UserError
from normpipe.io import ingest, parquet_reader
from tests.conftest import TAXI_CSV, assert_user_error, numpy_stats, run_cli

N = 1000


def _table(rng):
    ints = rng.integers(-(2**40), 2**40, N)
    floats = rng.normal(5.0, 2.0, N)
    floats[::7] = np.nan
    nullable = pa.array([None if i % 5 == 0 else float(i) for i in range(N)], pa.float64())
    money = pa.array([decimal.Decimal(f"{i}.25") for i in range(N)], pa.decimal128(10, 2))
    return pa.table({"ints": ints, "floats": floats, "nullable": nullable, "money": money,
                     "fare ($)": rng.uniform(0, 100, N).astype(np.float32),
                     "name": [f"n{i}" for i in range(N)]})


def _expected(table):
    """float64 values of each numeric column, null as NaN, computed with numpy alone."""
    out = {}
    for name in ("ints", "floats", "nullable", "money", "fare ($)"):
        values = table.column(name).to_pylist()
        out[name] = np.array([np.nan if v is None else float(v) for v in values], np.float64)
    return out


def test_row_groups_are_read_once_each_into_canonical_batches(tmp_path):
    table = _table(np.random.default_rng(3))
    path = str(tmp_path / "d.parquet")
    pq.write_table(table, path, row_group_size=128)
    spec = ingest.inspect_input(path)
    assert spec.format == "parquet"
    assert spec.features == ("ints", "floats", "nullable", "money", "fare____")
    assert spec.categorical == ("name",)
    planned = list(parquet_reader.plan_row_groups(path))
    assert [first for _, _, first in planned] == list(range(0, N, 128))
    batches = list(ingest.iter_record_batches(spec))
    assert all(b.schema == ingest.canonical_schema(spec) for b in batches)
    expected = _expected(table)
    for i, name in enumerate(spec.features):
        values = np.concatenate([b.column(i).flatten().to_numpy(zero_copy_only=False) for b in batches])
        np.testing.assert_array_equal(values, expected[spec.original_name(name)], err_msg=name)


def _row_count(batches):
    return [sum(b.num_rows for b in batches)]


def test_row_groups_in_a_pipeline_cover_every_row_of_every_file(tmp_path):
    table = _table(np.random.default_rng(4))
    (tmp_path / "d").mkdir()
    for k in range(3):
        pq.write_table(table.slice(k * 300, 300), str(tmp_path / "d" / f"part-{k}.parquet"), row_group_size=64)
    spec = ingest.inspect_input(str(tmp_path / "d"))
    assert spec.format == "parquet" and len(spec.files) == 3
    assert ingest.inspect_input(str(tmp_path / "d" / "*.parquet")).files == spec.files
    with test_pipeline.TestPipeline() as p:
        rows = (p | ingest.ReadRecordBatches(spec) | beam.combiners.ToList() | beam.Map(_row_count))
        assert_that(rows, lambda got: got == [[900]] or pytest.fail(f"rows read: {got}"))


def test_parquet_statistics_equal_csv_statistics_bit_for_bit(tmp_path):
    """The taxi sample as one Parquet row group and as CSV (one read batch
    each): the same statistics.json features, to the last bit."""
    parquet = str(tmp_path / "taxi.parquet")
    pq.write_table(pacsv.read_csv(TAXI_CSV), parquet)
    documents = {}
    for name, path in (("csv", TAXI_CSV), ("parquet", parquet)):
        result = run_cli(["stats", "--input", path, "--output-dir", str(tmp_path / name), "--label", "tips",
                          "--runner=DirectRunner"])
        assert result.returncode == 0, result.stderr[-2000:]
        with open(tmp_path / name / "statistics.json") as f:
            documents[name] = json.load(f)
    assert documents["parquet"]["input"]["format"] == "parquet"
    assert documents["parquet"]["features"] == documents["csv"]["features"]
    assert documents["parquet"]["num_examples"] == documents["csv"]["num_examples"] == 15002
    fare = pacsv.read_csv(TAXI_CSV).column("fare").to_numpy().astype(np.float64)
    assert documents["parquet"]["features"]["fare"]["mean"] == pytest.approx(numpy_stats(fare)["mean"], rel=1e-12)


def test_infinite_value_is_a_bad_value(tmp_path):
    path = str(tmp_path / "inf.parquet")
    pq.write_table(pa.table({"x": [1.0, 2.0, np.inf, 4.0], "y": [1.0, 2.0, 3.0, 4.0]}), path, row_group_size=2)
    spec = ingest.inspect_input(path)
    with pytest.raises(UserError, match=r"inf.parquet row 3 column 'x': infinite value inf"):
        list(ingest.iter_record_batches(spec))
    spec = ingest.inspect_input(path, bad_values="missing")
    reader = ingest.parquet_row_group_reader(spec)
    outputs = [o for e in parquet_reader.plan_row_groups(path) for o in reader.process(e)]
    assert [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)] == [{"x": 1}]


def _bad_file(tmp_path, case):
    path = tmp_path / "bad.parquet"
    good = pa.table({"x": [1.0, np.inf if case == "infinite" else 2.0, 3.0], "name": ["a", "b", "c"]})
    pq.write_table(good, str(path))
    if case == "corrupt":
        path.write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    return str(path)


@pytest.mark.parametrize(
    "case, flags, expected",
    [
        ("truncated", {}, "bad.parquet: cannot read as Parquet:"),
        ("string_feature", {"features": ["x", "name"]}, "--features: column 'name' is not numeric (type string)"),
        ("unknown_feature", {"features": ["nope"]}, "--features: no column 'nope'"),
    ],
)
def test_bad_parquet_is_a_user_error(tmp_path, case, flags, expected):
    with pytest.raises(UserError) as info:
        ingest.inspect_input(_bad_file(tmp_path, case), **flags)
    assert expected in info.value.message


@pytest.mark.parametrize(
    "case, extra, expected",
    [
        ("corrupt", [], "bad.parquet: cannot read as Parquet:"),
        ("string_feature", ["--features", "x,name"], "--features: column 'name' is not numeric (type string)"),
        ("infinite", [], "row 2 column 'x': infinite value inf"),
    ],
)
def test_bad_parquet_exits_2_with_one_line(tmp_path, case, extra, expected):
    result = run_cli(["stats", "--input", _bad_file(tmp_path, case), "--output-dir", str(tmp_path / "out"), *extra,
                      "--runner=DirectRunner"])
    assert_user_error(result, expected)


class _SchemeFileSystem(LocalFileSystem):
    """Local files under a URI scheme of their own: a path a reader must not
    open with `open()` or list with `os` (Beam finds FileSystem subclasses)."""

    PREFIX = "npuri://"

    @classmethod
    def scheme(cls):
        return "npuri"

    def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
        return super().open(path[len(self.PREFIX):], mime_type, compression_type)

    def match(self, patterns, limits=None):
        results = super().match([p[len(self.PREFIX):] for p in patterns], limits)
        for result in results:
            for metadata in result.metadata_list:
                metadata.path = self.PREFIX + metadata.path
        return results


def test_parquet_behind_a_uri_is_read_through_beam_filesystems(tmp_path):
    table = _table(np.random.default_rng(5))
    pq.write_table(table, str(tmp_path / "d.parquet"), row_group_size=300)
    spec = ingest.inspect_input(_SchemeFileSystem.PREFIX + str(tmp_path / "*.parquet"))
    assert spec.files == (_SchemeFileSystem.PREFIX + str(tmp_path / "d.parquet"),)
    assert spec.format == "parquet"
    batches = list(ingest.iter_record_batches(spec))
    ints = np.concatenate([b.column(0).flatten().to_numpy() for b in batches])
    np.testing.assert_array_equal(ints, _expected(table)["ints"])
