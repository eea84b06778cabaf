"""What ``softgrad train`` does with or without ``--dask``: check the output path, fit with a
progress bar, collect the report and print it. One home for both training commands
(:mod:`._model_cmds` in memory, :mod:`._dask_opts` on a Dask cluster).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._common import CLIError, console, fmt
from ._paths import check_output_file, check_output_folder

__all__ = ["check_out_path", "fit_with_progress", "print_training", "training_result"]


def check_out_path(out: str, inputs: Sequence[str | None] = ()) -> None:
    """``--out`` names a writable file in an existing folder, or a folder, and none of the
    ``inputs``: checked before any work."""
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        check_output_folder(out, "--out", inputs)
    else:
        check_output_file(out, "--out", inputs)


class _Progress:
    """A Rich progress bar over the iterations, showing the objective (on standard error)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("objective {task.fields[objective]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("fit", total=self.total, objective="-")
        return self

    def __call__(self, iteration: int, objective: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=min(iteration, self.total), objective=f"{objective:.10g}")

    def finish(self, n_iter: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=n_iter, total=max(n_iter, 1))

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def fit_with_progress(args: argparse.Namespace, X: Any, y: Any, source: str) -> tuple[Any, float]:
    """Fit a SoftmaxRegression with the options of ``softgrad train``, drawing a progress bar."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from ...models import SoftmaxRegression

    params: dict[str, Any] = dict(
        C=args.C, solver=args.solver, max_iter=args.max_iter, random_state=args.seed
    )
    if args.tol is not None:
        params["tol"] = args.tol
    model = SoftmaxRegression(**params)
    start = time.perf_counter()
    with _Progress(args.max_iter, not args.quiet) as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            model.fit(X, y, callback=bar)
        except ValueError as exc:
            raise CLIError(f"{source}: {exc}") from None
        bar.finish(model.n_iter_)
    fit_time = time.perf_counter() - start
    for w in caught:
        print(f"softgrad: warning: {w.message}", file=sys.stderr)
    return model, fit_time


def training_result(
    args: argparse.Namespace, source: str, model: Any, fit_time: float, n_train: int, train: dict[str, float]
) -> dict[str, Any]:
    """What ``softgrad train`` reports (printed as a table, or as JSON with ``--json``)."""
    return {
        "data": source,
        "solver": args.solver,
        "C": args.C,
        "n_train": n_train,
        "n_test": 0,
        "n_features": int(model.n_features_in_),
        "classes": [c.item() if hasattr(c, "item") else c for c in model.classes_],
        "n_iter": model.n_iter_,
        "objective": float(model.loss_curve_[-1]) if model.loss_curve_.size else math.nan,
        "fit_time_s": fit_time,
        "train": train,
    }


def print_training(result: dict[str, Any]) -> None:
    """The report of :func:`training_result` as text and a table (``softgrad train`` without ``--json``)."""
    from rich.table import Table

    out = console()
    out.print(
        f"{result['data']}: {result['n_train']} train / {result['n_test']} test rows, "
        f"{result['n_features']} features, {len(result['classes'])} classes; solver {result['solver']}, "
        f"C={fmt(result['C'])}: {result['n_iter']} iterations in {result['fit_time_s']:.2f} s, "
        f"objective {result['objective']:.10g}"
    )
    table = Table()
    table.add_column("split")
    table.add_column("accuracy", justify="right")
    table.add_column("log-loss", justify="right")
    for split in ("train", "test"):
        if split in result:
            table.add_row(split, f"{result[split]['accuracy']:.4f}", f"{result[split]['log_loss']:.6g}")
    out.print(table)
    out.print(f"model saved to {result['model']}")
    for path in result.get("plots", []):
        out.print(f"plot written: {path}")
