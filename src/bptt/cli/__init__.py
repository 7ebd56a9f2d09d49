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


class HelpFormatter(argparse.HelpFormatter):
    """The one place a default is shown in --help: ``help text (default: X)``, once per option.

    X is ``action.shown_default`` when a command sets one (``show_defaults``: e.g. bptt train,
    whose argparse defaults are None so that --resume can tell a given flag from an omitted
    one), else the argparse default; nothing is shown for None, False (store_true flags) and
    help/version. Help strings therefore never write their own "[40]" or "(default 40)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = getattr(action, "shown_default", action.default)
        if ("%(default)" in text or default is None or default is False or default is argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


class RawEpilogHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """HelpFormatter, with the description and epilog printed as written (tables, aligned lists)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage block before a bad flag's message; we print one line
    like every other error (``bptt train: error: argument --steps: invalid int value: 'x'``),
    pointing to --help. Subparsers inherit the class, and with it ``HelpFormatter``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def show_defaults(parser: argparse.ArgumentParser, **shown) -> None:
    """What --help shows as the default of each named option (by dest), where the argparse
    default (None) is not what happens: ``show_defaults(p, out="runs/train", text="the built-in corpus")``."""
    for action in parser._actions:
        if action.dest in shown:
            action.shown_default = shown[action.dest]


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` of every compute command; main() applies it before the command runs."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="BLAS threads for the computation")
    show_defaults(parser, threads="auto: 1, or the idle cores when the per-step matrix products are large "
                                  "(bptt.threads)")
    parser.set_defaults(threads_option=True)


def apply_threads(args) -> None:
    """Before a compute command runs: --threads N, or the default for small work (bptt.threads);
    train and evaluate choose again once they know the model's size."""
    from .. import threads

    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    threads.set_threads(args.threads)


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
        if getattr(args, "threads_option", False):
            apply_threads(args)
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
