"""The ``bptt`` command line: one module per subcommand, each with ``add_parser(subparsers)``.

Errors a user can cause (bad flags, bad files, bad values) print one line
``bptt <command>: error: ...`` and exit 2 -- never a traceback. Set BPTT_DEBUG=1 to see
the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import kernels

# Subcommand modules in bptt.cli, in the order --help lists them.
COMMANDS = ["train", "sample", "evaluate", "demo", "gradcheck", "diagnose", "experiment", "bench",
            "export", "importer"]   # issue 18: models out of and into bptt (cli/export.py, cli/importer.py)


class CLIError(Exception):
    """A problem with what the user asked for; printed as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage block before a bad flag's message; we print one line
    like every other error (``bptt train: error: argument --steps: invalid int value: 'x'``),
    pointing to --help. Subparsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineParser(
        prog="bptt",
        description="Recurrent networks trained by backpropagation through time: exact, fast on a CPU, "
                    "and showing its gradients.")
    parser.add_argument("--version", action="version", version=f"bptt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .. import _startup
    _startup.done()                       # from here a Ctrl-C is a KeyboardInterrupt caught below (exit 130)
    try:
        kernels.check_setting()           # a bad BPTT_KERNELS fails here, before anything is written
        code = args.run(args)
    except KeyboardInterrupt:
        print(f"bptt {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, ImportError, MemoryError) as error:
        if os.environ.get("BPTT_DEBUG"):
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, MemoryError):            # e.g. an absurd --length: one line, not a traceback
            message = f"out of memory: {message}"
        print(f"bptt {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)
