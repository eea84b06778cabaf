"""``make demo``: the product tour.

The seed examples and the gradient check of the softmax family; the teaching tools (a
derivation step by step, a hand-written gradient diagnosed, the explorer's command); then
softmax regression on
scikit-learn's digits: the exact derivatives of the model's objective checked against central
differences, a fit with a progress bar next to scikit-learn's ``LogisticRegression`` at the
same ``C`` (objective reached, accuracy, fit time), a save/load round trip, and the plots
written to ``./demo-output``. Under a minute on two cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import core
from ..losses import gradcheck


def run_demo() -> int:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    out.rule("[bold]softgrad: the softmax family and its exact derivatives")
    for seed in ([1.0, 2.0, 3.0], [1000.0, 2000.0, 3000.0], [0.0, -1000.0]):
        arr = np.asarray(seed)
        out.print(f"[bold]x = {seed}[/]   logsumexp(x) = {float(core.logsumexp(arr)):.10g}")
        table = Table()
        for col in ("i", "x_i", "softmax(x)_i", "log_softmax(x)_i"):
            table.add_column(col, justify="right")
        for i, (xi, si, li) in enumerate(zip(arr, core.softmax(arr), core.log_softmax(arr), strict=True)):
            table.add_row(str(i), f"{xi:g}", f"{si:.8f}", f"{li:.8f}")
        out.print(table)

    x = np.array([1.0, 2.0, 3.0])
    out.print("softmax_jacobian([1, 2, 3]):  J[i, j] = S_i (delta_ij - S_j)")
    out.print(np.array2string(core.softmax_jacobian(x), precision=8))

    s, logp = core.softmax(x), core.log_softmax(x)
    checks = {
        "softmax_jacobian": gradcheck(core.softmax, x, jacobian=core.softmax_jacobian),
        "log_softmax_jacobian": gradcheck(core.log_softmax, x, jacobian=core.log_softmax_jacobian),
        "softmax_vjp": gradcheck(core.softmax, x, vjp=lambda x, g: core.softmax_vjp(s, g)),
        "log_softmax_vjp": gradcheck(core.log_softmax, x, vjp=lambda x, g: core.log_softmax_vjp(logp, g)),
    }
    out.print("[bold]Gradient check against central differences[/] (softgrad.gradcheck)")
    grad_table = Table()
    grad_table.add_column("derivative")
    grad_table.add_column("max abs error", justify="right")
    grad_table.add_column("ok")
    for name, result in checks.items():
        grad_table.add_row(name, f"{result.max_abs_error:.2e}", "yes" if result.passed else "[red]NO")
    ok_all = all(r.passed for r in checks.values())
    out.print(grad_table)
    ok_all &= _teaching_tour(out)
    ok_all &= _model_tour(out)
    return 0 if ok_all else 1


def _blog_post_gradient(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The cross-entropy gradient as it is often written: no max-shift, no 1/B for the mean."""
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True) - np.eye(z.shape[1])[y]


def _fixed_gradient(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True) - np.eye(z.shape[1])[y]) / len(z)


def _teaching_tour(out: Any) -> bool:
    """``softgrad derive``, ``softgrad diagnose`` and ``softgrad explore`` in a few lines each."""
    from ..teaching import derive, diagnose

    out.rule("[bold]Learning the derivatives: derive, diagnose, explore")
    d = derive("cross_entropy", at=[2.0, 1.0, 0.1], target=0)
    steps = f"{len(d.steps)} steps, each checked by SymPy"
    out.print(f"[bold]softgrad derive cross_entropy --at 2 1 0.1[/]  ({steps})")
    for step in d.steps:
        out.print(f"  {step.rule:<24} {step.text}")
    gradient = ", ".join(f"{g:.6f}" for g in (d.at or {})["gradient"])
    out.print(f"  at x = (2, 1, 0.1), target 0:  S - y = ({gradient})")

    out.print("\n[bold]softgrad diagnose[/] on a gradient copied from a blog post: exp(z) / sum - onehot")
    found = diagnose(_blog_post_gradient, "cross_entropy_grad")
    for finding in found.findings:
        where = "" if finding.step is None else "  (see derive('{}').step('{}'))".format(*finding.step)
        out.print(f"  [red]✗ {finding.id}[/]: {finding.title}{where}")
    fixed = diagnose(_fixed_gradient, "cross_entropy_grad")
    out.print(f"  with the max-shift and the 1/B: {'[green]correct' if fixed.ok else '[red]still wrong'}")
    out.print(
        "\n[bold]softgrad explore[/] opens a page in your browser: move the logits and watch S, the "
        "Jacobian and the gradients respond."
    )
    return bool(found.ids == ["no-max-shift", "batch-scale"] and fixed.ok)


DEMO_OUTPUT = "demo-output"
_C = 1.0


def _digits() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities in [0, 1]
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def _objective(coef: np.ndarray, intercept: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """``C * sum_i CE_i + 0.5 ||W||^2``, the same formula for every model in the table."""
    from .. import losses

    logits = X @ np.asarray(coef, dtype=np.float64).T + np.asarray(intercept, dtype=np.float64)
    ce = float(losses.cross_entropy(logits, y, reduction="sum"))
    return _C * ce + 0.5 * float(np.sum(np.asarray(coef, dtype=np.float64) ** 2))


def _derivative_check(out: Any, X: np.ndarray, y: np.ndarray) -> bool:
    """The model's gradient and Hessian-vector product against central differences."""
    from rich.table import Table

    from ..models._objective import ArrayObjective

    obj = ArrayObjective(X[:200], y[:200], None, 10, C=_C, fit_intercept=True)
    rng = np.random.default_rng(1)
    w = 0.1 * rng.standard_normal(obj.n_params)
    v = rng.standard_normal(obj.n_params)
    h = 1e-5
    _, g = obj.value_and_grad(w)
    (f_plus, g_plus), (f_minus, g_minus) = obj.value_and_grad(w + h * v), obj.value_and_grad(w - h * v)
    rows: dict[str, tuple[Any, Any]] = {
        "gradient . v  vs  (f(w+hv) - f(w-hv)) / 2h": (float(g @ v), (f_plus - f_minus) / (2 * h)),
        "H v (exact HVP)  vs  (g(w+hv) - g(w-hv)) / 2h": (obj.hvp(w, v), (g_plus - g_minus) / (2 * h)),
    }
    table = Table(title=f"SoftmaxRegression objective on digits (200 rows, {obj.n_params} parameters)")
    table.add_column("derivative")
    table.add_column("relative error", justify="right")
    table.add_column("ok")
    ok_all = True
    for name, (exact, numeric) in rows.items():
        exact_a, numeric_a = np.atleast_1d(exact), np.atleast_1d(numeric)
        err = float(np.max(np.abs(exact_a - numeric_a)) / np.max(np.abs(numeric_a)))
        ok = err < 1e-6
        ok_all &= ok
        table.add_row(name, f"{err:.2e}", "yes" if ok else "[red]NO")
    out.print(table)
    return ok_all


def _fit_with_progress(model: Any, X: np.ndarray, y: np.ndarray, label: str) -> float:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("objective {task.fields[objective]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(label, total=model.max_iter, objective="-")

        def on_iteration(iteration: int, objective: float) -> None:
            bar.update(task, completed=iteration, objective=f"{objective:.10g}")

        start = time.perf_counter()
        model.fit(X, y, callback=on_iteration)
        elapsed = time.perf_counter() - start
        bar.update(task, completed=model.n_iter_, total=model.n_iter_)
    return elapsed


def _model_tour(out: Any) -> bool:
    import warnings

    from rich.table import Table
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from ..models import SoftmaxRegression

    out.rule("[bold]SoftmaxRegression on digits (1347 train / 450 test rows, 64 pixels / 16, 10 classes)")
    X_train, X_test, y_train, y_test = _digits()
    ok = _derivative_check(out, X_train, y_train)

    rows = []
    for solver in ("lbfgs", "newton-cg"):
        model = SoftmaxRegression(C=_C, solver=solver)
        seconds = _fit_with_progress(model, X_train, y_train, f"softgrad {solver}")
        rows.append((f"softgrad {solver}", model, seconds, model.n_iter_))
    for tol in (1e-4, 1e-8):
        sk = LogisticRegression(C=_C, tol=tol, max_iter=10_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            sk.fit(X_train, y_train)
            seconds = time.perf_counter() - start
        rows.append((f"sklearn lbfgs tol={tol:g}", sk, seconds, int(np.max(sk.n_iter_))))

    objectives = [_objective(m.coef_, m.intercept_, X_train, y_train) for _, m, _, _ in rows]
    best = min(objectives)
    table = Table(
        title=f"C * sum CE + 0.5 ||W||^2 at C = {_C:g}, computed alike for all; test = held-out accuracy"
    )
    for col in ("model", "objective", "- best", "iters", "fit time", "test"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for (name, model, seconds, n_iter), f in zip(rows, objectives, strict=True):
        table.add_row(
            name,
            f"{f:.6f}",
            f"{f - best:.1e}",
            str(n_iter),
            f"{seconds:.2f} s",
            f"{model.score(X_test, y_test):.4f}",
        )
    out.print(table)
    ours, tight = rows[0][1], rows[-1][1]
    gap = float(np.max(np.abs(ours.coef_ - tight.coef_)) / np.max(np.abs(tight.coef_)))
    out.print(f"softgrad lbfgs vs sklearn tol=1e-8: max |coef_ difference| / max |coef_| = {gap:.1e}")
    ok &= objectives[0] <= objectives[2] and gap < 1e-4

    folder = Path(DEMO_OUTPUT)
    folder.mkdir(exist_ok=True)
    model_path = folder / "digits-model.npz"
    ours.save(model_path)
    same = bool(
        np.array_equal(SoftmaxRegression.load(model_path).predict_proba(X_test), ours.predict_proba(X_test))
    )
    out.print(f"saved to {model_path} (JSON + arrays, no pickle); reloaded predictions identical: {same}")
    ok &= same
    _write_plots(out, ours, X_test, y_test, folder)
    out.print(
        "Try it on your own data:  softgrad train DATA.csv --target COLUMN --out model.npz --plots plots/"
        "  then  softgrad predict model.npz DATA.csv --proba"
    )
    return bool(ok)


def _write_plots(out: Any, model: Any, X: np.ndarray, y: np.ndarray, folder: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        out.print("matplotlib is not installed: no plots (pip install 'softgrad[plot]')")
        return
    from . import plots

    paths = plots.training_plots(model, X, y, folder)
    paths.append(
        plots.plot_softmax_temperatures([1.0, 2.0, 3.0], [0.5, 1.0, 2.0, 5.0], folder / "softmax.png")
    )
    out.print("plots written: " + ", ".join(str(p) for p in paths))
