"""What an export's version directory holds and the names its requests use.

Kept apart from export.py so that `normpipe verify`, which reads an export as
TF Serving does, imports TensorFlow alone and not tf.Transform or Beam.
"""

import re

from normpipe.core.errors import UserError
from normpipe.io import paths
from normpipe.io.column_names import MATRIX_INPUT  # noqa: F401  -- re-exported for the serving modules

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


# Signatures of more than this many features take one float64 [batch, F]
# matrix, not one input per feature (--serving-inputs auto): tracing a
# signature and the first call of it in a TF1 session (Grappler) grow faster
# than the number of named inputs and outputs.
MATRIX_FEATURES = 256
SERVING_INPUTS = ("auto", "named", "matrix")
# The matrix signatures' input is named MATRIX_INPUT (the transform graph's
# own, which no feature may be called); its columns are FEATURES_FILE's
# "inputs", in order.


def serving_inputs_for(choice: str, num_features: int) -> str:
    """"named" (one DT_DOUBLE [batch] input per feature) or "matrix" (one
    DT_DOUBLE [batch, F] input): `choice`, or for "auto" matrix beyond
    MATRIX_FEATURES features. "named" on a wide model is allowed (its
    signatures trace and load slowly)."""
    if choice not in SERVING_INPUTS:
        raise UserError(f"--serving-inputs must be one of {', '.join(SERVING_INPUTS)}. Received: {choice!r}")
    if choice == "auto":
        return "matrix" if num_features > MATRIX_FEATURES else "named"
    return choice


def read_features_file(version_dir: str) -> dict:
    """assets.extra/FEATURES_FILE of an export, with "serving_inputs" filled
    in ("named" for exports that predate matrix signatures)."""
    import json  # pylint: disable=import-outside-toplevel

    document = json.loads(paths.read_text(paths.join(version_dir, "assets.extra", FEATURES_FILE)))
    document.setdefault("serving_inputs", "named")
    return document


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
