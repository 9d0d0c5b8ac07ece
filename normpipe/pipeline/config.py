"""What the stages' configs share: one input spec and one export target.

Every stage reads its input the same way, so what to read is one frozen
dataclass, `InputConfig`, that each stage's config (StatsConfig,
TransformConfig, TrainConfig, RunConfig) holds as `input`; where a trained
or normalization-only model is published is another, `ExportConfig`. Every
config is built with keywords only.
"""

import dataclasses
from typing import Optional, Tuple

from normpipe.components.categories import VocabularyOptions

FORMATS = ("csv", "tfrecord", "parquet")
BAD_VALUES = ("error", "missing")
SERVING_INPUTS = ("auto", "named", "matrix")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InputConfig:
    """What to read.

    Args:
      path: a CSV, TFRecord or Parquet file, directory or glob; a URI works.
      format: "csv", "tfrecord" or "parquet"; None decides by file name.
      features: the numeric columns to normalize; None infers them.
      label: the target column, never normalized.
      bad_values: "error" stops at a non-numeric or infinite value in a
        numeric column; "missing" counts it as missing.
      categorical: the columns read as categories (text, or numbers such as
        an area code); None: every text column but the label; (): none.
      vocabulary: the categories' vocabulary options (top_k, min_count,
        oov_buckets; see components/categories.py).
    """

    path: str
    format: Optional[str] = None
    features: Optional[Tuple[str, ...]] = None
    label: Optional[str] = None
    bad_values: str = "error"
    categorical: Optional[Tuple[str, ...]] = None
    vocabulary: VocabularyOptions = VocabularyOptions()

    def __post_init__(self):
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path must be a non-empty string. Received: {self.path!r}")
        if self.format not in (None,) + FORMATS:
            raise ValueError(f"format must be 'csv', 'tfrecord' or 'parquet'. Received: {self.format!r}")
        if self.bad_values not in BAD_VALUES:
            raise ValueError(f"bad_values must be 'error' or 'missing'. Received: {self.bad_values!r}")
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
        if self.categorical is not None:
            object.__setattr__(self, "categorical", tuple(self.categorical))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Where an export is published.

    Args:
      model_name: the model's directory under serving/ and its name on the
        server, [A-Za-z0-9._-]+.
      model_version: an integer version; None takes the next free one.
      serving_base_path: the serving directory as the server sees it, for
        models.config (None: its absolute local path).
      serving_inputs: "named" (one input per feature), "matrix" (one float64
        [batch, F] input) or "auto" (matrix beyond 256 features).
    """

    model_name: str = "normpipe"
    model_version: Optional[int] = None
    serving_base_path: Optional[str] = None
    serving_inputs: str = "auto"

    def __post_init__(self):
        if self.serving_inputs not in SERVING_INPUTS:
            raise ValueError(f"serving_inputs must be 'auto', 'named' or 'matrix'. Received: {self.serving_inputs!r}")
