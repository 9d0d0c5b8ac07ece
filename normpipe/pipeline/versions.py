"""`normpipe --version`: normpipe's version and the stack it runs on.

The stack's versions come from the installed distributions' metadata
(importlib.metadata), without importing TensorFlow or Beam, so that
`--version` answers at once.
"""

import argparse
import platform
from importlib import metadata, resources

from normpipe.version import __version__

# Distributions normpipe runs on, in the order printed; TFX only where it is installed.
STACK = ("tensorflow", "tensorflow-transform", "tfx-bsl", "apache-beam", "keras")
OPTIONAL = ("tfx",)


def stack_versions() -> dict:
    """{distribution: version, or None where it is not installed} for STACK, and for OPTIONAL where installed."""
    found = {}
    for name in STACK + OPTIONAL:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in STACK:
                found[name] = None
    return found


def version_text() -> str:
    """What `normpipe --version` prints: one `name version` line each, normpipe's first."""
    lines = [f"normpipe {__version__} ({resources.files('normpipe')})"]
    lines += [f"{name} {version or 'not installed'}" for name, version in stack_versions().items()]
    lines.append(f"python {platform.python_version()}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """`--version`: prints version_text() and exits 0, before any command is required."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or "print normpipe's version and those of TensorFlow, tf.Transform and Beam")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()
