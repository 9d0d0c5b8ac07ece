"""User-facing errors.

A `UserError` is a problem with the user's input or arguments: the CLI prints
its message on one line and exits 2, without a traceback.

Beam runners do not all preserve exception types across the worker boundary
(a portable or multi-process runner re-raises a worker failure as a generic
error carrying the original text), so the message carries a marker that the
CLI finds in any exception text.
"""

import re

MARKER = "[normpipe-user-error]"
_MARKER_RE = re.compile(re.escape(MARKER) + r" (.*?)(?: \[/normpipe-user-error\]|$)", re.M)


class UserError(ValueError):
    """Bad input or arguments; the message is one line meant for the user."""

    def __init__(self, message: str):
        # Beam re-raises a worker failure as the same type with its text
        # extended; keep only the user-facing part.
        match = _MARKER_RE.search(str(message))
        self.message = " ".join((match.group(1) if match else str(message)).split())
        super().__init__(f"{MARKER} {self.message} [/normpipe-user-error]")


def find_user_error(exc: BaseException):
    """Returns the user-facing message hidden in `exc` (or its causes), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        match = _MARKER_RE.search(str(exc))
        if match:
            return match.group(1).strip()
        exc = exc.__cause__ or exc.__context__
    return None
