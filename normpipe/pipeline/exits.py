"""How a command ends when its reader goes away or it is asked to stop.

Exit statuses besides 0 (done), 1 (verify found a failure) and 2 (a user
error, one `normpipe: error:` line):

  130  SIGINT (Ctrl-C): one line, `normpipe: interrupted`
  141  stdout or stderr closed by its reader (128 + SIGPIPE: what a shell
       reports for `yes | head -1`); nothing more is written, no traceback
  143  SIGTERM: one line, `normpipe: terminated`

SIGINT and SIGTERM are raised in the main thread as exceptions
(KeyboardInterrupt, and its subclass `Terminated`), so every `finally` runs:
a command removes its scratch (Beam temp dirs, the training spool, model and
export staging, the staged wheel) before it exits, and, as after any failure,
leaves no output under its final name that it had not finished. A second
signal during that clean-up ends the process at once; the next command into
the same --output-dir then removes what was left there.

A closed stdout does not end the work: results are printed after the outputs
are written, so the command finishes its bookkeeping and exits 141. A closed
stderr ends the command at its next progress line, as SIGPIPE ends a Unix
tool, with whatever it had not finished left unpublished.
"""

import contextlib
import os
import signal
import sys
import threading

SIGPIPE_STATUS = 128 + signal.SIGPIPE
_ENDINGS = {signal.SIGINT: (128 + signal.SIGINT, "interrupted"), signal.SIGTERM: (128 + signal.SIGTERM, "terminated")}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt (and handled
    alike by the libraries that cancel work on one)."""


class _State:
    pipe_closed = False


def _silence(stream) -> None:
    """Points the stream's file descriptor at /dev/null, so that what is
    still buffered, and Python's flush at exit, go nowhere without an error."""
    _State.pipe_closed = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file: nothing to keep writing to
        pass


class _GuardedStream:
    """sys.stdout or sys.stderr: on a closed pipe, silenced; for stderr the
    BrokenPipeError is raised on, to end the command (see the module docstring)."""

    def __init__(self, stream, raise_on_close: bool):
        self._stream, self._raise = stream, raise_on_close

    def _guard(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            _silence(self._stream)
            if self._raise:
                raise
            return None

    def write(self, text):
        written = self._guard(self._stream.write, text)
        return len(text) if written is None else written

    def flush(self):
        self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def closed_pipe(exc: BaseException | None = None) -> bool:
    """Whether a pipe closed: seen by a write, or `exc` (or a cause) is a BrokenPipeError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BrokenPipeError):
            return True
        exc = exc.__cause__ or exc.__context__
    return _State.pipe_closed


def _on_signal(signum, frame):  # pylint: disable=unused-argument
    # A second signal while the first one's clean-up runs ends the process.
    for each in _ENDINGS:
        signal.signal(each, signal.SIG_DFL)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def guarded():
    """For one command: sys.stdout and sys.stderr guarded against a closed
    pipe, SIGINT and SIGTERM raised as exceptions (in the main thread only,
    where Python delivers signals); all restored afterwards."""
    _State.pipe_closed = False
    streams = sys.stdout, sys.stderr
    # None: the descriptor was closed before Python started, and print() skips it.
    sys.stdout = _GuardedStream(sys.stdout, False) if sys.stdout is not None else None
    sys.stderr = _GuardedStream(sys.stderr, True) if sys.stderr is not None else None
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, _on_signal) for s in _ENDINGS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.stdout, sys.stderr = streams


def interrupted(exc: KeyboardInterrupt) -> int:
    """Reports SIGINT or SIGTERM on one line; returns its exit status."""
    status, word = _ENDINGS[signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT]
    say(f"normpipe: {word}")
    return status


def say(line: str) -> None:
    """One line on stderr; nothing if stderr is gone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass
