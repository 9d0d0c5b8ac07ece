"""Column names as TensorFlow accepts them.

A raw column becomes a tf.Transform input, a `tf.train.Example` feature, and
a keyword argument of the exported serving signatures. `tf.function` renames
a parameter that is not a Python identifier (`fare ($)` -> `fare____`,
`1st` -> `arg_1st`, `a.b` and `a-b` both -> `a_b`, then fails on the
collision) and rejects a Python keyword (`class`, `None`) outright. normpipe
renames first, so the names in statistics.json, in the transform graph and
in the signatures are the same:

  every character outside [A-Za-z0-9_] becomes `_`;
  a name that then does not start with an ASCII letter, or is a Python
  keyword, gets the prefix `f_`.

A valid name is unchanged. Two columns that end with the same name are a
`UserError` naming both.
"""

import keyword
import re
from typing import Dict, Iterable, Optional, Sequence, Tuple

from normpipe.core.errors import UserError

_INVALID = re.compile(r"[^A-Za-z0-9_]")
PREFIX = "f_"
# The transform graph's one input holding every feature (see ingest.py): a
# name no column may take.
MATRIX_INPUT = "normpipe_feature_matrix"


def sanitize(name: str) -> str:
    """The TensorFlow-safe form of one column name (see the module docstring)."""
    safe = _INVALID.sub("_", name)
    if not safe[:1].isascii() or not safe[:1].isalpha() or keyword.iskeyword(safe):
        safe = PREFIX + safe
    return safe


def sanitize_columns(path: str, names: Sequence[str]) -> Tuple[str, ...]:
    """Sanitized names for a header, in order; a collision is a UserError."""
    seen: Dict[str, str] = {}
    result = []
    for name in names:
        safe = sanitize(name)
        if safe in seen:
            raise UserError(
                f"{path}: columns {seen[safe]!r} and {name!r} both become {safe!r} as TensorFlow "
                "names; rename one of them"
            )
        seen[safe] = name
        result.append(safe)
    return tuple(result)


def renamed(originals: Sequence[str], names: Sequence[str]) -> Dict[str, str]:
    """{original: sanitized} for the columns whose name changed."""
    return {o: n for o, n in zip(originals, names) if o != n}


def resolve(flag: str, given: Optional[Iterable[str]], originals: Sequence[str], names: Sequence[str]):
    """Maps names given on the command line to sanitized column names.

    A flag may name a column as it is written in the header or as it was
    renamed; the two cannot be ambiguous, since a sanitized name is never a
    different column's original name (that would be a collision). A name
    that is neither is a UserError listing the columns.
    """
    if given is None:
        return None
    lookup = dict(zip(originals, names))
    lookup.update((n, n) for n in names)
    result = []
    for name in given:
        if name not in lookup:
            raise UserError(f"{flag}: no column {name!r} (columns: {', '.join(originals)})")
        result.append(lookup[name])
    return tuple(result)


def check_output_names(features: Sequence[str], label: Optional[str], suffixes: Sequence[str], original=str) -> None:
    """Refuses a column that would share a name with a graph output.

    The transform graph emits `<feature><suffix>` per normalized feature
    (`a_z`, `a_01`), the label under its own name, and internal outputs named
    `__...__`. A label or a raw feature with one of those names (`--label a_z`
    beside a feature `a`) would overwrite or shadow an output, so it is a
    UserError naming both columns. `original` maps a name to the header's.
    """
    outputs = {feature + suffix: feature for feature in features for suffix in suffixes}
    candidates = ([("--label", label)] if label else []) + [("feature", f) for f in features]
    for role, name in candidates:
        if name in outputs:
            raise UserError(
                f"{role} {original(name)!r} has the name of the normalized output of feature "
                f"{original(outputs[name])!r} ({outputs[name]} + {name[len(outputs[name]):]!r}); rename the column "
                "or leave one of them out with --features"
            )
        if name.startswith("__") and name.endswith("__"):
            raise UserError(f"{role} {original(name)!r}: names of the form __x__ are the graph's internal outputs")
