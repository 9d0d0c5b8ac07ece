"""Fuzz: random bytes and mutated files end in a result or a UserError.

The readers run directly (inspect_input, then every planned byte range
through ReadCsvRange.process, or every record through DecodeExamples), no
pipeline, so hundreds of cases take seconds. Any exception other than
UserError fails the test, and so does a case that runs for more than
CASE_SECONDS (SIGALRM); faulthandler kills the run if even that cannot
interrupt a hang inside C code.
"""

import contextlib
import faulthandler
import gzip
import os
import signal
import struct
import tempfile

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normpipe.core.errors import UserError
from normpipe.io import csv_reader, ingest, tfrecord_reader

CASE_SECONDS = 20

VALID_CSV = (
    b"a,b c,s,n\n1,2.5,x,7\n-3,,\"q, r\",8\n4e5,nan,\"two\nlines\",9\n5,6,z,10\n"
    b"1e-310,1e39,w,11\n,,,\n7,8,\"\"\"quoted\"\"\",12\n"
)
PIECES = [b",", b'"', b"\n", b"\r", b"\r\n", b"\xff", b"\x00", b"\xef\xbb\xbf", b"inf", b"-inf", b"abc",
          b"e", b"-", b" ", b"1,5", b"$3", b"\\", b"NA", b"1e400", b"\t", b",,,,", b"\xc3", b"z" * 5000]


class CaseTimeout(Exception):
    """Raised by SIGALRM inside a case that takes too long."""


@contextlib.contextmanager
def time_limit(seconds):
    def expire(signum, frame):
        raise CaseTimeout(f"case ran longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds * 3, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def apply(data: bytes, mutations) -> bytes:
    for kind, position, piece in mutations:
        at = position % (len(data) + 1)
        if kind == "insert":
            data = data[:at] + piece + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(piece):]
        else:
            data = data[:at] + piece + data[at + len(piece):]
    return data


mutations = st.lists(
    st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 10**6), st.sampled_from(PIECES)),
    max_size=8,
)
mutated_csv = st.builds(apply, st.just(VALID_CSV), mutations)
csv_inputs = st.one_of(
    st.binary(max_size=3000),
    mutated_csv,
    mutated_csv.map(gzip.compress),
    st.tuples(mutated_csv.map(gzip.compress), st.integers(1, 400)).map(lambda t: t[0][: -t[1]]),
)


def read_csv_everything(path, bad_values, force_all, split_size, block_size):
    """inspect + every planned range; returns the rows read."""
    spec = ingest.inspect_input(path, bad_values=bad_values)
    if force_all:
        spec = ingest.inspect_input(path, features=spec.original_columns, bad_values=bad_values)
    reader = csv_reader.ReadCsvRange(spec.columns, spec.numeric, block_size, spec.bad_values)
    rows = 0
    for element in csv_reader.plan_ranges(path, split_size):
        rows += sum(out.num_rows for out in reader.process(element) if isinstance(out, pa.RecordBatch))
    return rows


def check_case(suffix, data, run):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "input" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        try:
            with time_limit(CASE_SECONDS):
                run(path)
        except UserError as exc:
            assert exc.message and "\n" not in exc.message
        except CaseTimeout:
            pytest.fail(f"reader hung on {data[:200]!r}")
        except Exception as exc:  # pylint: disable=broad-except
            pytest.fail(f"{type(exc).__name__}: {exc} on input {data[:300]!r}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    data=csv_inputs,
    bad_values=st.sampled_from(["error", "missing"]),
    force_all=st.booleans(),
    split_size=st.sampled_from([7, 50, 10**9]),
    block_size=st.sampled_from([64, 4096]),
)
def test_csv_reader_ends_in_a_result_or_a_user_error(data, bad_values, force_all, split_size, block_size):
    check_case(".csv", data, lambda p: read_csv_everything(p, bad_values, force_all, split_size, block_size))


def _record(payload: bytes) -> bytes:
    from apache_beam.io.tfrecordio import _TFRecordUtil

    crc = _TFRecordUtil._masked_crc32c  # pylint: disable=protected-access
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", crc(header)) + payload + struct.pack("<I", crc(payload))


def _example(value) -> bytes:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    feature = example.features.feature["x"]
    if isinstance(value, bytes):
        feature.bytes_list.value.append(value)
    elif isinstance(value, int):
        feature.int64_list.value.append(value)
    else:
        feature.float_list.value.append(value)
    return example.SerializeToString()


examples = st.lists(st.one_of(st.floats(width=32), st.integers(-2**63, 2**63 - 1), st.binary(max_size=8)), max_size=20)
valid_tfrecord = examples.map(lambda values: b"".join(_record(_example(v)) for v in values))
tfrecord_inputs = st.one_of(
    st.binary(max_size=2000),
    st.builds(apply, valid_tfrecord, mutations),
    valid_tfrecord.map(gzip.compress),
    st.binary(max_size=300).map(_record),  # well-framed records holding anything
)


def read_tfrecord_everything(path, bad_values):
    spec = ingest.inspect_input(path, bad_values=bad_values)
    decoder = tfrecord_reader.DecodeExamples(spec)
    decoder.setup()
    items = list(tfrecord_reader.read_tfrecord_file(path))
    return sum(out.num_rows for out in decoder.process(items) if isinstance(out, pa.RecordBatch))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=tfrecord_inputs, bad_values=st.sampled_from(["error", "missing"]))
def test_tfrecord_reader_ends_in_a_result_or_a_user_error(data, bad_values):
    check_case(".tfrecord", data, lambda p: read_tfrecord_everything(p, bad_values))
