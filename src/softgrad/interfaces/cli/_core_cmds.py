"""``softgrad softmax``, ``softgrad jacobian`` and ``softgrad demo``."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ... import core
from ._common import console, fmt, parse_numbers, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("softmax", help="softmax (or log_softmax) of the numbers given")
    p.add_argument("logits", nargs="+", help="the numbers, e.g. 1 2 3")
    p.add_argument("--temperature", "-t", type=float, default=1.0, help="divide by T first")
    p.add_argument("--log", action="store_true", help="print log_softmax instead")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_softmax)

    p = sub.add_parser("jacobian", help="the softmax Jacobian dS_i/dx_j of the numbers given")
    p.add_argument("logits", nargs="+")
    p.add_argument("--temperature", "-t", type=float, default=1.0)
    p.add_argument("--log", action="store_true", help="the Jacobian of log_softmax instead")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_jacobian)

    p = sub.add_parser("demo", help="a tour of what softgrad computes")
    p.set_defaults(func=_demo)


def _softmax(args: argparse.Namespace) -> int:
    x = parse_numbers(args.logits)
    name = "log_softmax" if args.log else "softmax"
    values = getattr(core, name)(x, temperature=args.temperature)
    if args.json:
        print_json({"x": x, "temperature": args.temperature, name: values})
        return 0
    from rich.table import Table

    table = Table(title=f"{name}(x / {fmt(args.temperature)})")
    table.add_column("i", justify="right")
    table.add_column("x", justify="right")
    table.add_column(name, justify="right")
    for i, (xi, vi) in enumerate(zip(x, values, strict=True)):
        table.add_row(str(i), fmt(xi), fmt(vi))
    console().print(table)
    return 0


def _jacobian(args: argparse.Namespace) -> int:
    x = parse_numbers(args.logits)
    name = "log_softmax_jacobian" if args.log else "softmax_jacobian"
    jac = getattr(core, name)(x, temperature=args.temperature)
    if args.json:
        print_json({"x": x, "temperature": args.temperature, name: jac})
        return 0
    console().print(_matrix_table(jac, title=f"{name}: J[i, j] = d out_i / d x_j"))
    return 0


def _matrix_table(m: np.ndarray, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("i \\ j", justify="right")
    for j in range(m.shape[1]):
        table.add_column(str(j), justify="right")
    for i, row in enumerate(m):
        table.add_row(str(i), *(fmt(v) for v in row))
    return table


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo()
