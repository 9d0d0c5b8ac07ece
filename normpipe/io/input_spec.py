"""What to read: files, format, numeric columns, from a look at the input.

`inspect_input` expands the path, reads the header and a sample (the first
4 MB of the first CSV file, its first 1,000 tf.train.Examples, or the schema
and first 65,536 rows of the first Parquet file), types
the columns and returns a frozen `InputSpec` that the readers follow.
"""

import collections
import dataclasses
import functools
import os
import zlib
from typing import Dict, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from normpipe.core import exact_float
from normpipe.core.errors import UserError
from normpipe.io import column_names, column_roles, csv_lines, csv_reader, csv_values, parquet_reader, tfrecord_reader
from normpipe.io.input_files import expand_input

FORMATS = ("csv", "tfrecord", "parquet")
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".tfr")
_INFER_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What to read: files, their format, and which columns are numeric.

    Column names are TensorFlow-safe (see column_names.py); `original_columns`
    holds the header's own names in the same order. `numeric` lists the
    columns parsed as float64 (features, then the label if any); `strings`
    the other columns, reported and left alone; `mostly_numeric` the string
    columns whose sample is mostly numbers. Per feature, `exponents` (a
    power-of-two scale, see exact_float.py) keep the transform graph's
    arithmetic clear of TensorFlow's flush-to-zero; no statistic depends on
    them. `bad_values` is "error" or "missing" (see
    csv_values.py).

    `categorical` lists the columns read as categories: text columns, and
    numeric ones named by `--categorical` (`codes`, such as an area number
    or an hour, read as numbers and then written as their decimal text:
    `ingest.code_text`). Every later stage sees a category as text, missing
    as "".
    """

    files: Tuple[str, ...]
    format: str
    columns: Tuple[str, ...]
    features: Tuple[str, ...]
    strings: Tuple[str, ...] = ()
    label: Optional[str] = None
    block_size: Optional[int] = None  # CSV block size; None: csv_reader.block_size_for the columns
    int64_columns: Tuple[str, ...] = ()  # tf.train.Example features held as int64_list
    exponents: Tuple[int, ...] = ()
    original_columns: Tuple[str, ...] = ()
    bad_values: str = "error"
    mostly_numeric: Tuple[str, ...] = ()
    string_label: bool = False  # a label read as text (a class name), not in `numeric`
    categorical: Tuple[str, ...] = ()  # category columns (see the class docstring), in input order
    codes: Tuple[str, ...] = ()  # the categorical columns whose values are numbers (integer codes)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be 'csv', 'tfrecord' or 'parquet'. Received: {self.format!r}")
        if not self.files:
            raise ValueError("files must not be empty. Received: ()")
        if self.bad_values not in csv_reader.BAD_VALUES:
            raise ValueError(f"bad_values must be 'error' or 'missing'. Received: {self.bad_values!r}")
        if self.original_columns and len(self.original_columns) != len(self.columns):
            raise ValueError(f"original_columns must match columns. Received: {self.original_columns!r}")
        if column_names.MATRIX_INPUT in self.numeric:
            raise UserError(f"column {self.original_name(column_names.MATRIX_INPUT)!r}: the name is the transform "
                            "graph's own input; rename the column")

    @property
    def numeric(self) -> Tuple[str, ...]:
        return self.features + ((self.label,) if self.label and not self.string_label else ())

    @property
    def read_as_numbers(self) -> Tuple[str, ...]:
        """What the readers parse as float64: the numeric columns, then the codes."""
        return self.numeric + self.codes

    @property
    def read_as_text(self) -> Tuple[str, ...]:
        """What the readers emit as text: the text categories, then a string label."""
        return tuple(n for n in self.categorical if n not in set(self.codes)) + (
            (self.label,) if self.string_label else ())

    @property
    def renamed(self) -> Dict[str, str]:
        """{name in the input: TensorFlow-safe name} for the renamed columns."""
        return column_names.renamed(self.original_columns, self.columns)

    def original_name(self, name: str) -> str:
        """The input's own name of a column."""
        return self._originals.get(name, name)

    @functools.cached_property
    def _originals(self) -> Dict[str, str]:
        # built once: a lookup per column must not cost a pass over the columns
        return dict(zip(self.columns, self.original_columns))


def detect_format(files, requested: Optional[str] = None) -> str:
    if requested:
        return requested
    if all(f.lower().endswith(TFRECORD_SUFFIXES) for f in files):
        return "tfrecord"
    if all(f.lower().endswith(parquet_reader.PARQUET_SUFFIXES) for f in files):
        return "parquet"
    return "csv"


def _check_header(path, names):
    for i, name in enumerate(names):
        if not name.strip():
            raise UserError(f"{path}: header column {i + 1} has an empty name")
    dupes = sorted(n for n, k in collections.Counter(names).items() if k > 1)
    if dupes:
        raise UserError(f"{path}: header has duplicate column names: {', '.join(dupes)}")


PARQUET_MAGIC = b"PAR1"


def _csv_sample(path: str) -> pa.Table:
    """The first few MB of a CSV, parsed with pyarrow's type inference.

    A first row longer than the block grows the block, as the reader does.
    """
    if csv_lines.is_local(path) and os.path.getsize(path) == 0:
        raise UserError(f"{path}: file is empty (expected a header row)")
    try:
        with csv_lines.open_bytes(path) as f:
            head = f.read(_INFER_BYTES)
    except (OSError, EOFError, zlib.error) as exc:  # e.g. a broken gzip stream
        raise UserError(f"{path}: cannot read: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}") from None
    if head[:4] == PARQUET_MAGIC:
        raise UserError(f"{path}: a Parquet file (it starts with PAR1), not CSV")
    block_size = _INFER_BYTES
    while True:
        try:
            return _read_sample(path, block_size)
        except pa.ArrowInvalid as exc:
            message = str(exc).splitlines()[0] if str(exc) else "invalid CSV"
            if "straddling" in message and block_size < csv_reader.MAX_BLOCK_SIZE:
                block_size *= 4
                continue
            if "Empty CSV file" in message:
                if head.strip() and len(head) < _INFER_BYTES:
                    return _header_only(path, head)
                raise UserError(f"{path}: file is empty (expected a header row)") from None
            error = csv_reader.parse_error(path, 0, exc)
            if "cannot parse CSV" in error.message:
                raise UserError(f"{path}: cannot read CSV header and first rows: {message[:200]}") from None
            raise error from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: header is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except (OSError, EOFError) as exc:  # e.g. a broken gzip stream
            raise UserError(f"{path}: cannot read: {str(exc).splitlines()[0][:200]}") from None


def _header_only(path: str, head: bytes) -> pa.Table:
    """The empty table of a header without a final newline (pyarrow calls
    such a file empty)."""
    try:
        head.decode("utf-8")
        return pacsv.read_csv(pa.BufferReader(head + b"\n"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: header is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except pa.ArrowInvalid as exc:
        raise UserError(f"{path}: cannot read CSV header: {str(exc).splitlines()[0][:200]}") from None


def _read_sample(path: str, block_size: int) -> pa.Table:
    if csv_lines.is_local(path):
        stream = pa.input_stream(path, compression="gzip" if csv_lines.is_gzip(path) else None)
    else:
        stream = pa.PythonFile(csv_lines.open_bytes(path), mode="r")
    with stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )
        _ = reader.schema.names  # decodes the header: not UTF-8 fails here, not later
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return reader.schema.empty_table()
        return pa.Table.from_batches([batch])


def _sample_values(column: pa.Array) -> np.ndarray:
    """The finite numbers among a sample column's values, as float64."""
    values, _ = csv_values.lenient_float(column)
    array = values.to_numpy(zero_copy_only=False).astype(np.float64)
    return array[np.isfinite(array)]


def _mostly_numeric(column: pa.Array) -> bool:
    """More than half of the present values are finite numbers."""
    if not (pa.types.is_string(column.type) or pa.types.is_binary(column.type)):
        return False
    present = len(column) - column.null_count
    return present > 0 and _sample_values(column).size * 2 > present


def _is_numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def inspect_csv(files, features=None, label=None, bad_values="error", categorical=None) -> InputSpec:
    """Reads the header and a sample of the first file to type the columns.

    A column is numeric when pyarrow infers an integer, float or all-null
    type for the sample, or, with bad_values="missing", when most of its
    present sample values are numbers. `features` overrides the inference
    (a bad value in a listed column is then found when the data is read).
    """
    sample = _csv_sample(files[0])
    originals = tuple(sample.column_names)
    _check_header(files[0], list(originals))
    for other in files[1:]:
        other_columns = tuple(_csv_sample(other).column_names)
        if other_columns != originals:
            raise UserError(f"{other}: header differs from {files[0]}'s: {','.join(other_columns)}")
    columns = column_names.sanitize_columns(files[0], originals)
    samples = dict(zip(columns, (sample.column(i).combine_chunks() for i in range(len(columns)))))
    types = {name: samples[name].type for name in columns}
    mostly = tuple(n for n in columns if _mostly_numeric(samples[n]))
    inferred = [n for n in columns if _is_numeric_type(types[n]) or (bad_values == "missing" and n in mostly)]
    spec = _make_spec(files, "csv", columns, originals, inferred, features, label, types, bad_values, categorical,
                      mostly)
    # As TFX's CsvExampleGen writes them: integer columns as int64_list.
    ints = tuple(n for n in spec.read_as_numbers if pa.types.is_integer(types[n]))
    spec = dataclasses.replace(spec, mostly_numeric=tuple(n for n in mostly if n in spec.strings), int64_columns=ints)
    return _with_scales(spec, {n: _sample_values(samples[n]) for n in spec.features})


def _with_scales(spec: InputSpec, samples) -> InputSpec:
    """Adds per-feature power-of-two exponents, chosen around the sample's median."""
    exponents = tuple(exact_float.choose_exponent(samples[n], float(np.median(samples[n])) if samples[n].size else 0.0)
                      for n in spec.features)
    return dataclasses.replace(spec, exponents=exponents)


def _make_spec(files, fmt, columns, originals, inferred, features, label, types, bad_values, categorical=None,
               mostly=()) -> InputSpec:
    roles = column_roles.assign_roles(files, fmt, columns, originals, inferred, features, label, types, categorical,
                                      mostly)
    return InputSpec(tuple(files), fmt, tuple(columns), roles.features, roles.strings, roles.label,
                     original_columns=tuple(originals), bad_values=bad_values, string_label=roles.string_label,
                     categorical=roles.categorical, codes=roles.codes)


def inspect_tfrecord(files, features=None, label=None, bad_values="error", categorical=None,
                     sample_size=1000) -> InputSpec:
    """Types the features of a sample of tf.train.Examples from the first file."""
    kinds, samples = tfrecord_reader.sample_examples(files[0], sample_size)
    originals = tuple(sorted(kinds))
    columns = column_names.sanitize_columns(files[0], originals)
    kinds = dict(zip(columns, (kinds[o] for o in originals)))
    samples = {c: np.asarray(samples.get(o, []), np.float64) for c, o in zip(columns, originals)}
    inferred = [n for n in columns if kinds[n] in ("float_list", "int64_list")]
    types = {n: (pa.float64() if n in inferred else pa.binary()) for n in columns}
    spec = _make_spec(files, "tfrecord", columns, originals, inferred, features, label, types, bad_values,
                      categorical)
    ints = tuple(n for n in spec.read_as_numbers if kinds[n] == "int64_list")
    finite = {n: samples[n][np.isfinite(samples[n])] for n in spec.features}
    return _with_scales(dataclasses.replace(spec, int64_columns=ints), finite)


def inspect_parquet(files, features=None, label=None, bad_values="error", categorical=None) -> InputSpec:
    """Types the columns from the first Parquet file's schema; all files must share its column names.

    A column is numeric when its type is (integer, floating point, decimal or
    null); `--features` naming any other column is an error, as is `--label`.
    Scales come from the first file's first rows.
    """
    schema = parquet_reader.file_schema(files[0])
    originals = tuple(schema.names)
    _check_header(files[0], list(originals))
    for other in files[1:]:
        other_columns = tuple(parquet_reader.file_schema(other).names)
        if other_columns != originals:
            raise UserError(f"{other}: columns differ from {files[0]}'s: {','.join(other_columns)}")
    columns = column_names.sanitize_columns(files[0], originals)
    types = {n: schema.field(o).type for n, o in zip(columns, originals)}
    inferred = [n for n in columns if parquet_reader.is_numeric(types[n])]
    shown = dict(zip(columns, originals))
    for name in column_names.resolve("--features", features, originals, columns) or ():
        if name not in inferred:
            raise UserError(f"--features: column {shown[name]!r} is not numeric (type {types[name]})")
    spec = _make_spec(files, "parquet", columns, originals, inferred, features, label, types, bad_values,
                      categorical)
    spec = dataclasses.replace(spec, int64_columns=tuple(n for n in spec.codes if pa.types.is_integer(types[n])))
    sample = parquet_reader.sample_values(files[0], [shown[n] for n in spec.features])
    return _with_scales(spec, {n: sample[shown[n]][np.isfinite(sample[shown[n]])] for n in spec.features})


def inspect_input(path: str, fmt=None, features=None, label=None, bad_values="error", categorical=None) -> InputSpec:
    """Expands `path` and types its columns; see inspect_csv / inspect_tfrecord."""
    if bad_values not in csv_reader.BAD_VALUES:
        raise UserError(f"--bad-values must be 'error' or 'missing'. Received: {bad_values!r}")
    files = expand_input(path)
    fmt = detect_format(files, fmt)
    if fmt == "csv":
        return inspect_csv(files, features, label, bad_values, categorical)
    if fmt == "parquet":
        return inspect_parquet(files, features, label, bad_values, categorical)
    return inspect_tfrecord(files, features, label, bad_values, categorical)
