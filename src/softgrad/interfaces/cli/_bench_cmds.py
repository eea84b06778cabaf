"""``softgrad bench``: the kernels side by side with SciPy, NumPy, PyTorch and JAX."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CLIError, console
from ._paths import check_output_file


def register(sub: Any) -> None:
    """Add ``softgrad bench`` to ``sub``."""
    p = sub.add_parser(
        "bench",
        help="time softgrad's kernels against SciPy, NumPy, PyTorch and JAX (make bench)",
        description=(
            "Times softmax, log_softmax, softmax_vjp, cross-entropy forward+backward and "
            "linear_cross_entropy with gradients against SciPy, NumPy, PyTorch and JAX (when "
            "installed), in one process on the same arrays, with np.copyto as the bandwidth "
            "floor. Prints a table (median ms, GB/s, share of copy bandwidth, time relative "
            "to softgrad) and the goals of issue #5."
        ),
    )
    p.add_argument("--quick", action="store_true", help="small shapes: a smoke test of a few seconds")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per case (median; 5, quick: 3)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    p.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        default=None,
        help="run only this function (repeatable): softmax, log_softmax, softmax_vjp, cross_entropy, "
        "linear_cross_entropy",
    )
    p.add_argument(
        "--short",
        action="store_true",
        help="only the few-classes shapes: 1000000x10 float32 and float64, 2000000x2 float64",
    )
    p.add_argument(
        "--cold", action="store_true", help="also measure the first call with an empty Numba cache (compile)"
    )
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from .. import bench

    if args.repeat is not None and args.repeat < 1:
        raise CLIError(f"--repeat must be >= 1, got {args.repeat}")
    if args.json:
        check_output_file(args.json, "--json")
    only = None
    if args.only:
        only = tuple(name for item in args.only for name in item.split(",") if name)
        unknown = [n for n in only if n not in bench.FUNCTIONS]
        if unknown:
            choices = ", ".join(bench.FUNCTIONS)
            raise CLIError(f"--only: unknown function {unknown[0]!r}; choose from {choices}")
    from rich.console import Console

    con = Console(width=max(console().width, 120))
    report = bench.run_bench(
        quick=args.quick, repeat=args.repeat, only=only, log=lambda msg: con.log(msg), cold=args.cold,
        short=args.short,
    )
    con.print(bench.table(report))
    con.print(bench.goals_table(report))
    first = report["first_call"]
    con.print(f"first call in a fresh process (disk cache): {first}")
    if args.json:
        try:
            bench.write_json(report, args.json)
        except OSError as exc:
            raise CLIError(f"--json: cannot write {args.json!r}: {exc}") from None
        con.print(f"wrote {args.json}")
    return 0
