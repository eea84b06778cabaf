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
# CG stops once the quadratic model's gradient is this fraction of tol (max norm): solving
# further cannot make the next gradient smaller than tol (MNIST-5k: the last Newton system
# took 76 CG steps to reach the sqrt(||g||) forcing term, several times what tol needs).
_CG_ATOL = 0.1
# The forcing term of inexact Newton: CG's relative residual min(0.5, ||g||^e). Measured
# (#15; Hessian-vector products + gradients to tol 1e-8): e = 0.5 (Nocedal & Wright's
# sqrt) MNIST-5k 219 + 11, digits 62 + 7, 100k x 50 x 10 31 + 7; e = 0.25: 159 + 12,
# 57 + 9, 35 + 9; e = 1: 323 + 10 on MNIST-5k. Looser solves of the early, far-off systems
# waste less, and the superlinear rate (any e > 0) is kept.
_FORCING_EXPONENT = 0.25
# Under the dense Hessian preconditioner one CG iteration already meets the forcing term of
# the far-off steps; sqrt(||g||) instead of ||g||^(1/4) makes the steps nearly exact for one or
# two more products each (measured on 100000 x 50 x 10, to tol 1e-6: 7 gradients + 10
# products with 1/4, 6 + 11 with 1/2, 6 + 15 with 3/4).
_DENSE_FORCING_EXPONENT = 0.5
# The dense preconditioner is kept until the accepted steps since it was made add up to this
# in its norm (the root mean square of the logits' change, weighted by the curvature), while
# the curvature p (1 - p) moves by some per cent. Measured on 100000 x 50 x 10 (gradients +
# products + builds): to tol 1e-6, 6 + 11 + 5 always rebuilt, 6 + 11 + 4 with 0.05, 6 + 10 + 3
# with 0.25, and with 1.0 7 + 17 + 2. Every preconditioner is kept after a rejected step (the
# point did not change).
_DENSE_REUSE_BELOW = 0.25

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
    # The smallest: NumPy and SciPy may load two BLAS libraries, and a caller's limit set
    # before SciPy's was loaded leaves that one at the core count. Raising NumPy's BLAS to it
    # inside the objective made its products 10-100x slower on a busy machine (#15).
    threads = min(blas, default=1)

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


class _Preconditioner:
    """``M^-1 = T D^-1 T^T`` for the change of variables ``b_k = b'_k - W_k . mu_k``.

    ``T`` maps ``(W, b')`` to ``(W, b)``; ``D`` is the Hessian's diagonal in ``(W, b')``
    (:meth:`SoftmaxObjective.preconditioner`). ``norm2(p) = p^T M p`` is the trust region's
    norm. Without centres (an objective that offers none) it is the identity.
    """

    def __init__(self, obj: Any, w: np.ndarray) -> None:
        self.project = getattr(obj, "project", lambda v: v)
        make = getattr(obj, "preconditioner", None)
        try:
            mu, d = make(w) if make is not None else (None, None)
        except NotImplementedError:
            mu, d = None, None
        self.d = np.ones(obj.n_params) if d is None else d * obj.scale
        self.mu = mu if mu is not None and getattr(obj, "fit_intercept", False) else None
        self.k = obj.n_params - (0 if self.mu is None else self.mu.shape[0])

    def _split(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.mu is not None
        return v[: self.k].reshape(self.mu.shape), v[self.k :]

    def solve(self, r: np.ndarray) -> np.ndarray:
        if self.mu is None:
            return self.project(r / self.d)
        rW, rb = self._split(r)
        u = np.concatenate([(rW - rb[:, None] * self.mu).ravel(), rb]) / self.d
        uW, ub = self._split(u)
        return self.project(np.concatenate([u[: self.k], ub - np.einsum("kj,kj->k", uW, self.mu)]))

    def _untransform(self, p: np.ndarray) -> np.ndarray:
        if self.mu is None:
            return p
        pW, pb = self._split(p)
        return np.concatenate([p[: self.k], pb + np.einsum("kj,kj->k", pW, self.mu)])

    def inner(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self._untransform(a) @ (self.d * self._untransform(b)))

    def norm(self, p: np.ndarray) -> float:
        return math.sqrt(max(self.inner(p, p), 0.0))


class _Kronecker:
    """``M = scale * (C A (x) B + I (x) diag(1, 0))`` from :class:`KroneckerFactors`, in the
    variables ``(W, b')`` with ``b' = b + W mu`` (features centred), and its exact inverse.

    In the eigenbases of ``A`` (``U``) and ``B`` (``V``) ``M`` is diagonal; where that diagonal
    is zero (the common shift of the intercepts, and of ``W`` without penalty: directions ``f``
    ignores) the inverse is the pseudo-inverse, so those directions get no step.
    """

    def __init__(self, obj: Any, kf: Any) -> None:
        self.project = obj.project
        penalized = math.isfinite(obj.C)
        c = obj.C if penalized else 1.0
        self.kf = kf
        self.T, self.N = kf.U.shape[0], kf.V.shape[0]
        self.k = self.T * self.N
        self.intercept = bool(obj.fit_intercept)
        a = np.maximum(kf.a, 0.0)
        self.dW = obj.scale * (c * np.outer(a, kf.lam) + (1.0 if penalized else 0.0))
        self.db = obj.scale * c * a
        self.iW = _pseudo_inverse(self.dW)
        self.ib = _pseudo_inverse(self.db)

    def _to_eigen(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        kf = self.kf
        W = v[: self.k].reshape(self.T, self.N)
        return kf.U.T @ W @ kf.V, (kf.U.T @ v[self.k :] if self.intercept else None)

    def _from_eigen(self, eW: np.ndarray, eb: np.ndarray | None) -> np.ndarray:
        kf = self.kf
        W = kf.U @ eW @ kf.V.T
        if eb is None:
            return W.ravel()
        return np.concatenate([W.ravel(), kf.U @ eb])

    def _shift(self, v: np.ndarray, sign: float) -> np.ndarray:
        """``b -> b + sign * W mu`` (primal), the change of variables and its inverse."""
        if not self.intercept:
            return v
        out = v.copy()
        out[self.k :] += sign * (v[: self.k].reshape(self.T, self.N) @ self.kf.mu)
        return out

    def _shift_dual(self, r: np.ndarray) -> np.ndarray:
        """The transpose of ``b' -> b' - W mu``: ``r_W -> r_W - r_b mu^T``."""
        if not self.intercept:
            return r
        out = r.copy()
        out[: self.k] -= np.outer(r[self.k :], self.kf.mu).ravel()
        return out

    def solve(self, r: np.ndarray) -> np.ndarray:
        eW, eb = self._to_eigen(self._shift_dual(r))
        u = self._from_eigen(eW * self.iW, None if eb is None else eb * self.ib)
        return self.project(self._shift(u, -1.0))

    def inner(self, x: np.ndarray, y: np.ndarray) -> float:
        xW, xb = self._to_eigen(self._shift(x, 1.0))
        yW, yb = (xW, xb) if y is x else self._to_eigen(self._shift(y, 1.0))
        total = float(np.sum(xW * self.dW * yW))
        if xb is not None and yb is not None:
            total += float(np.sum(xb * self.db * yb))
        return total

    def norm(self, p: np.ndarray) -> float:
        # one change of basis, not two (MNIST-5k: 2 N x N products per CG step saved)
        return math.sqrt(max(self.inner(p, p), 0.0))


class _DenseHessian:
    """``M = scale * H_S`` from a dense Hessian estimate (:meth:`sampled_hessian`), inverted by
    its Cholesky factor.

    The directions ``f`` ignores are null directions of ``H_S`` too; a multiple of their
    projector is added so that ``M`` is positive definite, and the solution is projected off
    them again, so they get no step.
    """

    def __init__(self, obj: Any, H: np.ndarray, exact: bool = False) -> None:
        from scipy.linalg import cho_factor

        self.project = obj.project
        M = H * obj.scale
        level = float(np.mean(np.diag(M)))
        obj.add_null_space(M, level)
        # The estimate's float32 products leave errors of about 1e-5 of its scale; where they
        # make a nearly singular M indefinite, a ridge at that level restores it (CG on the
        # exact product makes up for the ridge's bias).
        for ridge in (1e-6, 1e-4, 1e-2):
            M[np.diag_indices_from(M)] += ridge * level
            try:
                self.factor = cho_factor(M, lower=True, check_finite=False)
                break
            except np.linalg.LinAlgError:
                M[np.diag_indices_from(M)] -= ridge * level
        else:
            raise np.linalg.LinAlgError("the sampled Hessian is not positive definite")
        self.M = M
        self.forcing_exponent = _DENSE_FORCING_EXPONENT
        # H exact (only at the point it was made): the Newton step is solved without CG, and
        # the next iteration makes a new one
        self.exact = exact
        self.reuse_below = -1.0 if exact else _DENSE_REUSE_BELOW

    def solve(self, r: np.ndarray) -> np.ndarray:
        from scipy.linalg import cho_solve

        return self.project(cho_solve(self.factor, r, check_finite=False))

    def inner(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(x @ (self.M @ y))

    def norm(self, p: np.ndarray) -> float:
        return math.sqrt(max(self.inner(p, p), 0.0))


def _pseudo_inverse(d: np.ndarray) -> np.ndarray:
    """``1 / d`` where ``d`` is clearly positive, 0 where it is round-off of a zero."""
    big = float(np.max(d, initial=0.0))
    out = np.zeros_like(d)
    keep = d > 1e-10 * big
    out[keep] = 1.0 / d[keep]
    return out


def _make_preconditioner(obj: Any, w: np.ndarray) -> Any:
    """The exact dense Hessian where the objective offers it at ``w`` (``W = 0`` on tall data),
    else the row-sampled dense Hessian where it offers that, else the Kronecker-factored
    preconditioner where it offers its factors, else the diagonal one."""
    exact = getattr(obj, "exact_hessian", None)
    if exact is not None:
        with contextlib.suppress(NotImplementedError, np.linalg.LinAlgError):
            return _DenseHessian(obj, exact(w), exact=True)
    sampled = getattr(obj, "sampled_hessian", None)
    if sampled is not None:
        with contextlib.suppress(NotImplementedError, np.linalg.LinAlgError):
            return _DenseHessian(obj, sampled(w))
    factors = getattr(obj, "kronecker_factors", None)
    if factors is not None:
        with contextlib.suppress(NotImplementedError):
            return _Kronecker(obj, factors(w))
    return _Preconditioner(obj, w)


def _to_boundary(z: np.ndarray, d: np.ndarray, m: Any, radius: float) -> float:
    """The ``tau >= 0`` with ``||z + tau d||_M = radius`` (``||z||_M <= radius``)."""
    a = m.inner(d, d)
    b = m.inner(z, d)
    c = m.inner(z, z) - radius * radius
    return (-b + math.sqrt(max(b * b - a * c, 0.0))) / a


def _steihaug(
    hvp: Callable[[np.ndarray], np.ndarray],
    g: np.ndarray,
    m: Any,
    radius: float,
    rtol: float,
    max_iter: int,
    atol: float = 0.0,
    on_move: Callable[[float], Any] | None = None,
) -> tuple[np.ndarray, float, bool]:
    """Preconditioned Steihaug-Toint CG for ``min g.p + p.H p / 2`` with ``||p||_M <= radius``.

    Stops at ``||H p + g|| <= rtol ||g||`` or ``max |H p + g| <= atol``, on the boundary, or
    on non-positive curvature (then along that direction to the boundary). Returns the step,
    the decrease the quadratic model predicts, ``-(g.p + p.H p / 2)``, and whether the step
    reached the boundary. ``on_move(alpha)``, when given, is called each time the step gains
    ``alpha`` times the direction of the last ``hvp`` (the step is their sum, formed in that
    order), so that the objective can sum the products it began them with.
    """
    moved = on_move if on_move is not None else (lambda alpha: None)
    z = np.zeros_like(g)
    r = g.copy()  # the model's gradient at z: g + H z
    y = m.solve(r)
    d = -y
    ry = float(r @ y)
    stop = rtol * float(np.linalg.norm(g))

    def model_decrease(p: np.ndarray, r_p: np.ndarray) -> float:
        # H p = r_p - g, so g.p + p.H p / 2 = (g.p + p.r_p) / 2
        return -0.5 * float(g @ p + p @ r_p)

    for _ in range(max_iter):
        Hd = hvp(d)
        curv = float(d @ Hd)
        if curv <= 0.0:
            tau = _to_boundary(z, d, m, radius) if math.isfinite(radius) else 1.0
            p = z + tau * d
            moved(tau)
            return p, model_decrease(p, r + tau * Hd), True
        alpha = ry / curv
        z_new = z + alpha * d
        # (no norm without a radius: with the Kronecker preconditioner it costs two N x N
        # products, a sixth of MNIST-5k's fit)
        if math.isfinite(radius) and m.norm(z_new) >= radius:
            tau = _to_boundary(z, d, m, radius)
            p = z + tau * d
            moved(tau)
            return p, model_decrease(p, r + tau * Hd), True
        z = z_new
        moved(alpha)
        r = r + alpha * Hd
        if float(np.linalg.norm(r)) <= stop or float(np.max(np.abs(r))) <= atol:
            break
        y = m.solve(r)
        ry_new = float(r @ y)
        d = -y + (ry_new / ry) * d
        ry = ry_new
    return z, model_decrease(z, r), False


def _exact_newton_step(g: np.ndarray, m: _DenseHessian, radius: float) -> tuple[np.ndarray, float, bool]:
    """The Newton step ``-H^-1 g`` by the Cholesky factor of an exact Hessian ``m``, cut back
    to the trust region's boundary where it is longer than ``radius``: what CG would converge
    to in one iteration, without its Hessian-vector product. Returns it as :func:`_steihaug`
    does (step, predicted decrease, whether it reached the boundary)."""
    p = -m.solve(g)
    length = m.norm(p)
    tau = min(1.0, radius / length) if length > 0 else 1.0
    p *= tau
    return p, -(float(g @ p) + 0.5 * m.inner(p, p)), tau < 1.0


def newton_cg(
    obj: Objective, w0: np.ndarray, *, tol: float, max_iter: int, callback: Callback = None
) -> SolverResult:
    r"""Trust-region Newton-CG (Steihaug-Toint) with a Hessian-model preconditioner.

    Each iteration solves the Newton system by preconditioned CG on the exact Hessian-vector
    product (the Hessian is never formed), to a relative residual
    ``min(0.5, ||g||^(1/4))`` (superlinear convergence near the optimum, Nocedal & Wright
    7.1; the exponent chosen by measurement) or until the model's gradient is below
    ``tol / 10`` (solving further cannot help the stopping test). The preconditioner is, where
    the objective offers it (many rows per parameter), its dense Hessian estimated on a sample
    of the rows (:class:`_DenseHessian`: Cholesky-factored, forcing term ``sqrt(||g||)``, kept
    until the steps since its build add up to ``_DENSE_REUSE_BELOW`` in its norm); else the
    objective's
    :class:`~._objective.KroneckerFactors` model of the Hessian (features centred against
    the intercept, their covariance times the average curvature wrt the logits), inverted
    exactly; objectives without either (or with too many features) get the Hessian's
    diagonal. Where the objective offers its exact Hessian at the point (:meth:`exact_hessian`:
    ``W = 0``, the start, on tall data) the Newton step is solved by its Cholesky factor, without
    CG. Objectives with ``step_begin``/``step_add`` are told how CG sums its step, so that they
    can form the next point's logits from the products they already made. The step stays inside a trust region
    ``||p||_M <= radius`` measured in the preconditioner's norm, so badly scaled features
    (wine: proline ~ 1000, hue ~ 1) neither stall CG nor the steps. The step is taken when the
    objective decreased by at least ``1e-4`` of what the quadratic model predicts; the
    radius shrinks after poor steps and grows after good boundary steps.

    Stops, converged, when the largest gradient component of ``scale * f`` is ``<= tol``.
    Round-off: where the predicted decrease is below ``1000 eps |f|``, differences of ``f``
    are noise, so the actual decrease is measured as ``-(g + g_new).p / 2`` (exact for a
    quadratic). When the gradient cannot get below ``tol`` (its own round-off is larger, or
    ``max_iter`` is reached) the result says so in ``message`` and is not ``converged``.
    """
    scale = obj.scale
    eps = float(np.finfo(getattr(obj, "dtype", np.float64)).eps)
    w = np.array(w0, dtype=np.float64)
    f, g = obj.value_and_grad(w)
    f, g = f * scale, g * scale
    curve: list[float] = []
    radius = math.inf
    no_progress = 0
    m: Any = None
    moved = math.inf
    n_iter, converged, message = 0, False, "maximum number of iterations reached"
    for n_iter in range(1, max_iter + 1):
        gmax = float(np.max(np.abs(g), initial=0.0))
        if gmax <= tol:
            converged, message, n_iter = True, "gradient below tol", n_iter - 1
            break
        if m is None or moved > getattr(m, "reuse_below", 0.0):
            m = _make_preconditioner(obj, w)
            moved = 0.0

        def hessp(v: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return obj.hvp(w, v) * scale

        gnorm = float(np.linalg.norm(g))
        if getattr(m, "exact", False):
            p, predicted, boundary = _exact_newton_step(g, m, radius)
        else:
            forcing = getattr(m, "forcing_exponent", _FORCING_EXPONENT)
            begin = getattr(obj, "step_begin", None)
            if begin is not None:
                begin(w)
            p, predicted, boundary = _steihaug(
                hessp, g, m, radius, rtol=min(0.5, gnorm**forcing),
                max_iter=max(20, min(250, obj.n_params)), atol=_CG_ATOL * tol,
                on_move=getattr(obj, "step_add", None),
            )
        f_new, g_new = obj.value_and_grad(w + p)
        f_new, g_new = f_new * scale, g_new * scale
        actual = f - f_new
        if predicted <= 1e3 * eps * abs(f):  # f's differences are round-off here
            actual = -0.5 * float((g + g_new) @ p)
        rho = actual / predicted if predicted > 0 else -1.0
        step = m.norm(p)
        if rho < 0.25:
            radius = 0.25 * step
        elif rho > 0.75 and boundary:
            radius = 2.0 * radius
        if rho > 1e-4 and math.isfinite(f_new):
            w, f, g = w + p, f_new, g_new
            moved += step  # since the preconditioner was made (a rejected step adds nothing)
        tiny_step = float(np.max(np.abs(p), initial=0.0)) <= 4 * eps * max(1.0, float(np.max(np.abs(w))))
        no_progress = no_progress + 1 if tiny_step or predicted <= eps * abs(f) else 0
        _record(curve, callback, f / scale)
        if no_progress >= 5:
            message = (
                f"steps no longer change the objective: the gradient ({gmax:.1e}) is at the "
                f"round-off level of the data's dtype and stays above tol"
            )
            break
    else:
        if float(np.max(np.abs(g), initial=0.0)) <= tol:
            converged, message = True, "gradient below tol"
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
