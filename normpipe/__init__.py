"""normpipe: full-dataset feature normalization with Apache Beam and
tf.Transform, the same in training and in serving.

The public API (each name is imported on first use, so `import normpipe`
stays cheap and the command line starts before TensorFlow is loaded):

  Keras 3 layers      BatchZScore, BatchMinMax (the per-batch recipe),
                      LearnedNormalization, DatasetZScore, DatasetMinMax
  stages              ReadRecordBatches, inspect_input (Beam input),
                      AnalyzeStatistics, AnalyzeAndTransform (PTransforms),
                      TransformOptions, make_preprocessing_fn,
                      compute_statistics, transform (whole stages, as the
                      command line runs them)
  reading results     read_statistics(transform_dir), input_fn
  serving             export_model, export_normalization_model, verify

`normpipe.tfx` holds the preprocessing_fn and run_fn that TFX's Transform
and Trainer components name.
"""

import importlib

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS = {
    "BatchZScore": "normpipe.components.layers",
    "BatchMinMax": "normpipe.components.layers",
    "LearnedNormalization": "normpipe.components.layers",
    "DatasetZScore": "normpipe.components.layers",
    "DatasetMinMax": "normpipe.components.layers",
    "ReadRecordBatches": "normpipe.io.ingest",
    "inspect_input": "normpipe.io.ingest",
    "AnalyzeStatistics": "normpipe.components.statistics",
    "read_statistics": "normpipe.components.statistics",
    "AnalyzeAndTransform": "normpipe.components.transform",
    "TransformOptions": "normpipe.components.transform",
    "make_preprocessing_fn": "normpipe.components.transform",
    "input_fn": "normpipe.components.dataset",
    "export_model": "normpipe.serving.export",
    "export_normalization_model": "normpipe.serving.export",
    "verify": "normpipe.serving.verify",
    "compute_statistics": "normpipe.pipeline.api",
    "transform": "normpipe.pipeline.api",
    "train": "normpipe.pipeline.api",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'normpipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
