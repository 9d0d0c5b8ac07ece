"""What an export's version directory holds and the names its requests use.

Kept apart from export.py so that `normpipe verify`, which reads an export as
TF Serving does, imports TensorFlow alone and not tf.Transform or Beam.
"""

import re

from normpipe.core.errors import UserError
from normpipe.io import paths

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PREDICTION = "prediction"
VERIFY_SAMPLE = "normpipe_verify_sample.json"
FEATURES_FILE = "normpipe_features.json"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP = 1000
# Sample and warmup rows are capped by cells: 1000 rows up to 100 features,
# fewer for wide data, where each row is a request with one input per feature.
SAMPLE_CELLS = 100_000


def sample_limit(width: int) -> int:
    """How many raw rows of `width` features the warmup requests and the
    verify sample hold: MAX_WARMUP, or fewer so that rows x width stays
    within SAMPLE_CELLS (at least one row)."""
    return max(1, min(MAX_WARMUP, SAMPLE_CELLS // max(width, 1)))


REGRESS, REGRESS_METHOD = "regress", "tensorflow/serving/regress"
CLASSIFY, CLASSIFY_METHOD = "classify", "tensorflow/serving/classify"


def is_model_name(name: str) -> bool:
    """Model names become directory names: [A-Za-z0-9._-], not starting with
    '.' (a hidden directory, which models.config and TF Serving skip)."""
    return bool(_NAME.match(name or "")) and not name.startswith(".")


def check_model_name(name: str) -> str:
    """`name` if it is a valid model name (`is_model_name`), else a UserError."""
    if not is_model_name(name):
        raise UserError(f"--model-name must match [A-Za-z0-9._-]+ and not start with '.'. Received: {name!r}")
    return name


def existing_versions(model_dir: str):
    if not paths.isdir(model_dir):
        return []
    return sorted(int(n) for n in paths.listdir(model_dir) if n.isdigit())
