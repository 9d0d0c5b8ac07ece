"""inspect_input: column names, flags that name columns, and type inference."""

import numpy as np
import pytest
import tensorflow as tf

from normpipe.core.errors import UserError
from normpipe.io import ingest
from tests.conftest import TAXI_CSV


def csv_file(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_invalid_tensorflow_names_are_renamed_and_recorded(tmp_path):
    path = csv_file(tmp_path, "fare ($),1st,a b,ok\n1.5,1,2,3\n2.5,2,3,4\n")
    spec = ingest.inspect_input(path)
    assert spec.columns == ("fare____", "f_1st", "a_b", "ok")
    assert spec.original_columns == ("fare ($)", "1st", "a b", "ok")
    assert spec.features == spec.columns
    assert spec.renamed == {"fare ($)": "fare____", "1st": "f_1st", "a b": "a_b"}
    assert spec.original_name("a_b") == "a b" and spec.original_name("ok") == "ok"


def test_flags_take_the_header_name_or_the_new_name(tmp_path):
    path = csv_file(tmp_path, "fare ($),1st,a b\n1.5,1,2\n2.5,2,3\n")
    spec = ingest.inspect_input(path, features=("fare ($)", "f_1st"), label="a b")
    assert spec.features == ("fare____", "f_1st") and spec.label == "a_b"
    assert spec.numeric == ("fare____", "f_1st", "a_b")


def test_two_columns_with_the_same_new_name_are_a_user_error(tmp_path):
    path = csv_file(tmp_path, "a b,a_b,c\n1,2,3\n")
    with pytest.raises(UserError, match=r"columns 'a b' and 'a_b' both become 'a_b'"):
        ingest.inspect_input(path)


@pytest.mark.parametrize(
    "features, label, expected",
    [
        (("fare", "nope"), None, r"--features: no column 'nope' \(columns: pickup_community_area, fare, "),
        (None, "nope", r"--label: no column 'nope'"),
        (("fare",), "fare", r"no numeric feature columns found"),  # the label is never a feature
    ],
)
def test_feature_and_label_flag_errors(features, label, expected):
    with pytest.raises(UserError, match=expected):
        ingest.inspect_input(TAXI_CSV, features=features, label=label)


def test_features_may_name_a_text_column_whose_values_are_checked_when_read(tmp_path):
    """A column inferred as text can be forced numeric; a bad value is then found by the reader."""
    spec = ingest.inspect_input(TAXI_CSV, features=("fare", "company"))
    assert spec.features == ("fare", "company") and "company" not in spec.strings


def test_features_naming_a_non_text_non_numeric_column_is_an_error(tmp_path):
    path = csv_file(tmp_path, "day,x\n2013-01-01,1\n2013-01-02,2\n")
    with pytest.raises(UserError, match=r"--features: column 'day' is not numeric \(type date32"):
        ingest.inspect_input(path, features=("day", "x"))


def test_mostly_numeric_column_is_numeric_only_with_bad_values_missing(tmp_path):
    path = csv_file(tmp_path, "x,y,s\n1,2,a\n3,oops,b\n5,6,c\n7,8,d\n")
    strict = ingest.inspect_input(path)
    assert strict.features == ("x",) and strict.mostly_numeric == ("y",)
    lenient = ingest.inspect_input(path, bad_values="missing")
    assert lenient.features == ("x", "y") and lenient.categorical == ("s",) and lenient.mostly_numeric == ()


def test_subnormal_and_huge_features_get_power_of_two_scales(tmp_path):
    path = csv_file(tmp_path, "tiny,huge,plain\n1e-310,1e300,1\n3e-310,-1e300,2\n")
    spec = ingest.inspect_input(path)
    assert spec.exponents[2] == 0
    assert 0.5 <= np.ldexp(1e-310, spec.exponents[0]) < 2
    assert 0.25 <= np.ldexp(1e300, spec.exponents[1]) < 1


def _write_examples(path, rows):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            feature = {}
            for name, value in row.items():
                if isinstance(value, bytes):
                    feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                else:
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_tfrecord_names_and_flags(tmp_path):
    path = tmp_path / "d.tfrecord"
    _write_examples(path, [{"fare ($)": 1.5, "s": b"a", "y": 1.0}, {"fare ($)": 2.5, "s": b"b", "y": 0.0}])
    spec = ingest.inspect_input(str(path), label="y")
    assert spec.features == ("fare____",) and spec.renamed == {"fare ($)": "fare____"}
    with pytest.raises(UserError, match=r"--features: column 's' is not numeric \(type binary\)"):
        ingest.inspect_input(str(path), features=("s",))
    assert spec.categorical == ("s",)  # a bytes_list feature is a category by default
    labelled = ingest.inspect_input(str(path), label="s")  # a string label: class names
    assert labelled.string_label and labelled.read_as_text == ("s",) and labelled.categorical == ()


def test_unknown_bad_values_policy_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"--bad-values must be 'error' or 'missing'. Received: 'skip'"):
        ingest.inspect_input(TAXI_CSV, bad_values="skip")


def test_features_listing_a_column_twice_under_either_name(tmp_path):
    path = csv_file(tmp_path, "fare ($),x\n1,2\n")
    with pytest.raises(UserError, match=r"--features: column 'fare \(\$\)' is listed twice"):
        ingest.inspect_input(path, features=("fare ($)", "fare____"))


def test_integers_beyond_2_to_the_53_are_numeric(tmp_path):
    path = csv_file(tmp_path, "id,x\n1152921504606846977,1\n1152921504606846979,2\n")
    spec = ingest.inspect_input(path)
    assert spec.features == ("id", "x")



@pytest.mark.parametrize("text", [b"a,b", b"a,b\r", b"\xef\xbb\xbfa,b"], ids=["no_newline", "cr_only", "bom"])
def test_header_only_without_final_newline_is_header_only(tmp_path, text):
    path = tmp_path / "h.csv"
    path.write_bytes(text)
    spec = ingest.inspect_input(str(path))  # the header is read: a, b
    assert spec.columns == ("a", "b")
    from tests.io.test_reader_fuzz import read_csv_everything  # pylint: disable=import-outside-toplevel

    assert read_csv_everything(str(path), "error", False, 10**6, 64) == 0  # and no rows


@pytest.mark.parametrize("data", [b"", b"\n\n"], ids=["empty", "blank_lines"])
def test_empty_file_is_still_empty(tmp_path, data):
    path = tmp_path / "e.csv"
    path.write_bytes(data)
    with pytest.raises(UserError, match="file is empty"):
        ingest.inspect_input(str(path))


def test_parquet_file_given_as_csv_is_named_in_one_line(tmp_path):
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    path = tmp_path / "data.csv"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3, 4]}), str(path))
    assert path.read_bytes()[:4] == b"PAR1"
    with pytest.raises(UserError) as error:
        ingest.inspect_input(str(path))
    assert error.value.message == f"{path}: a Parquet file (it starts with PAR1), not CSV"
