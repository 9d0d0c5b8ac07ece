"""normpipe.tfx.components without a pipeline run: what importing needs, and
the components' argument checks (the pipeline itself: test_tfx_components_pipeline.py)."""

import subprocess
import sys

import pytest

from tests.tfx.test_tfx_pipeline import tfx

if tfx is None:
    from tests.tfx.test_tfx_pipeline import _REASON
needs_tfx = pytest.mark.skipif(tfx is None, reason=_REASON if tfx is None else "")


def test_normpipe_tfx_imports_without_tfx():
    code = "import sys, normpipe.tfx; print(callable(normpipe.tfx.run_fn), 'tfx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False"]


def _channels():
    artifacts = tfx.types.standard_artifacts
    return (tfx.dsl.Channel(type=artifacts.Examples), tfx.dsl.Channel(type=artifacts.TransformGraph),
            tfx.dsl.Channel(type=artifacts.Model))


@needs_tfx
@pytest.mark.parametrize("arguments, message", [
    ({"method": "mean"}, "method must be one of"),
    ({"batch_sizes": []}, "batch_sizes must be positive"),
    ({"batch_sizes": [0, 8]}, "batch_sizes must be positive"),
    ({"splits": []}, "splits must be a non-empty list"),
])
def test_comparator_refuses_bad_arguments(arguments, message):
    from normpipe.tfx.components import NormalizationComparator

    examples, graph, _ = _channels()
    with pytest.raises(ValueError, match=message):
        NormalizationComparator(examples=examples, transform_graph=graph, **arguments)


@needs_tfx
@pytest.mark.parametrize("arguments, message", [
    ({"max_examples": 0}, "max_examples must be a positive integer"),
    ({"latency_p99_ms": -1.0}, "latency_p99_ms must be a positive number"),
])
def test_validator_refuses_bad_arguments(arguments, message):
    from normpipe.tfx.components import ServingSkewValidator

    examples, graph, model = _channels()
    with pytest.raises(ValueError, match=message):
        ServingSkewValidator(model=model, transform_graph=graph, examples=examples, **arguments)


@needs_tfx
def test_components_outputs_have_their_types():
    from normpipe.tfx.components import (
        NormalizationComparator,
        NormalizationComparison,
        NormalizationStatistics,
        ServingSkewValidator,
    )

    examples, graph, model = _channels()
    comparator = NormalizationComparator(examples=examples, transform_graph=graph, batch_sizes=[1, 4])
    validator = ServingSkewValidator(model=model, transform_graph=graph, examples=examples)
    assert comparator.outputs["statistics"].type is NormalizationStatistics
    assert comparator.outputs["comparison"].type is NormalizationComparison
    assert validator.outputs["blessing"].type is tfx.types.standard_artifacts.InfraBlessing
    assert comparator.exec_properties["batch_sizes"] == [1, 4]
    assert validator.exec_properties["split"] == "eval"
