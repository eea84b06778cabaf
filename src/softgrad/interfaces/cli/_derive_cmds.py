"""``softgrad derive TOPIC``: a derivation step by step, as text, LaTeX, Markdown or JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import CLIError, console, parse_numbers

FORMATS = ("text", "latex", "markdown", "json")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "derive",
        help="a derivation step by step (softmax, cross_entropy, ...), every step checked by SymPy",
        description="Show a derivation step by step. Topics: softgrad derive --list.",
    )
    p.add_argument("topic", nargs="?", help="the topic, e.g. softmax; omit with --verify to check all")
    p.add_argument("--format", "-f", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--at", nargs="+", metavar="X", help="numbers at this point: the logits (layer topics: x)")
    p.add_argument(
        "--target",
        nargs="+",
        metavar="Y",
        help="cross-entropy topics, with --at: a target class (one integer) or soft targets (probabilities)",
    )
    p.add_argument(
        "--W",
        nargs="+",
        metavar="ROW",
        dest="weights",
        help="layer topics, with --at: the weights, one row per argument, e.g. --W '1 0' '0 1' '2 -1'",
    )
    p.add_argument("--b", nargs="+", metavar="B", dest="bias", help="layer topics, with --at: the bias")
    p.add_argument("--verify", action="store_true", help="check every step with SymPy and print the report")
    p.add_argument("--list", action="store_true", help="list the topics")
    p.set_defaults(func=_derive)


def _derive(args: argparse.Namespace) -> int:
    from ...teaching import TOPICS, derive

    if args.list:
        return _list(TOPICS, derive)
    if args.topic is None:
        if not args.verify:
            raise CLIError("derive: give a topic (softgrad derive --list shows them)")
        return _verify_all(TOPICS, derive)
    at = None if args.at is None else parse_numbers(args.at, "--at").tolist()
    d = derive(
        args.topic, at=at, target=_target(args.target), W=_rows(args.weights), b=_numbers(args.bias, "--b")
    )
    report = d.verify() if args.verify else None
    if args.format == "json":
        from ._common import print_json

        payload = d.to_dict()
        if report is not None:
            payload["verify"] = report.to_dict()
        print_json(payload)
    elif args.format == "text":
        console().print(d)
    else:
        sys.stdout.write((d.to_latex() if args.format == "latex" else d.to_markdown()) + "\n")
    if report is not None and args.format != "json":
        print("\n" + str(report))
    return 0 if report is None or report.ok else 1


def _numbers(values: list[str] | None, name: str) -> list[float] | None:
    return None if values is None else parse_numbers(values, name).tolist()


def _target(values: list[str] | None) -> int | list[float] | None:
    """One integer is a class; anything else is a list of probabilities."""
    if values is not None and len(values) == 1:
        try:
            return int(values[0])
        except ValueError:
            pass
    return _numbers(values, "--target")


def _rows(values: list[str] | None) -> list[list[float]] | None:
    """``--W '1 0' '0 1'``: one row per argument, numbers split on spaces or commas."""
    if values is None:
        return None
    rows = [parse_numbers(row.replace(",", " ").split(), "--W").tolist() for row in values]
    if len({len(row) for row in rows}) != 1:
        raise CLIError(f"--W: every row needs the same number of entries, got {[len(r) for r in rows]}")
    return rows


def _list(topics: tuple[str, ...], derive: Any) -> int:
    from rich.table import Table

    table = Table(title="softgrad derive TOPIC")
    table.add_column("topic")
    table.add_column("steps", justify="right")
    table.add_column("what it derives")
    for name in topics:
        d = derive(name)
        table.add_row(name, str(len(d.steps)), d.summary)
    console().print(table)
    return 0


def _verify_all(topics: tuple[str, ...], derive: Any) -> int:
    ok = True
    for name in topics:
        report = derive(name).verify()
        print(str(report) + "\n", flush=True)
        ok = ok and report.ok
    return 0 if ok else 1
