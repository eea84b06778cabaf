"""Plots (PNG) of a trained model and of softmax itself; matplotlib is optional.

matplotlib is imported inside the functions only, and figures are drawn on an Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``) without pyplot, so no GUI backend is
touched and no global matplotlib state changes. Each file is written atomically (temporary
file in the same folder, then rename). Install with ``pip install 'softgrad[plot]'``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import core

__all__ = [
    "plot_confusion_matrix",
    "plot_loss_curve",
    "plot_softmax_temperatures",
    "plot_true_class_probability",
    "training_plots",
]


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def plot_loss_curve(loss_curve: Sequence[float], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """The objective per iteration (left) and its distance to the last value, log scale (right).

    Parameters
    ----------
    loss_curve : sequence of float
        ``SoftmaxRegression.loss_curve_``.
    path : str or path
        The PNG file to write.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    f = np.asarray(loss_curve, dtype=np.float64)
    fig, (ax, ax_gap) = _figure(9.0, 3.6, ncols=2)
    it = np.arange(1, f.size + 1)
    ax.plot(it, f, marker="." if f.size < 60 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective  C Σ s·CE + ½‖W‖²")
    ax.set_title("objective")
    ax.grid(alpha=0.3)
    gap = f[:-1] - f[-1] if f.size > 1 else np.array([])
    positive = gap > 0
    if np.any(positive):
        ax_gap.semilogy(it[:-1][positive], gap[positive])
    ax_gap.set_xlabel("iteration")
    ax_gap.set_ylabel("objective - final objective")
    ax_gap.set_title("convergence (log scale)")
    ax_gap.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(
    y_true: Any, y_pred: Any, labels: Sequence[Any], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Confusion matrix (rows: true class, columns: predicted), counts written in the cells."""
    from sklearn.metrics import confusion_matrix

    labels = list(labels)
    cm = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=labels)
    k = len(labels)
    size = min(3.0 + 0.45 * k, 12.0)
    fig, (ax,) = _figure(size + 1.2, size)
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8, label="rows (count)")
    names = [str(c) for c in labels]
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 3 else 0, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 25:
        high = cm.max() / 2 if cm.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > high else "black",
                )
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(title or f"confusion matrix (accuracy {accuracy:.3f})")
    return _save(fig, path)


def plot_true_class_probability(p_true: Any, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Histogram of the probability the model gives to each row's true class.

    Mass near 1 is confident and right; mass near 0 is confident and wrong.
    """
    p = np.asarray(p_true, dtype=np.float64)
    fig, (ax,) = _figure(6.4, 3.8)
    ax.hist(p, bins=np.linspace(0.0, 1.0, 41), color="tab:blue", edgecolor="white")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("predicted probability of the true class")
    ax.set_ylabel("rows (log scale)")
    ax.set_title(title or f"p(true class): median {np.median(p):.3f}, {np.mean(p < 0.5):.1%} below 0.5")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_softmax_temperatures(x: Any, temperatures: Sequence[float], path: str | os.PathLike[str]) -> Path:
    r"""softmax(x / T) for several temperatures (bars) and the Jacobian at T=1 (heatmap).

    .. math:: S_i = \frac{e^{x_i/T}}{\sum_j e^{x_j/T}}, \qquad J_{ij} = S_i(\delta_{ij} - S_j)

    Low ``T`` sharpens towards the arg-max, high ``T`` flattens towards uniform.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    fig, (ax, ax_j) = _figure(11.0, 4.2, ncols=2)
    width = 0.8 / max(len(temperatures), 1)
    for k, t in enumerate(temperatures):
        s = core.softmax(x, temperature=t)
        ax.bar(np.arange(n) + (k - (len(temperatures) - 1) / 2) * width, s, width, label=f"T = {t:g}")
    ax.set_xticks(range(n), [f"x{i}={v:g}" for i, v in enumerate(x)], rotation=30 if n > 6 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("softmax(x / T)")
    ax.set_title("softmax at several temperatures")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    jac = core.softmax_jacobian(x)
    lim = float(np.max(np.abs(jac))) or 1.0
    im = ax_j.imshow(jac, cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax_j, shrink=0.85)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                dark = abs(jac[i, j]) > 0.6 * lim
                ax_j.text(
                    j,
                    i,
                    f"{jac[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    ax_j.set_xticks(range(n))
    ax_j.set_yticks(range(n))
    ax_j.set_xlabel("j")
    ax_j.set_ylabel("i")
    ax_j.set_title(r"Jacobian $\partial S_i/\partial x_j = S_i(\delta_{ij} - S_j)$ at T = 1")
    return _save(fig, path)


def training_plots(model: Any, X: Any, y: Any, directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``loss_curve.png``, ``confusion_matrix.png`` and ``true_class_probability.png``.

    ``X, y`` is the data to evaluate on (the test split when there is one). The folder is
    created when missing. Returns the paths written.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y)
    logp = model.predict_log_proba(X)
    pred = model.classes_[np.argmax(logp, axis=1)]
    index = {c: j for j, c in enumerate(model.classes_.tolist())}
    idx = np.array([index.get(v, -1) for v in y.tolist()], dtype=np.intp)
    p_true = np.where(idx >= 0, np.exp(logp[np.arange(idx.size), np.maximum(idx, 0)]), 0.0)
    name = type(model).__name__
    return [
        plot_loss_curve(model.loss_curve_, folder / "loss_curve.png", title=f"{name} ({model.solver})"),
        plot_confusion_matrix(y, pred, model.classes_, folder / "confusion_matrix.png"),
        plot_true_class_probability(p_true, folder / "true_class_probability.png"),
    ]
