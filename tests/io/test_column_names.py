"""column_names: TensorFlow-safe column names and the flags that name them."""

import inspect
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow.core.function.polymorphism.function_type import sanitize_arg_name

from normpipe.core.errors import UserError
from normpipe.io import column_names


@pytest.mark.parametrize(
    "name, expected",
    [
        ("fare", "fare"),
        ("trip_start_timestamp", "trip_start_timestamp"),
        ("fare ($)", "fare____"),
        ("1st", "f_1st"),
        ("a b", "a_b"),
        ("a.b", "a_b"),
        ("a-b", "a_b"),
        ("_private", "f__private"),
        ("class", "f_class"),
        ("None", "f_None"),
        ("température", "temp_rature"),
        ("é", "f__"),
    ],
)
def test_sanitize(name, expected):
    assert column_names.sanitize(name) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_sanitized_names_are_accepted_unchanged_by_tf_function(name):
    """tf.function renames a parameter it cannot use; ours must be fixed points."""
    safe = column_names.sanitize(name)
    assert sanitize_arg_name(safe) == safe
    inspect.Parameter(safe, inspect.Parameter.KEYWORD_ONLY)  # no keyword, an identifier
    assert set(safe) <= set(string.ascii_letters + string.digits + "_")
    if column_names.sanitize(safe) != safe:
        pytest.fail(f"not idempotent: {name!r} -> {safe!r}")


def test_collision_names_both_columns():
    with pytest.raises(UserError, match=r"columns 'a b' and 'a_b' both become 'a_b'") as err:
        column_names.sanitize_columns("f.csv", ["x", "a b", "a_b"])
    assert err.value.message.startswith("f.csv: ")


def test_resolve_accepts_the_header_name_or_the_sanitized_name():
    originals, names = ("fare ($)", "1st", "x"), ("fare____", "f_1st", "x")
    assert column_names.resolve("--features", ["fare ($)", "f_1st", "x"], originals, names) == names
    assert column_names.resolve("--features", None, originals, names) is None
    with pytest.raises(UserError, match=r"--label: no column 'fare' \(columns: fare \(\$\), 1st, x\)"):
        column_names.resolve("--label", ["fare"], originals, names)


def test_renamed_lists_only_changed_names():
    assert column_names.renamed(("a b", "c"), ("a_b", "c")) == {"a b": "a_b"}
