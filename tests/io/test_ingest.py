"""Reader tests: byte-range splits, CSV dialect cases, TFRecords, bad input."""

import gzip

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from normpipe.core.errors import UserError
from normpipe.io import csv_reader, ingest
from tests.conftest import TAXI_CSV, read_csv_float64, write_csv


def read_all_ranges(path, columns, numeric, split_size):
    """Reads every planned range directly (no pipeline) and concatenates."""
    reader = csv_reader.ReadCsvRange(columns, numeric, block_size=4096)
    batches = []
    ranges = list(csv_reader.plan_ranges(path, split_size))
    for element in ranges:
        batches.extend(reader.process(element))
    out = {}
    for i, name in enumerate(numeric):
        parts = [b.column(i).flatten().to_numpy(zero_copy_only=False) for b in batches]
        out[name] = np.concatenate(parts) if parts else np.array([])
    return out, ranges


def assert_same_values(actual, expected):
    for name, values in expected.items():
        np.testing.assert_array_equal(actual[name], values, err_msg=name)


@pytest.mark.parametrize("split_size", [1, 7, 64, 1000, 10**9])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_byte_range_split_never_loses_or_duplicates_a_row(tmp_path, mixed_data, split_size, newline):
    data = {k: v[:300] for k, v in mixed_data.items()}
    path = write_csv(tmp_path / "d.csv", data, newline=newline)
    actual, ranges = read_all_ranges(str(path), list(data), list(data), split_size)
    if split_size < 1000:
        assert len(ranges) > 1
    assert_same_values(actual, read_csv_float64(path, list(data)))


@pytest.mark.parametrize("split_size", [1, 5, 13])
def test_file_without_trailing_newline(tmp_path, split_size):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,4\n5.5,6")
    actual, _ = read_all_ranges(str(path), ["a", "b"], ["a", "b"], split_size)
    assert_same_values(actual, {"a": np.array([1, 3, 5.5]), "b": np.array([2, 4, 6.0])})


def test_quoted_fields_with_commas_and_newlines_are_not_split(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('name,x,y\n"a, b",1,2\n"multi\nline",3,4\n"c",,6\n')
    actual, ranges = read_all_ranges(str(path), ["name", "x", "y"], ["x", "y"], 4)
    assert len(ranges) == 1  # a file holding a quote is read whole
    np.testing.assert_array_equal(actual["x"], [1, 3, np.nan])
    np.testing.assert_array_equal(actual["y"], [2, 4, 6])


def test_gzip_csv(tmp_path, mixed_data):
    data = {k: v[:200] for k, v in mixed_data.items()}
    plain = write_csv(tmp_path / "d.csv", data)
    zipped = tmp_path / "d.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    spec = ingest.inspect_input(str(zipped))
    assert spec.features == tuple(data)
    actual, ranges = read_all_ranges(str(zipped), spec.columns, spec.numeric, 10)
    assert len(ranges) == 1
    assert_same_values(actual, read_csv_float64(plain, list(data)))


def test_bom_and_crlf_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n3,\r\n")
    spec = ingest.inspect_input(str(path))
    assert spec.columns == ("a", "b")
    actual, _ = read_all_ranges(str(path), spec.columns, spec.numeric, 10**9)
    np.testing.assert_array_equal(actual["b"], [2, np.nan])


def test_schema_inference_reports_strings_and_excludes_label():
    spec = ingest.inspect_input(TAXI_CSV, label="tips")
    assert spec.categorical == ("payment_type", "company") and spec.strings == ()
    assert "tips" not in spec.features and spec.label == "tips"
    assert spec.numeric[-1] == "tips"
    assert "fare" in spec.features and "trip_start_timestamp" in spec.features


def test_features_flag_selects_columns():
    spec = ingest.inspect_input(TAXI_CSV, features=("fare", "trip_miles"))
    assert spec.features == ("fare", "trip_miles")


@pytest.mark.parametrize(
    "content, expected",
    [
        ("a,b\n1,2\n3,abc\n", "line 3 column 'b': non-numeric value 'abc'"),
        ("a,b\n1,2\n3,\"1,5\"\n", "line 3 column 'b': non-numeric value '1,5'"),
        ("a,b\n1,2\n3,4\n5,6,7\n", "line 4: expected 2 fields, got 3"),
        ("a,b\n1,2\n3,inf\n", "line 3 column 'b': infinite value"),
        ("a,b\n1,2\n3,$3\n", "line 3 column 'b': non-numeric value '$3'"),
        ("a,b\n1,2\n3,-inf\n", "line 3 column 'b': infinite value -inf"),
        ("a,b\n1,2\n3,1e400\n", "line 3 column 'b': infinite value"),
        ("a,b\n1,2\n3,1_000\n", "line 3 column 'b': non-numeric value '1_000'"),
        ("a,b\n1,2\nNA,\n4,x\n", "line 4 column 'b': non-numeric value 'x'"),  # NA is missing, not bad
        (b"a,b\n1,2\n3,\xff\n", "line 3 column 'b': non-numeric value '\\\\xff'"),
        ("a,b\n1,2\n3\n", "line 3: expected 2 fields, got 1"),
    ],
)
def test_bad_value_names_file_line_column_value(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    reader = csv_reader.ReadCsvRange(["a", "b"], ["a", "b"])
    with pytest.raises(UserError) as err:
        for element in csv_reader.plan_ranges(str(path)):
            list(reader.process(element))
    assert str(path) in err.value.message
    assert expected in err.value.message


@pytest.mark.parametrize("row, fields", [("79", 1), ("79,1,2", 3)])
@pytest.mark.parametrize("split_size", [50, 10**9])
def test_ragged_row_line_number_in_a_later_range(tmp_path, row, fields, split_size):
    lines = ["a,b"] + [f"{i},{i}" for i in range(100)]
    lines[80] = row
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    reader = csv_reader.ReadCsvRange(["a", "b"], ["a", "b"])
    with pytest.raises(UserError, match=f"ragged.csv line 81: expected 2 fields, got {fields}: '{row}'"):
        for element in csv_reader.plan_ranges(str(path), split_size=split_size):
            list(reader.process(element))


def test_bad_value_line_number_in_a_later_range(tmp_path):
    lines = ["a,b"] + [f"{i},{i}" for i in range(100)]
    lines[80] = "79,oops"
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    reader = csv_reader.ReadCsvRange(["a", "b"], ["a", "b"])
    with pytest.raises(UserError, match="line 81 column 'b': non-numeric value 'oops'"):
        for element in csv_reader.plan_ranges(str(path), split_size=50):
            list(reader.process(element))


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: str(d / "missing.csv"), "no such file or directory"),
        (lambda d: (d / "empty").mkdir() or str(d / "empty"), "directory holds no input files"),
        (lambda d: str(d / "*.nothing"), "pattern matches no files"),
        (lambda d: ((d / "e.csv").write_text("") and None) or str(d / "e.csv"), "file is empty"),
        (lambda d: (d / "h.csv").write_text("a,a\n1,2\n") and str(d / "h.csv"), "duplicate column names: a"),
        (lambda d: (d / "h.csv").write_text("a,,b\n1,2,3\n") and str(d / "h.csv"), "empty name"),
        (lambda d: (d / "s.csv").write_text("a,b\nx,y\n") and str(d / "s.csv"), "no numeric feature columns"),
    ],
)
def test_inspect_errors(tmp_path, make, expected):
    with pytest.raises(UserError, match=expected):
        ingest.inspect_input(make(tmp_path))


def test_unknown_feature_and_string_label(tmp_path):
    with pytest.raises(UserError, match="--features: no column 'nope'"):
        ingest.inspect_input(TAXI_CSV, features=("fare", "nope"))
    # a string label is classes (components/labels.py), never a feature
    spec = ingest.inspect_input(TAXI_CSV, label="company")
    assert spec.label == "company" and spec.string_label and "company" not in spec.features
    with pytest.raises(UserError, match=r"--label: no column 'nope' \(columns: .*fare"):
        ingest.inspect_input(TAXI_CSV, label="nope")


def _write_tfrecord(path, rows, gzip_it):
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip_it else "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for row in rows:
            feature = {}
            for name, value in row.items():
                if isinstance(value, bytes):
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                elif isinstance(value, int):
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                elif value is not None:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def _collect(spec):
    with beam.Pipeline(runner="DirectRunner") as p:
        batches = p | ingest.ReadRecordBatches(spec) | beam.combiners.ToList()
        return batches


class _Collector:
    rows = []


def _store(batches):
    _Collector.rows = [b.to_pydict() for b in batches]


@pytest.mark.parametrize("gzip_it", [False, True])
def test_tfrecord_plain_and_gzip(tmp_path, gzip_it):
    rows = [{"x": 1.5, "n": 3, "s": b"a"}, {"x": None, "n": 4, "s": b"b"}, {"x": -2.25, "n": 5, "s": b"c"}]
    path = tmp_path / "part-0.tfrecord"  # gzip is found by content, not by name
    _write_tfrecord(path, rows, gzip_it)
    spec = ingest.inspect_input(str(tmp_path), fmt="tfrecord")
    assert spec.features == ("n", "x") and spec.categorical == ("s",)
    with test_pipeline.TestPipeline(argv=["--runner=DirectRunner"]) as p:
        batches = p | ingest.ReadRecordBatches(spec) | beam.combiners.ToList()
        assert_that(batches, _tfrecord_matches)


def _tfrecord_matches(actual):
    (batches,) = actual
    table = pa.Table.from_batches(batches)
    x = np.array([v[0] for v in table.column("x").to_pylist()])
    n = np.array([v[0] for v in table.column("n").to_pylist()])
    order = np.argsort(n)
    np.testing.assert_array_equal(n[order], [3, 4, 5])
    np.testing.assert_array_equal(x[order], [1.5, np.nan, -2.25])


def test_corrupt_tfrecord_names_the_file(tmp_path):
    path = tmp_path / "bad.tfrecord"
    _write_tfrecord(path, [{"x": float(i)} for i in range(50)], False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Exception) as err:
        spec = ingest.inspect_input(str(path))
        with beam.Pipeline(runner="DirectRunner") as p:
            _ = p | ingest.ReadRecordBatches(spec)
    from normpipe.core.errors import find_user_error

    message = find_user_error(err.value)
    assert message is not None and str(path) in message



def test_record_batch_coder_round_trips_and_sizes_by_nbytes(tmp_path):
    """The coder Beam uses between transforms: exact round trip, size = nbytes."""
    values = [[1.5], [np.nan], [-0.0], [5e-324], [1e308]]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(values, pa.list_(pa.float64())), pa.array([[float(i)] for i in range(5)], pa.list_(pa.float64()))],
        ["x", "y"],
    )
    coder = beam.coders.registry.get_coder(pa.RecordBatch)
    assert isinstance(coder, ingest.RecordBatchCoder)
    decoded = coder.decode(coder.encode(batch))
    assert decoded.schema == batch.schema
    got = decoded.column(0).flatten().to_numpy(zero_copy_only=False)
    expected = np.array([v[0] for v in values])
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))  # bit for bit, NaN and -0.0 included
    assert coder.estimate_size(batch) == batch.nbytes
    assert coder.get_impl().estimate_size(batch) == batch.nbytes


def test_read_record_batches_output_is_typed_as_record_batches(tmp_path):
    path = write_csv(tmp_path / "d.csv", {"a": [1.0, 2.0], "b": [3.0, 4.0]})
    spec = ingest.inspect_input(str(path))
    pipeline = beam.Pipeline()
    batches = pipeline | ingest.ReadRecordBatches(spec, bad_values_path=str(tmp_path / "bad.json"))
    assert batches.element_type is pa.RecordBatch
