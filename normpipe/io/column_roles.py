"""Which role each column plays: numeric feature, label, category, or left alone.

`assign_roles` takes the columns' names and types (from a CSV sample, a
Parquet schema, or a sample of tf.train.Examples) and the user's
--features, --label and --categorical, and returns the `Roles` an InputSpec
is built from, or a UserError naming the flag and the column.
"""

import collections
import dataclasses
from typing import Optional, Tuple

import pyarrow as pa

from normpipe.core.errors import UserError
from normpipe.io import column_names


@dataclasses.dataclass(frozen=True)
class Roles:
    features: Tuple[str, ...]
    strings: Tuple[str, ...]
    label: Optional[str]
    string_label: bool
    categorical: Tuple[str, ...]
    codes: Tuple[str, ...]


def is_text_type(t: pa.DataType) -> bool:
    """A column type read as text: string, binary, or a dictionary of them."""
    value_type = t.value_type if pa.types.is_dictionary(t) else t
    return _is_utf8_type(value_type) or pa.types.is_binary(value_type) or pa.types.is_large_binary(value_type)


def _is_utf8_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def assign_roles(files, fmt, columns, originals, inferred, features, label, types, categorical=None, mostly=()) -> Roles:
    """The columns' roles (see the module docstring); `inferred`: the numeric columns."""
    numeric = set(inferred)
    strings = tuple(n for n in columns if n not in numeric)
    shown = dict(zip(columns, originals))
    if label is not None:
        (label,) = column_names.resolve("--label", [label], originals, columns)
        if label in strings and not is_text_type(types[label]):
            raise UserError(f"--label {shown[label]!r}: column is neither numeric nor text (type {types[label]})")
    features = column_names.resolve("--features", features, originals, columns)
    if features:
        twice = sorted(shown[n] for n, k in collections.Counter(features).items() if k > 1)
        if twice:
            raise UserError(f"--features: column {twice[0]!r} is listed twice")
        string_set = set(strings)
        for name in features:
            if name in string_set and not pa.types.is_string(types[name]):
                raise UserError(f"--features: column {shown[name]!r} is not numeric (type {types[name]})")
        chosen = tuple(n for n in features if n != label)
        chosen_set = set(chosen)
        strings = tuple(n for n in strings if n not in chosen_set)
    else:
        chosen = tuple(n for n in inferred if n != label)
    string_label = label is not None and label in strings
    strings = tuple(n for n in strings if n != label)
    # a tf.train.Example's bytes_list is text by convention; a CSV or Parquet column says whether it is UTF-8
    text = is_text_type if fmt == "tfrecord" else _is_utf8_type
    categories = _categories(categorical, columns, originals, shown, strings, numeric, types, label, features, mostly,
                             text)
    codes = tuple(n for n in categories if n in numeric)
    chosen = tuple(n for n in chosen if n not in set(categories))
    if not chosen:
        listed = ", ".join(shown[n] for n in strings + categories)
        raise UserError(f"{files[0]}: no numeric feature columns found (string or categorical columns: {listed})")
    strings = tuple(n for n in strings if n not in set(categories))
    return Roles(chosen, strings, label, string_label, categories, codes)


def _categories(categorical, columns, originals, shown, strings, numeric, types, label, features, mostly, text):
    """The categorical columns: `categorical` (--categorical) checked, or by
    default every text column that is not the label, a listed feature, or
    mostly numbers."""
    if categorical is None:  # UTF-8 text only: other bytes (a Latin-1 file, say) are left alone unless named
        return tuple(n for n in strings if text(types[n]) and n not in set(mostly))
    chosen = column_names.resolve("--categorical", categorical, originals, columns) or ()
    twice = sorted(shown[n] for n, k in collections.Counter(chosen).items() if k > 1)
    if twice:
        raise UserError(f"--categorical: column {twice[0]!r} is listed twice")
    for name in chosen:
        if name == label:
            raise UserError(f"--categorical: column {shown[name]!r} is the label")
        if name in set(features or ()):
            raise UserError(f"--categorical: column {shown[name]!r} is also listed in --features")
        if name not in numeric and not is_text_type(types[name]):
            raise UserError(f"--categorical: column {shown[name]!r} is neither text nor numbers (type {types[name]})")
    return tuple(chosen)
