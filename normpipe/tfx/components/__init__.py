"""TFX 1.21 components: the per-batch comparison, and a serving-skew validator.

    comparator = NormalizationComparator(examples=example_gen.outputs["examples"],
                                         transform_graph=transform.outputs["transform_graph"])
    validator = ServingSkewValidator(model=trainer.outputs["model"],
                                     transform_graph=transform.outputs["transform_graph"],
                                     examples=example_gen.outputs["examples"])
    pusher = Pusher(model=trainer.outputs["model"], infra_blessing=validator.outputs["blessing"], ...)

Importing this package needs TFX; `normpipe.tfx` (preprocessing_fn, run_fn)
does not import it.

Layer: inside `normpipe.tfx`, on top; it may import every layer.
"""

from normpipe.tfx.components.artifacts import NormalizationComparison, NormalizationStatistics
from normpipe.tfx.components.normalization_comparator.component import NormalizationComparator
from normpipe.tfx.components.serving_skew_validator.component import ServingSkewValidator

__all__ = ["NormalizationComparator", "NormalizationComparison", "NormalizationStatistics", "ServingSkewValidator"]
