"""The ``softgrad`` command line.

Each sub-command lives in a module of this package with a ``register(subparsers)`` function;
a handler returns the exit code. Bad input raises :class:`CLIError` (or the library's own
ValueError/TypeError), which becomes one error line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from ._common import CLIError

__all__ = ["CLIError", "build_parser", "main"]

_COMMAND_MODULES = (
    "_core_cmds",
    "_loss_cmds",
    "_model_cmds",
    "_bench_cmds",
    "_derive_cmds",
    "_diagnose_cmds",
    "_explore_cmds",
)

# argparse reads "-inf" or "-1e5" as an option; logits like these must stay positional.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf(inity)?|nan)$", re.IGNORECASE)


def _accept_negative_numbers(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = _NEGATIVE_NUMBER  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softgrad",
        description="The softmax family, its exact derivatives, and softmax regression.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    for p in (parser, *sub.choices.values()):
        _accept_negative_numbers(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, TypeError) as exc:
        print(f"softgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("softgrad: interrupted", file=sys.stderr)
        return 130
