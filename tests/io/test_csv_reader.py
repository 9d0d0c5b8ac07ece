"""ReadCsvRange on bad input: bad values as missing, line numbers, long rows, encodings.

The reader is called directly (no pipeline): each case is fast.
"""

import gzip

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from normpipe.core.errors import UserError
from normpipe.io import csv_reader, ingest


def read(path, columns, numeric, split_size=10**9, block_size=4096, bad_values="error"):
    """(values per numeric column, summed bad-value counts) over every planned range."""
    reader = csv_reader.ReadCsvRange(columns, numeric, block_size=block_size, bad_values=bad_values)
    batches, counts = [], {}
    for element in csv_reader.plan_ranges(str(path), split_size):
        for out in reader.process(element):
            if isinstance(out, beam.pvalue.TaggedOutput):
                assert out.tag == csv_reader.BAD_VALUES_TAG
                counts = ingest.merge_counts([counts, out.value])
            else:
                batches.append(out)
    table = pa.Table.from_batches(batches) if batches else None
    values = {n: np.array([v[0] for v in table.column(n).to_pylist()]) if table else np.array([]) for n in numeric}
    return values, counts


def error_of(path, columns, numeric, **kwargs) -> str:
    with pytest.raises(UserError) as err:
        read(path, columns, numeric, **kwargs)
    return err.value.message


BAD_CELLS = {13: "abc", 57: "$3", 101: "inf", 150: "-Infinity", 180: "1e400", 230: "1_000", 299: "x\xff"}


def bad_values_file(tmp_path, quoted=False):
    """300 rows; column b holds a bad value at the rows in BAD_CELLS, a '1,5' if quoted."""
    lines = [b"a,b"]
    expected = []
    for i in range(300):
        cell = BAD_CELLS.get(i, repr(i * 0.5))
        lines.append(f"{i},".encode() + cell.encode("latin-1"))
        expected.append(np.nan if i in BAD_CELLS else i * 0.5)
    if quoted:
        lines[1 + 200] = b'200,"1,5"'
        expected[200] = np.nan
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, np.array(expected)


@pytest.mark.parametrize("split_size", [97, 1000, 10**9])
@pytest.mark.parametrize("block_size", [256, 4096])
def test_bad_values_as_missing_are_counted_once_and_no_row_is_lost(tmp_path, split_size, block_size):
    """The fast typed path fails mid-range; the lenient re-read skips rows already emitted."""
    path, expected = bad_values_file(tmp_path)
    values, counts = read(path, ["a", "b"], ["a", "b"], split_size, block_size, bad_values="missing")
    np.testing.assert_array_equal(values["a"], np.arange(300.0))
    np.testing.assert_array_equal(values["b"], expected)
    assert counts == {"b": len(BAD_CELLS)}


def test_bad_values_as_missing_in_a_quoted_file_and_gzip(tmp_path):
    path, expected = bad_values_file(tmp_path, quoted=True)
    values, counts = read(path, ["a", "b"], ["a", "b"], bad_values="missing")
    np.testing.assert_array_equal(values["b"], expected)
    assert counts == {"b": len(BAD_CELLS) + 1}
    zipped = tmp_path / "bad.csv.gz"
    zipped.write_bytes(gzip.compress(path.read_bytes()))
    values, counts = read(zipped, ["a", "b"], ["a", "b"], bad_values="missing")
    np.testing.assert_array_equal(values["b"], expected)
    assert counts == {"b": len(BAD_CELLS) + 1}


@pytest.mark.parametrize("split_size", [97, 10**9])
def test_default_names_the_first_bad_value_in_every_range(tmp_path, split_size):
    path, _ = bad_values_file(tmp_path)
    message = error_of(path, ["a", "b"], ["a", "b"], split_size=split_size)
    assert message.startswith(f"{path} line 15 column 'b': non-numeric value 'abc'"), message
    assert "--bad-values=missing" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"a,b\n1,2\n\n\n3,4\n5,x\n", "line 6 column 'b'"),  # blank lines count
        (b'a,b,s\n1,2,"two\nlines"\n3,x,y\n', "line 4 column 'b'"),  # a quoted newline counts
        (b'a,b,s\r\n1,2,"two\r\nlines"\r\n3,4,y\r\n5,6\r\n', "line 5: expected 3 fields, got 2"),
        (b"\xef\xbb\xbfa,b\r\n1,2\r\n3,x\r\n", "line 3 column 'b'"),  # BOM + CRLF
    ],
)
def test_line_numbers_are_physical_lines(tmp_path, content, expected):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    assert expected in error_of(path, ["a", "b", "s"][: content.split(b"\n")[0].count(b",") + 1], ["a", "b"])


def test_non_utf8_in_a_numeric_column_is_a_bad_value(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a,b\n1,2\n3,4\xe9\n")
    assert "line 3 column 'b': non-numeric value '4\\\\xe9'" in error_of(path, ["a", "b"], ["a", "b"])
    values, counts = read(path, ["a", "b"], ["a", "b"], bad_values="missing")
    np.testing.assert_array_equal(values["b"], [2.0, np.nan])
    assert counts == {"b": 1}


def test_non_utf8_in_a_string_column_is_left_alone(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"city,x\nZ\xfcrich,1\nGen\xe8ve,2\n")
    spec = ingest.inspect_input(str(path))
    assert spec.features == ("x",) and spec.strings == ("city",)
    values, _ = read(path, spec.columns, spec.numeric)
    np.testing.assert_array_equal(values["x"], [1.0, 2.0])


def test_non_utf8_header_is_a_user_error(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b"a\xff,b\n1,2\n")
    with pytest.raises(UserError, match=r"h.csv: header is not UTF-8 text"):
        ingest.inspect_input(str(path))


def test_bom_crlf_and_quoted_header_names(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b'\xef\xbb\xbf"fare ($)",b\r\n"1.5",2\r\n,"3"\r\n')
    spec = ingest.inspect_input(str(path), features=("fare ($)", "b"))
    assert spec.features == ("fare____", "b") and spec.renamed == {"fare ($)": "fare____"}
    values, _ = read(path, spec.columns, spec.numeric)
    np.testing.assert_array_equal(values["fare____"], [1.5, np.nan])
    np.testing.assert_array_equal(values["b"], [2.0, 3.0])


def test_quoted_fields_with_commas_crlf_and_newlines(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'note,x\r\n"a, b",1\r\n"two\r\nlines, and ""quotes""",2\r\n"",3\r\n')
    spec = ingest.inspect_input(str(path))
    assert spec.features == ("x",) and spec.categorical == ("note",)
    values, _ = read(path, spec.columns, spec.numeric, split_size=4)
    np.testing.assert_array_equal(values["x"], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("block_size", [csv_reader.DEFAULT_BLOCK_SIZE, 4096])
def test_one_megabyte_string_cell(tmp_path, block_size):
    """A row longer than the block grows the block instead of failing."""
    path = tmp_path / "long.csv"
    path.write_bytes(b"x,text,y\n1,short,2\n3," + b"z" * (1 << 20) + b",4\n5,short,6\n")
    spec = ingest.inspect_input(str(path))
    assert spec.features == ("x", "y")
    values, _ = read(path, spec.columns, spec.numeric, block_size=block_size)
    np.testing.assert_array_equal(values["x"], [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(values["y"], [2.0, 4.0, 6.0])


def test_row_longer_than_the_largest_block_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_reader, "MAX_BLOCK_SIZE", 16384)
    path = tmp_path / "long.csv"
    path.write_bytes(b"x,text\n1,a\n2," + b"z" * 100_000 + b"\n")
    message = error_of(path, ["x", "text"], ["x"], block_size=4096)
    assert message == f"{path}: a row is longer than 0.015625 MB, or a quote is never closed"


def test_inspect_names_the_line_of_a_ragged_row_in_the_sample(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"a,b\n1,2\n\n3\n")
    with pytest.raises(UserError, match=r"r.csv line 4: expected 2 fields, got 1: '3'"):
        ingest.inspect_input(str(path))


@pytest.mark.parametrize("cut", [lambda z: z[:-7], lambda z: z[: len(z) // 2], lambda z: z[:20] + bytes(100) + z[120:]])
def test_truncated_or_corrupt_gzip_csv_names_the_file(tmp_path, cut):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(cut(gzip.compress(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(50000)))))
    assert error_of(path, ["a", "b"], ["a", "b"]).startswith(f"{path}: cannot read: ")


def test_wide_rows_get_larger_blocks_and_read_the_same(tmp_path):
    assert csv_reader.block_size_for(8) == csv_reader.DEFAULT_BLOCK_SIZE
    assert csv_reader.block_size_for(3000) == 3000 * csv_reader.BLOCK_BYTES_PER_COLUMN
    assert csv_reader.block_size_for(10**6) == csv_reader.MAX_BLOCK_SIZE // 4
    from normpipe.io import ingest

    values = np.random.default_rng(4).normal(size=(300, 600))
    path = tmp_path / "wide.csv"
    with open(path, "w") as f:
        f.write(",".join(f"c{j}" for j in range(600)) + "\n")
        np.savetxt(f, values, delimiter=",", fmt="%.17g")
    spec = ingest.inspect_input(str(path))
    chunks = list(ingest.iter_columns(spec))
    assert len(chunks) == 1  # 600 columns: a 9.8 MB block holds the 3 MB file
    got = np.stack([chunks[0][f"c{j}"] for j in range(600)], axis=1)
    np.testing.assert_array_equal(got, values)
