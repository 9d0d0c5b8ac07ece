"""tfrecord_reader: corrupt, truncated and surprising TFRecord input."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from normpipe.core.errors import UserError
from normpipe.io import ingest
from tests.io.test_ingest import _write_tfrecord


def _read_tfrecord(path):
    from normpipe.io import tfrecord_reader

    return list(tfrecord_reader.read_tfrecord_file(str(path)))


@pytest.mark.parametrize("gzip_it", [False, True])
def test_truncated_tfrecord_names_the_file(tmp_path, gzip_it):
    path = tmp_path / "t.tfrecord"
    _write_tfrecord(path, [{"x": float(i)} for i in range(2000)], gzip_it)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(UserError, match=r"t.tfrecord: corrupt TFRecord data"):
        ingest.inspect_input(str(path))  # the sample of 1,000 records may not reach the cut
        _read_tfrecord(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:10] + bytes(b ^ 0xFF for b in data[10:40]) + data[40:],  # bad deflate data
        lambda data: data[:-8] + bytes(8),  # bad gzip CRC/size trailer
        lambda data: b"\x1f\x8b" + bytes(50),  # a gzip header and nothing valid after it
    ],
)
def test_bad_gzip_tfrecord_names_the_file(tmp_path, damage):
    path = tmp_path / "g.tfrecord.gz"
    _write_tfrecord(path, [{"x": float(i)} for i in range(50)], True)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=r"g.tfrecord.gz: corrupt TFRecord data"):
        ingest.inspect_input(str(path))
    with pytest.raises(UserError, match=r"g.tfrecord.gz: corrupt TFRecord data"):
        _read_tfrecord(path)


def _decode(spec):
    """Decodes every file of `spec` directly: (values of x, bad-value counts)."""
    from normpipe.io import tfrecord_reader

    decoder = tfrecord_reader.DecodeExamples(spec)
    decoder.setup()
    outputs = [o for f in spec.files for o in decoder.process(list(tfrecord_reader.read_tfrecord_file(f)))]
    batches = [o for o in outputs if isinstance(o, pa.RecordBatch)]
    counts = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
    return np.array([v[0] for b in batches for v in b.column(0).to_pylist()]), ingest.merge_counts(counts)


def test_infinite_value_in_a_tfrecord(tmp_path):
    path = tmp_path / "inf.tfrecord"
    _write_tfrecord(path, [{"x": 1.0}, {"x": float("inf")}, {"x": None}, {"x": float("-inf")}], False)
    with pytest.raises(UserError, match=r"inf.tfrecord record 2 feature 'x': infinite value"):
        _decode(ingest.inspect_input(str(path)))
    values, counts = _decode(ingest.inspect_input(str(path), bad_values="missing"))
    np.testing.assert_array_equal(values, [1.0, np.nan, np.nan, np.nan])
    assert counts == {"x": 2}


def test_tfrecord_feature_of_another_type_names_the_record(tmp_path):
    path = tmp_path / "mixed.tfrecord"
    _write_tfrecord(path, [{"x": 1.0}] * 1500 + [{"x": b"oops"}], False)
    with pytest.raises(UserError, match=r"mixed.tfrecord record 1501 feature 'x': bytes_list where .* float_list"):
        _decode(ingest.inspect_input(str(path)))


@pytest.mark.parametrize("at", [56, 1501], ids=["inside_the_sample", "after_the_sample"])
def test_tfrecord_type_change_names_the_record_and_the_feature(tmp_path, at):
    # `a` stays float; `b` is float, then int64 at record `at` (1-based)
    path = tmp_path / "change.tfrecord"
    rows = [{"a": float(i), "b": (i if i + 1 == at else i * 0.5)} for i in range(2000)]
    _write_tfrecord(path, rows, False)
    with pytest.raises(UserError) as error:
        _decode(ingest.inspect_input(str(path)))
    assert f"change.tfrecord record {at} feature 'b': int64_list where" in error.value.message


def test_tfrecord_record_claiming_a_huge_length_is_a_user_error(tmp_path):
    """tf.data's reader segfaults on this one; ours checks the length first."""
    import struct

    from apache_beam.io.tfrecordio import _TFRecordUtil

    header = struct.pack("<Q", 1 << 40)
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(header + struct.pack("<I", _TFRecordUtil._masked_crc32c(header)) + b"x" * 30)
    with pytest.raises(UserError, match=r"huge.tfrecord: corrupt TFRecord data after record 0 \(record length 1099511627776"):
        ingest.inspect_input(str(path))
