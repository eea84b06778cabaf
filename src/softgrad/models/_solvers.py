"""Solvers for :class:`~softgrad.models._objective.Objective`: L-BFGS, truncated Newton, SGD.

Every solver minimizes ``objective.scale * f(w)`` (the tolerance is about that scaled
function), records the unscaled objective ``f`` after each iteration in ``loss_curve`` and calls
``callback(iteration, f)`` after each iteration when one is given (the command line draws its
progress bar from it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._objective import ArrayObjective, Objective, data_value_and_grad

__all__ = ["SolverResult", "blas_threads_for", "lbfgs", "newton_cg", "sgd"]

# Below this many multiply-adds per product with X (rows * features * classes), threaded BLAS
# costs more in wake-ups than it saves; on a busy machine 5x more (digits: 3 ms per gradient
# single-threaded, 16 ms with two threads).
_THREADED_BLAS_WORK = 20_000_000
_controller: list[Any] = []
_SGD_STEP = 4.0

Callback = Callable[[int, float], Any] | None


@dataclass
class SolverResult:
    w: np.ndarray
    n_iter: int
    converged: bool
    message: str
    loss_curve: list[float] = field(default_factory=list)


def _blas() -> Any:
    if not _controller:
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController())
    return _controller[0]


@contextlib.contextmanager
def blas_threads_for(work: int) -> Iterator[None]:
    """One thread for BLAS and for softgrad's Numba kernels while fitting a small problem.

    ``work`` is the multiply-adds of one product with X. Below ``_THREADED_BLAS_WORK`` the
    threads' wake-ups cost more than they save (5x on a busy two-core machine).
    """
    if work >= _THREADED_BLAS_WORK:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _blas().limit(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)


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
    # L-BFGS-B's own linear algebra is on vectors of n_params and (2m)^2 matrices: threaded
    # BLAS only adds wake-ups, which on a busy machine cost more than the fit (iris: 3 s
    # instead of 0.15 s). So BLAS runs single-threaded inside the solver and with the
    # caller's threads inside the objective, where the products with X are.
    ctl = _blas()
    blas = [lib.num_threads for lib in ctl.lib_controllers if lib.user_api == "blas"]
    threads = max(blas, default=1)

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        with ctl.limit(limits=threads, user_api="blas"):
            f, g = obj.value_and_grad(w)
        return f * scale, g * scale

    def on_iter(intermediate_result: Any) -> None:
        _record(curve, callback, intermediate_result.fun / scale)

    with ctl.limit(limits=1, user_api="blas"):
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

    Round-off: once the decrease the quadratic model predicts, ``-g.p / 2``, is below what
    ``f`` can resolve (``1000 eps |f|`` in the data's dtype), comparing values of ``f`` only
    selects round-off (float32 data would drift along it), so the full Newton step is taken
    untested: near the optimum it is the right step. When the gradient has not halved in ten
    iterations it is at round-off level and the solver stops.
    """
    scale = obj.scale
    eps = float(np.finfo(getattr(obj, "dtype", np.float64)).eps)
    w = np.array(w0, dtype=np.float64)
    f, g = obj.value_and_grad(w)
    f, g = f * scale, g * scale
    curve: list[float] = []
    n_iter, converged, message = 0, False, "maximum number of iterations reached"
    best_g, stalled = math.inf, 0
    for n_iter in range(1, max_iter + 1):
        gmax = float(np.max(np.abs(g), initial=0.0))
        if gmax <= tol:
            converged, message, n_iter = True, "gradient below tol", n_iter - 1
            break
        best_g, stalled = (gmax, 0) if gmax <= 0.5 * best_g else (best_g, stalled + 1)
        if stalled >= 10:
            message = f"gradient stopped decreasing at {gmax:.1e} (round-off level)"
            converged, n_iter = gmax <= 10 * tol, n_iter - 1
            break

        def hessp(v: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return obj.hvp(w, v) * scale

        gnorm = float(np.linalg.norm(g))
        p = _conjugate_gradient(
            hessp, g, rtol=min(0.5, math.sqrt(gnorm)), max_iter=max(20, min(200, obj.n_params))
        )
        slope = float(g @ p)
        if slope >= 0:  # CG gave no descent direction (round-off): fall back to the gradient
            p, slope = -g, -float(g @ g)
        if -0.5 * slope <= 1e3 * eps * abs(f):
            f_new, g_new = obj.value_and_grad(w + p)
            t = 1.0
        else:
            t = 1.0
            for _ in range(40):
                f_new, g_new = obj.value_and_grad(w + t * p)
                if f_new * scale <= f + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                converged = gmax <= 10 * tol
                message, n_iter = "line search cannot decrease the objective further", n_iter - 1
                break
        w = w + t * p
        f, g = f_new * scale, g_new * scale
        _record(curve, callback, f / scale)
    else:
        converged = float(np.max(np.abs(g), initial=0.0)) <= tol
        if converged:
            message = "gradient below tol"
    return SolverResult(w, n_iter, converged, message, curve)


def _curvature_bounds(obj: ArrayObjective, batch_size: int) -> tuple[float, float]:
    """Curvature of the scaled objective: of the full batch, and the most one batch can have.

    The Hessian of cross-entropy wrt the logits is at most ``1/2``, so the data term's is at
    most ``1/2`` times the largest eigenvalue of ``[X, 1]^T diag(s) [X, 1] / S`` (a few power
    iterations) for the full batch, and at most ``1/2 * n s_i (||x_i||^2 + 1) / (S b)`` from
    one row in a batch of ``b``; the penalty adds ``1 / (C S)``.
    """
    X, n = obj.X, obj.X.shape[0]
    one = 1.0 if obj.fit_intercept else 0.0
    row_weight = np.ones(n) if obj.row_weight is None else obj.row_weight.astype(np.float64)
    data_scale = obj.scale * (obj.C if np.isfinite(obj.C) else 1.0)  # 1 / S
    reg = obj.scale if np.isfinite(obj.C) else 0.0
    v = np.random.default_rng(0).standard_normal(X.shape[1] + 1)
    lam = 0.0
    for _ in range(20):
        v /= np.linalg.norm(v)
        u = np.asarray(X @ v[:-1].astype(X.dtype), dtype=np.float64) + one * v[-1]
        u *= row_weight
        v = np.concatenate([np.asarray(X.T @ u.astype(X.dtype), dtype=np.float64), [one * u.sum()]])
        lam = float(np.linalg.norm(v))
    if hasattr(X, "multiply"):  # scipy.sparse
        sq = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    else:
        sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    row = float(np.max(row_weight * (sq + one))) * n / batch_size
    return 0.5 * lam * data_scale + reg, 0.5 * row * data_scale + reg


def sgd(
    obj: ArrayObjective,
    w0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    batch_size: int,
    learning_rate: float | str,
    rng: Any,
    callback: Callback = None,
) -> SolverResult:
    r"""Mini-batch stochastic gradient descent with epoch averaging and a step that halves.

    Each epoch visits the rows in a fresh random order (``rng.permutation``) in batches of
    ``batch_size``; a batch's gradient, scaled by ``n / batch``, is an unbiased estimate of the
    full one. Within an epoch the step ``eta`` is constant and the iterates are averaged (tail
    averaging removes most of the gradient noise). The schedule adapts to the data:

    * the epoch's average is the candidate; if its full objective improves on the best so far
      it is kept and the next epoch continues from the last iterate;
    * if not, the step halves and the next epoch restarts from the best average.

    ``learning_rate="auto"`` starts from ``eta_0 = 4 min(1 / L, 1 / L_b)`` with ``L`` the
    full-batch curvature bound and ``L_b`` the most one batch can have (so one outlying row
    cannot make a step diverge); a float sets ``eta_0``. ``loss_curve`` holds the objective of
    the best average after each epoch (what the model would be if training stopped there);
    training stops when it has improved by less than ``tol`` (relative) five times in a row, or
    after ``max_iter`` epochs. SGD gets near the optimum, not to it: finish with ``"lbfgs"``
    (``warm_start``) for the exact one.
    """
    scale = obj.scale
    n = obj.X.shape[0]
    bs = max(1, min(int(batch_size), n))
    if learning_rate == "auto":
        full, batch = _curvature_bounds(obj, bs)
        eta = min(_SGD_STEP / full, _SGD_STEP / batch)
    else:
        eta = float(learning_rate)
    lam = obj.scale if np.isfinite(obj.C) else 0.0
    data_scale = obj.scale * (obj.C if np.isfinite(obj.C) else 1.0)
    k = obj.n_classes * obj.n_features
    w = np.array(w0, dtype=np.float64)
    best_w = w.copy()
    best = obj.value_and_grad(w)[0] * scale
    curve: list[float] = []
    stalls, converged, epoch = 0, False, 0
    for epoch in range(1, max_iter + 1):  # noqa: B007 (epoch is returned)
        order = rng.permutation(n)
        avg = np.zeros_like(w)
        with blas_threads_for(bs * k):  # a batch is a small problem, whatever n is
            for count, start in enumerate(range(0, n, bs), start=1):
                idx = order[start : start + bs]
                W, b = obj.unpack(w)
                Xb, yb, swb = obj.rows(idx)
                _, gW, gb = data_value_and_grad(Xb, yb, swb, W, b)
                g = obj.pack(gW, gb) * (data_scale * n / idx.size)
                if lam:
                    g[:k] += lam * w[:k]
                w -= eta * g
                avg += (w - avg) / count
        fs = obj.value_and_grad(avg)[0] * scale
        improvement = best - fs  # NaN when a step diverged: handled as no improvement
        if improvement > 0:
            best, best_w = fs, avg
        else:  # too large a step for this stage: halve it, start again from the best point
            eta *= 0.5
            w = best_w.copy()
        _record(curve, callback, best / scale)
        stalls = stalls + 1 if improvement < tol * max(1.0, abs(best)) else 0
        if stalls >= 5:
            converged = True
            break
    message = "objective stopped decreasing" if converged else "maximum number of epochs reached"
    if best_w is w0 or np.array_equal(best_w, w0):  # no epoch improved: not a convergence (#16)
        converged, message = False, "no epoch improved on the starting point"
    return SolverResult(best_w, epoch, converged, message, curve)
