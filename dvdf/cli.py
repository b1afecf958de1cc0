"""The ``dvdf`` command.

Each command group lives in ``dvdf/commands/<group>.py`` and exposes ``register(subparsers)``,
which adds its sub-parsers and sets ``func`` (``func(args) -> int``). Command modules import
only argparse at module level, so ``dvdf --help`` stays fast; heavy imports happen inside
the handlers.

Errors: a :class:`~dvdf.errors.DvdfError` (bad input or configuration) becomes one line
``error: <what and where>`` on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from dvdf import __version__
from dvdf.errors import EXIT_USAGE, DvdfError

# Order here is the order in `dvdf --help`.
COMMAND_MODULES = (
    "dvdf.commands.envs",      # domains, replay-check
    "dvdf.commands.data",      # collect, data inspect|list|suite
    "dvdf.commands.train",     # train
    "dvdf.commands.sweep",     # sweep
    "dvdf.commands.report",    # report
    "dvdf.commands.bench",     # bench
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on usage errors already; keep its message to one line."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dvdf", description="Cross-domain offline RL with DVDF: domains, datasets, training, "
                                              "Ray Tune sweeps, reports.")
    parser.add_argument("--version", action="version", version=f"dvdf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DvdfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` & co.: stop quietly like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
