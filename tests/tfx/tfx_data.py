"""Data as TFX's CsvExampleGen and SchemaGen leave it, for the tests of
normpipe.tfx.normalize: tf.Examples (integer columns as int64_list, floats
as float_list, strings as bytes_list, a missing cell as an absent feature)
and a schema whose sometimes-missing columns are VarLen."""

import csv
import os

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

N = 600
INT_COLUMNS = ("row", "year", "timestamp")
STRING_COLUMNS = ("company",)
COMPANIES = ("Flash Cab", "Taxi Affiliation", "Sun Taxi")


def penguin_like(n=N, seed=5):
    """Measurements on different scales with missing values, an integer
    year, a large-offset integer timestamp, a string column and a target."""
    rng = np.random.default_rng(seed)
    columns = {
        "row": np.arange(n, dtype=np.float64),  # unique: aligns rows across outputs
        "year": rng.integers(2007, 2010, n).astype(np.float64),
        "timestamp": 1_400_000_000_000 + rng.integers(0, 1000, n).astype(np.float64),  # offset 1.4e12, spread 1e3
        "bill_mm": np.round(rng.normal(44, 5, n), 1),
        "mass_g": np.round(rng.normal(4200, 800, n)),
        "pressure": 1e5 + rng.normal(0, 1, n),  # float offset
    }
    columns["year"][rng.random(n) < 0.1] = np.nan
    columns["bill_mm"][rng.random(n) < 0.2] = np.nan
    columns["mass_g"][rng.random(n) < 0.05] = np.nan
    columns["target"] = 0.01 * np.nan_to_num(columns["mass_g"], nan=4200.0) + rng.normal(0, 1, n)
    for name in ("bill_mm", "mass_g", "pressure", "target"):  # float_list carries float32
        columns[name] = columns[name].astype(np.float32).astype(np.float64)
    # distinct frequencies: tf.Transform's vocabulary order is by count
    strings = {"company": rng.choice(np.array(COMPANIES, dtype=object), n, p=[0.55, 0.3, 0.15])}
    return columns, strings


def example(columns, strings, i, int_columns=INT_COLUMNS) -> tf.train.Example:
    """Row i as CsvExampleGen writes it; `int_columns` go in int64_list."""
    feature = {}
    for name, values in columns.items():
        v = values[i]
        if np.isnan(v):
            continue
        if name in int_columns:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
    for name, values in strings.items():
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[values[i].encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def schemagen_schema(columns, strings, int_columns=INT_COLUMNS) -> schema_pb2.Schema:
    """As SchemaGen infers it (infer_feature_shape=True): always-present
    columns fixed [1], the others VarLen."""
    schema = schema_pb2.Schema()
    for name, values in list(columns.items()) + list(strings.items()):
        feature = schema.feature.add(name=name)
        if name in strings:
            feature.type = schema_pb2.BYTES
        else:
            feature.type = schema_pb2.INT if name in int_columns else schema_pb2.FLOAT
        if name in strings or not np.isnan(values).any():
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add(size=1)
        else:
            feature.value_count.min = 1
            feature.value_count.max = 1
    return schema


def write_examples(path, columns, strings) -> None:
    n = len(next(iter(columns.values())))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(n):
            writer.write(example(columns, strings, i).SerializeToString())


def numpy_normalize(values, method):
    """The normalization in numpy float64: missing imputed with the mean,
    population std (ddof=0), 0 where the scale is 0 or nothing is present."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return np.zeros_like(values)
    imputed = np.where(np.isnan(values), present.mean(), values)
    if method == "zscore":
        offset, scale = present.mean(), present.std()
    else:
        offset, scale = present.min(), present.max() - present.min()
    if scale == 0:
        return np.zeros_like(values)
    return (imputed - offset) / scale


def numpy_vocabulary(values) -> list:
    """tf.Transform's vocabulary order: by descending count (no ties here)."""
    names, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return [str(names[i]) for i in np.argsort(-counts, kind="stable")]


def write_csv_rows(path, rows) -> list:
    """Writes dict rows as a CSV with a header at `path` (its directory made); returns the rows."""
    os.makedirs(os.path.dirname(path))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
