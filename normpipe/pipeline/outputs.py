"""What each command writes under --output-dir, and the re-run policy.

A command refuses to run into a directory that already holds any of its
outputs unless --overwrite is given; with it, each output is replaced whole
(written under a temporary name and renamed into place), and outputs that an
earlier run left but this run does not produce (transformed/ after
--no-materialize, model/ after a run without a label) are removed once the run
has succeeded, so old and new artifacts never mix. Export versions under
serving/ are never replaced: each export adds the next version.
"""

import os
import shutil

from normpipe.components.errors import UserError

OUTPUTS = {
    "stats": ("statistics.json",),
    "transform": ("statistics.json", "transform", "transformed"),
    "compare": ("statistics.json", "transform", "transformed", "comparison.json", "comparison.md", "comparison.png"),
    "train": ("statistics.json", "transform", "transformed", "model"),
    "run": ("statistics.json", "transform", "transformed", "comparison.json", "comparison.md", "comparison.png",
            "model", "report.html", "run.json"),
}


def check_output_dir(command: str, output_dir: str, overwrite: bool) -> None:
    """Refuses to mix with an earlier run's outputs unless `overwrite`."""
    if overwrite or not os.path.isdir(output_dir):
        return
    existing = [name for name in OUTPUTS.get(command, ()) if os.path.exists(os.path.join(output_dir, name))]
    if existing:
        raise UserError(
            f"{output_dir} already holds outputs of an earlier run ({', '.join(existing)}); pass --overwrite "
            "to replace them (export versions are kept; a new export adds the next version)"
        )


def remove_stale(command: str, output_dir: str, produced) -> None:
    """After a successful run: drops this command's outputs that an earlier
    run left and this one did not write."""
    for name in OUTPUTS.get(command, ()):
        path = os.path.join(output_dir, name)
        if name not in produced and os.path.exists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
