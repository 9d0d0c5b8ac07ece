"""The files of an Examples artifact's splits, and exec_properties' values."""

import json

from tfx.types import artifact_utils

from normpipe.core.errors import UserError
from normpipe.io import paths


def split_files(examples, splits) -> list:
    """Sorted files under the Split-<name>/ directories of an Examples artifact."""
    known = artifact_utils.decode_split_names(examples.split_names)
    unknown = [s for s in splits if s not in known]
    if unknown:
        raise UserError(f"{examples.uri}: no split {', '.join(unknown)} (splits: {', '.join(known)})")
    files = []
    for split in splits:
        directory = artifact_utils.get_split_uri([examples], split)
        found = sorted(paths.join(directory, n) for n in paths.listdir(directory) if not n.startswith((".", "_")))
        if not found:
            raise UserError(f"{directory}: split {split} holds no files")
        files += found
    return files


def json_value(value, default=None):
    """An exec_property as the component was given it: TFX hands List and
    Dict parameters to the executor as JSON text."""
    if value is None or value == "":
        return default
    return json.loads(value) if isinstance(value, str) else value
