"""``softgrad xent`` (cross-entropy of the numbers given) and ``softgrad check`` (gradcheck of
every derivative softgrad ships)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import core, losses
from ._common import CLIError, console, fmt, parse_numbers, print_json


def register(sub: Any) -> None:
    """Add ``xent`` and ``check`` to ``sub``."""
    p = sub.add_parser("xent", help="cross-entropy of the logits given and its gradient")
    p.add_argument("logits", nargs="+", help="the logits, e.g. 2 1 0.1")
    p.add_argument("--target", "-y", type=int, required=True, help="the true class index")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="eps in [0, 1]")
    p.add_argument("--weight", type=float, nargs="+", default=None, help="one weight per class")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_xent)

    p = sub.add_parser("check", help="gradcheck every derivative softgrad ships (exit 1 on failure)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test points")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_check)


def _xent(args: argparse.Namespace) -> int:
    x = parse_numbers(args.logits)
    weight = None if args.weight is None else np.asarray(args.weight, dtype=np.float64)
    if weight is not None and weight.shape != x.shape:
        raise CLIError(f"--weight: give {x.size} weights (one per class), got {weight.size}")
    kw: dict[str, Any] = dict(weight=weight, label_smoothing=args.label_smoothing)
    loss, grad = losses.cross_entropy_value_and_grad(x, np.asarray(args.target), **kw)
    p = core.softmax(x)
    if args.json:
        print_json({"logits": x, "target": args.target, "loss": float(loss), "softmax": p, "grad": grad})
        return 0
    from rich.table import Table

    table = Table(title=f"cross-entropy = {fmt(float(loss))}   (dl/do = softmax - y)")
    table.add_column("i", justify="right")
    table.add_column("logit", justify="right")
    table.add_column("softmax", justify="right")
    table.add_column("y", justify="right")
    table.add_column("dl/do", justify="right")
    for i in range(x.size):
        table.add_row(str(i), fmt(x[i]), fmt(p[i]), "1" if i == args.target else "0", fmt(grad[i]))
    console().print(table)
    return 0


def _columns(jvp: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    """A Jacobian built column by column from a JVP: ``J[:, k] = jvp(x, e_k)``."""

    def jacobian(x: Any) -> Any:
        eye = np.eye(x.size).reshape((x.size, *x.shape))
        return np.stack([jvp(x, e) for e in eye], axis=-1)

    return jacobian


def library_checks(seed: int = 0) -> list[tuple[str, Any]]:
    """``(name, GradcheckResult)`` for every derivative in softgrad, at random float64 points."""
    rng = np.random.default_rng(seed)
    g = losses.gradcheck
    x = rng.normal(size=5) * 2
    t = 0.7
    z = rng.normal(size=(4, 5)) * 2
    y = rng.integers(0, 5, size=4)
    probs = rng.dirichlet(np.ones(5), size=4)
    w = rng.uniform(0.5, 2.0, size=5)
    T, N = 4, 3
    xv, W, b = rng.normal(size=N), rng.normal(size=(T, N)), rng.normal(size=T)
    xb = rng.normal(size=(6, N))
    yb = rng.integers(0, T, size=6)
    ce: dict[str, Any] = dict(weight=w, label_smoothing=0.1)
    lce: dict[str, Any] = dict(chunk_size=4, label_smoothing=0.05)

    def lin(wrt: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        args = [xb, W, b]

        def f(a: Any) -> Any:
            xs, Ws, bs = _swap(args, wrt, a)
            return losses.linear_cross_entropy(xs, Ws, yb, bs, **lce)

        def jac(a: Any) -> Any:
            xs, Ws, bs = _swap(args, wrt, a)
            return losses.linear_cross_entropy(xs, Ws, yb, bs, return_grad=True, **lce)[1][wrt]

        return f, jac

    def vjp_layer(wrt: int) -> tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]:
        args = [xb, W, b]

        def f(a: Any) -> Any:
            return losses.dense_softmax(*_swap(args, wrt, a))

        def vjp(a: Any, gg: Any) -> Any:
            xs, Ws, bs = _swap(args, wrt, a)
            return losses.dense_softmax_vjp(xs, Ws, losses.dense_softmax(xs, Ws, bs), gg)[wrt]

        return f, vjp

    checks: list[tuple[str, Any]] = [
        ("softmax_jacobian", g(core.softmax, x, jacobian=core.softmax_jacobian)),
        (
            "softmax_jacobian (T=0.7)",
            g(lambda a: core.softmax(a, temperature=t), x,
              jacobian=lambda a: core.softmax_jacobian(a, temperature=t)),
        ),
        ("log_softmax_jacobian", g(core.log_softmax, x, jacobian=core.log_softmax_jacobian)),
        ("softmax_vjp", g(core.softmax, z, vjp=lambda a, c: core.softmax_vjp(core.softmax(a), c))),
        (
            "softmax_jvp",
            g(core.softmax, z, jacobian=_columns(lambda a, v: core.softmax_jvp(core.softmax(a), v))),
        ),
        (
            "log_softmax_vjp",
            g(core.log_softmax, z, vjp=lambda a, c: core.log_softmax_vjp(core.log_softmax(a), c)),
        ),
        (
            "log_softmax_jvp",
            g(core.log_softmax, z,
              jacobian=_columns(lambda a, v: core.log_softmax_jvp(core.log_softmax(a), v))),
        ),
        ("softmax_hessian", g(core.softmax_jacobian, x, jacobian=core.softmax_hessian)),
        (
            "cross_entropy_grad",
            g(lambda a: losses.cross_entropy(a, y, **ce), z,
              jacobian=lambda a: losses.cross_entropy_grad(a, y, **ce)),
        ),
        (
            "cross_entropy_grad (probabilities)",
            g(lambda a: losses.cross_entropy(a, probs, **ce), z,
              jacobian=lambda a: losses.cross_entropy_grad(a, probs, **ce)),
        ),
        (
            "cross_entropy_hvp",
            g(lambda a: losses.cross_entropy_grad(a, y, **ce), z,
              vjp=lambda a, v: losses.cross_entropy_hvp(a, y, v, **ce)),
        ),
        (
            "dense_softmax_jacobian (W)",
            g(lambda a: losses.dense_softmax(xv, a, b), W,
              jacobian=lambda a: losses.dense_softmax_jacobian(xv, a, b, wrt="W")),
        ),
        (
            "dense_softmax_jacobian (b)",
            g(lambda a: losses.dense_softmax(xv, W, a), b,
              jacobian=lambda a: losses.dense_softmax_jacobian(xv, W, a, wrt="b")),
        ),
        (
            "dense_softmax_jacobian (x)",
            g(lambda a: losses.dense_softmax(a, W, b), xv,
              jacobian=lambda a: losses.dense_softmax_jacobian(a, W, b, wrt="x")),
        ),
    ]
    for k, name in enumerate(("dx", "dW", "db")):
        f, vjp = vjp_layer(k)
        checks.append((f"dense_softmax_vjp ({name})", g(f, [xb, W, b][k], vjp=vjp)))
    for k, name in enumerate(("dx", "dW", "db")):
        f, jac = lin(k)
        checks.append((f"linear_cross_entropy ({name})", g(f, [xb, W, b][k], jacobian=jac)))
    return checks


def _swap(args: list[Any], k: int, value: Any) -> list[Any]:
    out = list(args)
    out[k] = value
    return out


def _check(args: argparse.Namespace) -> int:
    checks = library_checks(args.seed)
    failed = [name for name, r in checks if not r.passed]
    if args.json:
        print_json(
            {
                "passed": not failed,
                "checks": [
                    {
                        "function": name,
                        "max_abs_error": r.max_abs_error,
                        "max_rel_error": r.max_rel_error,
                        "passed": r.passed,
                        "worst_index": list(r.index),
                    }
                    for name, r in checks
                ],
            }
        )
    else:
        from rich.table import Table

        table = Table(title="gradcheck: analytic derivatives vs central differences (float64)")
        table.add_column("function")
        table.add_column("max abs error", justify="right")
        table.add_column("max rel error", justify="right")
        table.add_column("pass", justify="center")
        for name, r in checks:
            table.add_row(
                name, f"{r.max_abs_error:.2e}", f"{r.max_rel_error:.2e}",
                "[green]yes[/green]" if r.passed else "[red]NO[/red]",
            )
        console().print(table)
        if failed:
            console().print(f"[red]{len(failed)} failed:[/red] {', '.join(failed)}")
    return 1 if failed else 0
