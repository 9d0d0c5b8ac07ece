"""NormalizationComparator: full-dataset statistics and the per-batch comparison, as artifacts.

    comparator = NormalizationComparator(
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],  # normpipe.tfx.preprocessing_fn
        batch_sizes=[1, 8, 32, 128], seed=0, splits=["train"])

Outputs:
  statistics  (NormalizationStatistics) statistics.json, the document
              `normpipe stats` writes, computed by a Beam pipeline over the
              splits' tf.Examples
  comparison  (NormalizationComparison) comparison.json, comparison.md,
              comparison.png (as `normpipe compare` writes them) and
              comparison.html, a self-contained page of both

The Beam pipeline runs with the pipeline's (or the component's)
beam_pipeline_args. The comparison's reference is the transform graph's own
normalization of each row; statistics.json holds the statistics of the rows
read, which are the graph's when `splits` are those Transform analyzed
(TFX's default: train).
"""

from typing import List, Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from normpipe.components.compare import CompareOptions
from normpipe.tfx.components.artifacts import NormalizationComparison, NormalizationStatistics
from normpipe.tfx.components.normalization_comparator import executor

METHODS = ("zscore", "minmax", "both")


class NormalizationComparatorSpec(types.ComponentSpec):
    """Inputs, parameters and outputs of NormalizationComparator."""

    PARAMETERS = {
        "method": ExecutionParameter(type=str, optional=True),
        "batch_sizes": ExecutionParameter(type=List[int], optional=True),
        "seed": ExecutionParameter(type=int, optional=True),
        "splits": ExecutionParameter(type=List[str], optional=True),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
    }
    OUTPUTS = {
        "statistics": ChannelParameter(type=NormalizationStatistics),
        "comparison": ChannelParameter(type=NormalizationComparison),
    }


class NormalizationComparator(base_beam_component.BaseBeamComponent):
    """Per-batch (the Keras Lambda recipe's) against full-dataset normalization.

    Args:
      examples: Examples (tf.Examples in gzip TFRecords, as ExampleGen writes them).
      transform_graph: TransformGraph of normpipe's preprocessing_fn.
      method: "zscore", "minmax" or "both"; default: every method the graph computes.
      batch_sizes: the per-batch sizes compared (default normpipe compare's:
        1, 2, 8, 32, 128, 1024, 8192).
      seed: the shuffled order's seed.
      splits: the splits read (default ["train"]).
    """

    SPEC_CLASS = NormalizationComparatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel, method: Optional[str] = None,
                 batch_sizes: Optional[List[int]] = None, seed: int = 0, splits: Optional[List[str]] = None):
        if method is not None and method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}. Received: {method!r}")
        if batch_sizes is not None:
            CompareOptions(tuple(batch_sizes), seed)  # refuses an empty list or a size below 1
        if splits is not None and (not splits or not all(isinstance(s, str) and s for s in splits)):
            raise ValueError(f"splits must be a non-empty list of split names. Received: {splits!r}")
        super().__init__(spec=NormalizationComparatorSpec(
            examples=examples, transform_graph=transform_graph, method=method,
            batch_sizes=list(batch_sizes) if batch_sizes is not None else None, seed=seed,
            splits=list(splits) if splits is not None else None,
            statistics=types.Channel(type=NormalizationStatistics),
            comparison=types.Channel(type=NormalizationComparison)))
