"""Solvers for :class:`~softgrad.models._objective.Objective`: L-BFGS, truncated Newton, SGD.

Every solver minimizes ``objective.scale * f(w)`` (the tolerance is about that scaled
function), records the unscaled objective ``f`` after each iteration in ``loss_curve`` and calls
``callback(iteration, f)`` after each iteration when one is given (the command line draws its
progress bar from it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._objective import ArrayObjective, Objective, data_value_and_grad

__all__ = ["SolverResult", "lbfgs", "newton_cg", "sgd"]

Callback = Callable[[int, float], Any] | None


@dataclass
class SolverResult:
    w: np.ndarray
    n_iter: int
    converged: bool
    message: str
    loss_curve: list[float] = field(default_factory=list)


def _record(curve: list[float], callback: Callback, f: float) -> None:
    curve.append(float(f))
    if callback is not None:
        callback(len(curve), float(f))


def lbfgs(
    obj: Objective, w0: np.ndarray, *, tol: float, max_iter: int, callback: Callback = None
) -> SolverResult:
    """SciPy's L-BFGS-B with ``jac=True`` on the scaled objective.

    Stops when the largest gradient component of ``scale * f`` is ``<= tol`` (``gtol``; the
    relative-decrease test is off). When the line search stops first because the objective's
    round-off hides further decrease (float32 data, where the logits carry ~1e-7 relative
    error), the remaining iterations go to :func:`newton_cg` from that point: Newton steps need
    the gradient, not differences of ``f``, so they still reach ``tol``.
    """
    from scipy.optimize import minimize

    scale = obj.scale
    curve: list[float] = []

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = obj.value_and_grad(w)
        return f * scale, g * scale

    def on_iter(intermediate_result: Any) -> None:
        _record(curve, callback, intermediate_result.fun / scale)

    res = minimize(
        fun,
        np.asarray(w0, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        callback=on_iter,
        options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0, "maxls": 50},
    )
    n_iter = int(res.nit)
    gmax = float(np.max(np.abs(res.jac), initial=0.0))
    if gmax <= tol or n_iter >= max_iter:
        return SolverResult(res.x, n_iter, gmax <= tol, str(res.message), curve)
    done = len(curve)

    def shifted(iteration: int, f: float) -> None:
        if callback is not None:
            callback(done + iteration, f)

    polish = newton_cg(obj, res.x, tol=tol, max_iter=max_iter - n_iter, callback=shifted)
    message = f"L-BFGS-B stalled ({res.message}); finished by {polish.n_iter} Newton steps: {polish.message}"
    return SolverResult(
        polish.w, n_iter + polish.n_iter, polish.converged, message, curve + polish.loss_curve
    )


def _conjugate_gradient(
    hvp: Callable[[np.ndarray], np.ndarray], g: np.ndarray, rtol: float, max_iter: int
) -> np.ndarray:
    """Approximately solve ``H p = -g`` by CG, stopping at ``||H p + g|| <= rtol ||g||``.

    Stops early on non-positive curvature (possible only where ``C`` is infinite, where ``H`` is
    singular) and returns the last iterate, or ``-g`` when that is the first direction.
    """
    p = np.zeros_like(g)
    r = -g.copy()
    d = r.copy()
    rr = float(r @ r)
    stop = (rtol**2) * rr
    for _ in range(max_iter):
        if rr <= stop:
            break
        Hd = hvp(d)
        curv = float(d @ Hd)
        if curv <= 1e-16 * float(d @ d):
            return p if np.any(p) else -g
        alpha = rr / curv
        p += alpha * d
        r -= alpha * Hd
        rr_new = float(r @ r)
        d = r + (rr_new / rr) * d
        rr = rr_new
    return p


def newton_cg(
    obj: Objective, w0: np.ndarray, *, tol: float, max_iter: int, callback: Callback = None
) -> SolverResult:
    """Truncated Newton: Newton directions from CG on the exact Hessian-vector product.

    The Hessian is never formed: each CG step costs one :meth:`Objective.hvp`. CG is solved to
    a relative residual ``min(0.5, sqrt(||g||)) * ||g||`` (superlinear convergence near the
    optimum, Nocedal & Wright 7.1), then a backtracking (Armijo) line search starts from the
    full step. Stops when the largest gradient component of ``scale * f`` is ``<= tol``.
    """
    scale = obj.scale
    w = np.array(w0, dtype=np.float64)
    f, g = obj.value_and_grad(w)
    f, g = f * scale, g * scale
    curve: list[float] = []
    n_iter, converged, message = 0, False, "maximum number of iterations reached"
    for n_iter in range(1, max_iter + 1):
        if float(np.max(np.abs(g), initial=0.0)) <= tol:
            converged, message, n_iter = True, "gradient below tol", n_iter - 1
            break
        gnorm = float(np.linalg.norm(g))
        def hessp(v: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return obj.hvp(w, v) * scale

        p = _conjugate_gradient(
            hessp,
            g,
            rtol=min(0.5, math.sqrt(gnorm)),
            max_iter=max(20, min(200, obj.n_params)),
        )
        slope = float(g @ p)
        if slope >= 0:  # CG gave no descent direction (round-off): fall back to the gradient
            p, slope = -g, -float(g @ g)
        t = 1.0
        for _ in range(40):
            f_new, g_new = obj.value_and_grad(w + t * p)
            f_new, g_new = f_new * scale, g_new * scale
            if f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            converged = float(np.max(np.abs(g))) <= math.sqrt(tol)
            message, n_iter = "line search cannot decrease the objective further", n_iter - 1
            break
        w = w + t * p
        f, g = f_new, g_new
        _record(curve, callback, f / scale)
    else:
        converged = float(np.max(np.abs(g), initial=0.0)) <= tol
        if converged:
            message = "gradient below tol"
    return SolverResult(w, n_iter, converged, message, curve)


def _lipschitz_bound(obj: ArrayObjective) -> float:
    """A bound on the curvature of one row's term of the scaled objective.

    The Hessian of cross-entropy wrt the logits has norm ``<= 1/2``, so row ``i`` contributes at
    most ``s_i n / S * (||x_i||^2 + 1) / 2`` (``+1`` for the intercept), plus the penalty's
    ``1 / (C S)``.
    """
    X = obj.X
    if hasattr(X, "multiply"):  # scipy.sparse
        sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    else:
        sq = np.einsum("ij,ij->i", X, X)
    sq = sq.astype(np.float64) + (1.0 if obj.fit_intercept else 0.0)
    sw = np.ones(X.shape[0]) if obj.sw is None else obj.sw.astype(np.float64)
    n = X.shape[0]
    row = float(np.max(sw * sq)) * 0.5 * n * obj.scale * (obj.C if np.isfinite(obj.C) else 1.0)
    return row + (obj.scale if np.isfinite(obj.C) else 0.0)


def sgd(
    obj: ArrayObjective,
    w0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    batch_size: int,
    learning_rate: float | str,
    rng: np.random.Generator,
    callback: Callback = None,
) -> SolverResult:
    r"""Mini-batch stochastic gradient descent with iterate averaging.

    Each epoch visits the rows in a fresh random order in batches of ``batch_size``. The step
    at update ``t`` is

    .. math:: \eta_t = \frac{\eta_0}{1 + \eta_0 \lambda t}

    (the schedule for a ``lambda``-strongly convex objective; ``lambda = 1 / (C S)``), with
    ``eta_0 = learning_rate`` or, for ``"auto"``, ``1 / L`` from the largest row curvature. The
    iterate returned is the running average over the epochs after the first (Polyak-Ruppert),
    which removes most of the gradient noise. After each epoch the full objective at that
    average goes into ``loss_curve``; training stops when it decreased by less than
    ``tol * max(1, |f|)`` (relative to the scaled objective) for three epochs in a row, or after
    ``max_iter`` epochs.
    """
    scale = obj.scale
    n = obj.X.shape[0]
    bs = max(1, min(int(batch_size), n))
    eta0 = 1.0 / _lipschitz_bound(obj) if learning_rate == "auto" else float(learning_rate)
    lam = obj.scale if np.isfinite(obj.C) else 0.0
    C = obj.C if np.isfinite(obj.C) else 1.0
    k = obj.n_classes * obj.n_features
    w = np.array(w0, dtype=np.float64)
    avg = w.copy()
    n_avg = 0
    curve: list[float] = []
    t = 0
    f_prev = math.inf
    stalls = 0
    converged = False
    epoch = 0
    for epoch in range(1, max_iter + 1):
        order = rng.permutation(n)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            Xb, yb, swb = obj.rows(idx)
            W, b = obj.unpack(w)
            _, gW, gb = data_value_and_grad(Xb, yb, swb, W, b)
            g = obj.pack(gW, gb) * (C * scale * n / idx.size)
            if lam:
                g[:k] += lam * w[:k]
            w -= (eta0 / (1.0 + eta0 * lam * t)) * g
            t += 1
            if epoch > 1:
                n_avg += 1
                avg += (w - avg) / n_avg
        current = avg if n_avg else w
        f = obj.value_and_grad(current)[0]
        _record(curve, callback, f)
        fs = f * scale
        if not math.isfinite(fs):
            return SolverResult(current, epoch, False, "diverged: lower learning_rate", curve)
        stalls = stalls + 1 if f_prev - fs < tol * max(1.0, abs(fs)) else 0
        f_prev = min(f_prev, fs)
        if stalls >= 3:
            converged = True
            break
    message = "objective stopped decreasing" if converged else "maximum number of epochs reached"
    return SolverResult(avg if n_avg else w, epoch, converged, message, curve)
