"""ServingSkewValidator: the Trainer's model loaded as TF Serving loads it, checked on real examples.

    validator = ServingSkewValidator(
        model=trainer.outputs["model"],
        transform_graph=transform.outputs["transform_graph"],
        examples=example_gen.outputs["examples"],  # its eval split
        latency_p99_ms=50.0)
    pusher = Pusher(model=trainer.outputs["model"], infra_blessing=validator.outputs["blessing"], ...)

It loads Format-Serving/ of the model artifact with the TF1 session loader
(no server, no Docker) and runs the checks of normpipe.serving.example_skew on
up to `max_examples` examples of `split`: signatures and method names, warmup
requests, a one-row and an all-missing request, the served
transform_features against `transform_graph` applied outside the model to the
same raw examples, the tf.Example signatures against serving_default, and
(with a budget) p50/p99 latency at batch 1.

Output `blessing` (InfraBlessing), as TFX's InfraValidator writes it: custom
property `blessed` 1 and an INFRA_BLESSED file when every check passed, else
`blessed` 0 and INFRA_NOT_BLESSED; `checks.txt` holds the checks' lines.
Pusher given it as `infra_blessing` pushes only a blessed model.
"""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from normpipe.tfx.components.serving_skew_validator import executor


class ServingSkewValidatorSpec(types.ComponentSpec):
    """Inputs, parameters and outputs of ServingSkewValidator."""

    PARAMETERS = {
        "split": ExecutionParameter(type=str, optional=True),
        "max_examples": ExecutionParameter(type=int, optional=True),
        "latency_p50_ms": ExecutionParameter(type=float, optional=True),
        "latency_p99_ms": ExecutionParameter(type=float, optional=True),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class ServingSkewValidator(base_component.BaseComponent):
    """Blesses a model whose served graph transforms as training did.

    Args:
      model: Model from Trainer with normpipe.tfx.run_fn (a normpipe export
        under Format-Serving/).
      transform_graph: the TransformGraph the model was trained behind.
      examples: Examples with raw tf.Examples to check on.
      split: the split of `examples` read (default "eval").
      max_examples: how many of its examples (default 1000).
      latency_p50_ms, latency_p99_ms: budgets for one-row requests; without
        either, the latency line reports the figures and does not gate.
    """

    SPEC_CLASS = ServingSkewValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, transform_graph: types.BaseChannel, examples: types.BaseChannel,
                 split: str = "eval", max_examples: int = executor.MAX_EXAMPLES,
                 latency_p50_ms: Optional[float] = None, latency_p99_ms: Optional[float] = None):
        if not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be a positive integer. Received: {max_examples!r}")
        for name, value in (("latency_p50_ms", latency_p50_ms), ("latency_p99_ms", latency_p99_ms)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number of milliseconds. Received: {value!r}")
        super().__init__(spec=ServingSkewValidatorSpec(
            model=model, transform_graph=transform_graph, examples=examples, split=split, max_examples=max_examples,
            latency_p50_ms=None if latency_p50_ms is None else float(latency_p50_ms),
            latency_p99_ms=None if latency_p99_ms is None else float(latency_p99_ms),
            blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
