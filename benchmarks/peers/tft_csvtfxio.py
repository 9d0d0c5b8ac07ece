"""Peer: tf.Transform `AnalyzeDataset` over tfx-bsl's `CsvTFXIO`, DirectRunner.

Each column is a float32 `VarLenFeature` (a missing cell is an absent value,
skipped), analyzed with `tft.mean`, `tft.var` (population, ddof=0),
`tft.min` and `tft.max`: float32, one analyzer per statistic per feature, as
a TFT user writes it. The analyzer results are read back by running the
written transform graph on one row.

Prints one JSON line: {"method": "tft_csvtfxio", "features": {name: {mean,
std, min, max}}}.

Usage: python tft_csvtfxio.py FILE.csv WORK_DIR
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import csv_tfxio

STATS = ("mean", "var", "min", "max")


def make_preprocessing_fn(names):
    def preprocessing_fn(inputs):
        outputs = {}
        for name in names:
            x = inputs[name]
            rows = tf.shape(x, out_type=tf.int64)[0]
            for stat, value in zip(STATS, (tft.mean(x), tft.var(x), tft.min(x), tft.max(x))):
                outputs[f"{name}__{stat}"] = tf.fill([rows], value)
        return outputs

    return preprocessing_fn


def analyze(path: str, names, transform_dir: str) -> None:
    schema = schema_utils.schema_from_feature_spec({n: tf.io.VarLenFeature(tf.float32) for n in names})
    source = csv_tfxio.CsvTFXIO(path, column_names=names, schema=schema, skip_header_lines=1)
    options = PipelineOptions(["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=os.path.join(transform_dir, "tmp")):
        raw = p | "ReadCsv" >> source.BeamSource()
        transform_fn = (raw, source.TensorAdapterConfig()) | "Analyze" >> tft_beam.AnalyzeDataset(
            make_preprocessing_fn(names)
        )
        _ = transform_fn | "Write" >> tft_beam.WriteTransformFn(transform_dir)


def read_results(transform_dir: str, names) -> dict:
    output = tft.TFTransformOutput(transform_dir)
    row = {n: tf.sparse.from_dense(tf.constant([[1.0]], tf.float32)) for n in names}
    values = output.transform_raw_features(row)
    features = {}
    for name in names:
        got = {stat: float(np.asarray(values[f"{name}__{stat}"])[0]) for stat in STATS}
        got["std"] = float(np.sqrt(max(got.pop("var"), 0.0)))
        features[name] = got
    return features


def main(argv) -> int:
    path = argv[1]
    with open(path, encoding="utf-8") as f:
        names = f.readline().strip().split(",")
    with tempfile.TemporaryDirectory(dir=argv[2] if len(argv) > 2 else None) as work:
        analyze(path, names, work)
        features = read_results(work, names)
    print(json.dumps({"method": "tft_csvtfxio", "features": features}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
