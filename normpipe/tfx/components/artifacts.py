"""The artifact types normpipe's TFX components write where TFX has none.

`ExampleStatistics` holds TFDV's DatasetFeatureStatisticsList protos, which
other components parse; normpipe's float64 statistics are a different
document, so they get a type of their own. Their type names are import
paths, `<namespace>.<Class>`, as Kubeflow Pipelines v2 requires of a custom
type (TFX's container entry point imports the class by that name):
`normpipe.NormalizationStatistics` resolves through normpipe's own lazy
attribute, so importing `normpipe` still needs no TFX.
"""

from tfx.types import artifact


class NormalizationStatistics(artifact.Artifact):
    """statistics.json: the float64 full-dataset statistics `normpipe stats` writes."""

    TYPE_NAME = "normpipe.NormalizationStatistics"


class NormalizationComparison(artifact.Artifact):
    """comparison.json, comparison.md, comparison.png and comparison.html:
    per-batch against full-dataset normalization, as `normpipe compare`
    writes them, and a self-contained page of the statistics and the comparison."""

    TYPE_NAME = "normpipe.NormalizationComparison"
