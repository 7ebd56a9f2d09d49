"""Ctrl-C while the ``bptt`` command is still starting (importing numpy and the package, ~0.1 s):
exit 130 quietly instead of printing a KeyboardInterrupt traceback from inside an import.

Installed only when this process *is* the command line (``bptt ...`` or ``python -m bptt``), never
for a program that imports bptt as a library; ``bptt.cli.main`` hands SIGINT back (``done()``) once
it can turn a KeyboardInterrupt into its own one-line exit 130.
"""

import _signal                                      # the C module: no import time (signal.py loads enum)
import os                                           # os and sys are loaded by Python's start-up already
import sys

_previous = None


def _exit_130(signum, frame):                       # pragma: no cover - timing-dependent, tested as a process
    try:
        sys.stderr.write("bptt: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)                               # mid-import: no cleanup to run, nothing written yet


if sys.argv[:1] and (sys.argv[0] == "-m" or os.path.basename(sys.argv[0]) == "bptt"):
    try:
        _previous = _signal.signal(_signal.SIGINT, _exit_130)
    except (ValueError, OSError):                   # not the main thread: leave signals alone
        _previous = None


def done() -> None:
    global _previous
    if _previous is not None:
        _signal.signal(_signal.SIGINT, _previous)
        _previous = None
