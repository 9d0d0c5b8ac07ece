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
and Trainer components name, `normalize`, the same normalization as one call
inside a preprocessing_fn of one's own, and `normpipe.tfx.components` the
TFX components. `normpipe.NormalizationStatistics` and
`normpipe.NormalizationComparison` (their artifact types, which need TFX) are
here too, outside `__all__`: a Kubeflow Pipelines v2 container imports a
custom artifact class by its type name, `normpipe.<Class>`.
"""

import importlib

from normpipe.version import __version__

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
    "TransformOptions": "normpipe.components.preprocessing",
    "make_preprocessing_fn": "normpipe.components.preprocessing",
    "input_fn": "normpipe.components.dataset",
    "export_model": "normpipe.serving.export",
    "export_normalization_model": "normpipe.serving.export",
    "verify": "normpipe.serving.verify",
    "compute_statistics": "normpipe.pipeline.api",
    "transform": "normpipe.pipeline.api",
    "train": "normpipe.pipeline.api",
}

__all__ = [*sorted(_EXPORTS), "__version__"]  # noqa: PLE0604  (built from _EXPORTS, one source)
# TFX artifact types, by their type names (see the docstring); need TFX
_ARTIFACT_TYPES = {
    "NormalizationStatistics": "normpipe.tfx.components.artifacts",
    "NormalizationComparison": "normpipe.tfx.components.artifacts",
}


def __getattr__(name):
    module = _EXPORTS.get(name) or _ARTIFACT_TYPES.get(name)
    if module is None:
        raise AttributeError(f"module 'normpipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
