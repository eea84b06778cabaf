"""``make demo``: a short tour of softgrad on the seed examples."""

from __future__ import annotations

import numpy as np

from .. import core


def _central_difference_jacobian(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    cols = []
    for j in range(x.size):
        step = np.zeros_like(x)
        step[j] = eps
        cols.append((f(x + step) - f(x - step)) / (2 * eps))
    return np.stack(cols, axis=-1)


def run_demo() -> int:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    out.rule("[bold]softgrad: the softmax family and its exact derivatives")
    table = Table(title="Seed examples")
    for col in ("x", "softmax(x)", "log_softmax(x)", "logsumexp(x)"):
        table.add_column(col)
    for seed in ([1.0, 2.0, 3.0], [1000.0, 2000.0, 3000.0], [0.0, -1000.0]):
        arr = np.asarray(seed)
        table.add_row(
            str(seed),
            np.array2string(core.softmax(arr), precision=8),
            np.array2string(core.log_softmax(arr), precision=8),
            f"{float(core.logsumexp(arr)):.10g}",
        )
    out.print(table)

    x = np.array([1.0, 2.0, 3.0])
    jac = core.softmax_jacobian(x)
    out.print("softmax_jacobian([1, 2, 3]):  J[i, j] = S_i (delta_ij - S_j)")
    out.print(np.array2string(jac, precision=8))

    checks = {
        "softmax_jacobian": (jac, _central_difference_jacobian(core.softmax, x)),
        "log_softmax_jacobian": (
            core.log_softmax_jacobian(x),
            _central_difference_jacobian(core.log_softmax, x),
        ),
    }
    rng = np.random.default_rng(0)
    g = rng.standard_normal(3)
    s = core.softmax(x)
    checks["softmax_vjp"] = (core.softmax_vjp(s, g), g @ checks["softmax_jacobian"][1])
    logp = core.log_softmax(x)
    checks["log_softmax_vjp"] = (
        core.log_softmax_vjp(logp, g),
        g @ checks["log_softmax_jacobian"][1],
    )
    grad_table = Table(title="Gradient check against central differences (h = 1e-6)")
    grad_table.add_column("derivative")
    grad_table.add_column("max abs error", justify="right")
    grad_table.add_column("ok")
    ok_all = True
    for name, (exact, numeric) in checks.items():
        err = float(np.max(np.abs(exact - numeric)))
        ok = err < 1e-8
        ok_all &= ok
        grad_table.add_row(name, f"{err:.2e}", "yes" if ok else "[red]NO")
    out.print(grad_table)
    return 0 if ok_all else 1
