r"""The softmax-regression objective, its gradient and its exact Hessian-vector product.

The objective over the flat parameter vector ``w = [W.ravel(), b]`` (``W`` of shape ``(T, N)``
row-major, then the ``T`` intercepts when they are fitted) is

.. math::

    f(W, b) = C \sum_i s_i \, \mathrm{CE}(W x_i + b, y_i) + \tfrac12 \lVert W \rVert_F^2

with ``C = inf`` meaning "no penalty, data term unscaled". It is the sum of a *data term*, which
is a sum over rows and so can be computed block by block (:func:`data_value_and_grad`,
:func:`data_hvp` take one block of rows and return its share), and the penalty, which is added
once (:class:`SoftmaxObjective`). An out-of-core implementation (Dask) subclasses
:class:`SoftmaxObjective`, maps the two data functions over its blocks and sums their results;
the solvers only see the :class:`Objective` protocol.

Cross-entropy, its gradient with respect to the logits and its Hessian-vector product come from
:mod:`softgrad.losses` (``reduction="sum"`` with per-row weights ``s_i``); this module only adds
the chain rule through the affine map ``Z = X W^T + b``:

.. math::

    \nabla_W = G^\top X,\quad \nabla_b = \textstyle\sum_i G_i,\qquad
    H[dW, db] = (\mathcal{H}_Z[dZ])^\top X \text{ with } dZ = X\,dW^\top + db.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ArrayObjective",
    "KroneckerFactors",
    "Objective",
    "SoftmaxObjective",
    "block_logits",
    "data_curvature_average",
    "data_curvature_moments",
    "data_feature_sums",
    "data_hessian",
    "data_hvp",
    "data_value_and_grad",
    "feature_moments",
    "moments_from_sums",
]


# Above this many features the N x N eigendecomposition of the Kronecker preconditioner costs
# more than the Hessian-vector products it saves; the diagonal one is used there.
_KRONECKER_MAX_FEATURES = 2048


# The row-sampled dense Hessian (:meth:`ArrayObjective.sampled_hessian`) is estimated on
# _SAMPLE_FRACTION of the rows, at least _SAMPLE_ROWS_PER_PARAM per parameter. It is offered
# up to _SAMPLED_HESSIAN_MAX_PARAMS parameters (its Cholesky factor costs P^3 / 3), from
# _MIN_ROWS_PER_PARAM rows per parameter (a sample of them is representative), and where its
# build, m P^2 / 2 multiply-adds in float32 SYRK (about 4x the speed of the skinny products
# with X), costs about two Hessian-vector products (2 n P): m P <= _BUILD_BUDGET n.
# 100000 x 50 x 10 (P = 510): m = 2040, about 12 ms against 10-17 ms per product; digits,
# MNIST-5k and 200000 x 100 x 20 keep the Kronecker preconditioner.
_SAMPLED_HESSIAN_MAX_PARAMS = 1024
_MIN_ROWS_PER_PARAM = 20
# ... and where a Hessian-vector product is worth saving: n P >= this (the build, Cholesky
# factor and condition estimate have a fixed cost of a few milliseconds; small problems keep
# the Kronecker preconditioner, and the same path as the Dask objective, which has no sample)
_SAMPLED_HESSIAN_MIN_WORK = 1 << 23
_SAMPLE_ROWS_PER_PARAM = 4
_SAMPLE_FRACTION = 1 / 50
_BUILD_BUDGET = 32


# From this many features on, BLAS computes the logits faster as (W X^T)^T than as X W^T
# (measured, one thread: MNIST-5k's 784 features 8 ms against 16 ms; 50 or 100 features:
# no gain, or a loss).
_WIDE_FEATURES = 256


class Objective(Protocol):
    """What a solver needs: a smooth convex function of a flat float64 vector.

    ``scale`` is a positive factor the solvers multiply the objective by before they test
    their tolerance (``1 / (C * sum(s))``, as scikit-learn does), so that ``tol`` does not
    depend on the number of rows or on ``C``.
    """

    n_params: int
    scale: float

    def value_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]: ...

    def hvp(self, w: np.ndarray, v: np.ndarray) -> np.ndarray: ...


def _cross_entropy() -> tuple[Any, Any]:
    # Imported on first use: the losses layer is below models, but keep import time small.
    from ..losses.cross_entropy import cross_entropy_hvp, cross_entropy_value_and_grad

    return cross_entropy_value_and_grad, cross_entropy_hvp


def block_logits(X: Any, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``X @ W.T + b`` for a dense array or a SciPy sparse matrix ``X`` (rows, N)."""
    z = np.asarray(X @ W.T)
    if b is not None:
        z += b
    return z


def _chain(X: Any, G: np.ndarray, fit_intercept: bool, dtype: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Pull a gradient ``G`` wrt the logits back to ``(dW, db)``: ``G^T X`` and ``sum_i G_i``."""
    G = G.astype(dtype, copy=False)
    # X.T @ G also works for CSR (a CSC product); for a dense X, G.T @ X is BLAS's fast layout
    gW = np.asarray(X.T @ G).T if hasattr(X, "multiply") else G.T @ X
    gb = G.sum(axis=0) if fit_intercept else None
    return gW, gb


def data_value_and_grad(
    X: Any,
    y: np.ndarray,
    row_weight: np.ndarray | None,
    W: np.ndarray,
    b: np.ndarray | None,
    *,
    logits: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray | None]:
    r"""The data term on one block of rows and its gradient.

    .. math:: D = \sum_i s_i\, \mathrm{CE}(W x_i + b, y_i)

    Parameters
    ----------
    X : array or scipy.sparse CSR matrix, shape (n, N)
    y : int array, shape (n,)
        Class indices in ``[0, T)``.
    row_weight : float array, shape (n,), or None
        Per-row weights ``s_i`` (sample weights times class weights); None means all 1.
    W : array, shape (T, N), ``X``'s dtype
    b : array, shape (T,), or None
        None when the intercept is not fitted.
    logits : array, shape (n, T), optional
        ``X @ W.T + b`` when the caller already has it.

    Returns
    -------
    (D, dD/dW, dD/db)
        ``D`` as a Python float; the gradients in ``X``'s dtype, ``dD/db`` None without intercept.
    """
    value_and_grad, _ = _cross_entropy()
    z = block_logits(X, W, b) if logits is None else logits
    # The loss of float32 logits is summed in float64 (softgrad's compute dtype); handing it
    # float64 logits also returns that sum unrounded, which the line searches need.
    loss, G = value_and_grad(z.astype(np.float64, copy=False), y, reduction="sum", sample_weight=row_weight)
    gW, gb = _chain(X, np.asarray(G), b is not None, W.dtype)
    return float(loss), gW, gb


def data_hvp(
    X: Any,
    y: np.ndarray,
    row_weight: np.ndarray | None,
    W: np.ndarray,
    b: np.ndarray | None,
    dW: np.ndarray,
    db: np.ndarray | None,
    *,
    logits: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""The Hessian of the data term on one block of rows times the direction ``(dW, db)``.

    .. math::

        dZ = X\,dW^\top + db,\qquad
        H_i\,dz_i = s_i\,(\operatorname{diag}(p_i) - p_i p_i^\top)\,dz_i,\qquad
        (H[dW], H[db]) = (\textstyle (H dZ)^\top X,\ \sum_i (H dZ)_i)

    Never forms the ``(TN)^2`` Hessian: two products with ``X`` and one ``O(nT)`` pass.
    Arguments as for :func:`data_value_and_grad`; returns arrays shaped like ``(dW, db)``.
    """
    _, hvp = _cross_entropy()
    z = block_logits(X, W, b) if logits is None else logits
    dz = block_logits(X, dW, db)
    z64, dz64 = z.astype(np.float64, copy=False), dz.astype(np.float64, copy=False)
    Hz = hvp(z64, y, dz64, reduction="sum", sample_weight=row_weight)
    return _chain(X, np.asarray(Hz), b is not None, W.dtype)


def data_curvature_moments(
    X: Any, squares: Any, row_weight: np.ndarray | None, logits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Curvature-weighted moments of one block of rows, for the Newton preconditioner.

    With :math:`q_{ik} = s_i\, p_{ik} (1 - p_{ik})` (the diagonal of row ``i``'s Hessian wrt
    its logits): :math:`S_0 = \sum_i q_{ik}`, :math:`S_1 = \sum_i q_{ik} x_i` and
    :math:`S_2 = \sum_i q_{ik} x_i^2`, shapes ``(T,)``, ``(T, N)``, ``(T, N)`` (float64).
    ``squares`` is ``X * X`` (dense or CSR), ``logits`` the block's ``X W^T + b``.
    """
    from ..core import softmax

    p = np.asarray(softmax(logits.astype(np.float64, copy=False), axis=1))
    q = p * (1.0 - p)
    if row_weight is not None:
        q *= row_weight[:, None]
    q_x = q.astype(X.dtype, copy=False)
    s1 = np.asarray(X.T @ q_x, dtype=np.float64).T
    s2 = np.asarray(squares.T @ q_x, dtype=np.float64).T
    return q.sum(axis=0), s1, s2


def data_hessian(
    X: Any, row_weight: np.ndarray | None, probabilities: np.ndarray, fit_intercept: bool
) -> np.ndarray:
    r"""The data term's Hessian on a block of rows, dense, in the layout of ``w = [W.ravel(), b]``.

    .. math::

        H = \sum_i s_i\,(\operatorname{diag}(p_i) - p_i p_i^\top) \otimes \tilde x_i \tilde x_i^\top,
        \qquad \tilde x_i = [x_i; 1] \text{ (with intercept) or } x_i

    by two BLAS products: the rank part as the Gram matrix (SYRK) of the rows
    :math:`r_i = \sqrt{s_i}\, [p_i \otimes x_i,\ p_i]` (already in ``w``'s layout), and the
    ``diag`` part's blocks :math:`\tilde X^\top \operatorname{diag}(s p_k) \tilde X` as one
    product of ``X~^T`` with ``[X~ * s p_1, ..., X~ * s p_T]``. The products run in float32
    (2-3x faster; a row-sampled estimate's sampling error is far larger). So that float32 does
    not meet the near-collinearity of uncentred features with the intercept (wine: alcohol
    13 +- 0.8), the Hessian is built in the variables ``(W, b' = b + W mu)`` with the features
    centred at their weighted mean ``mu`` and taken back to ``(W, b)`` in float64:
    :math:`H = J^\top H_c J` with :math:`J` the change of variables.
    ``X`` dense or CSR ``(m, N)``, ``probabilities`` the softmax of its logits ``(m, T)``;
    float64 ``(T N + T, T N + T)`` (``(T N, T N)`` without intercept).
    """
    X64 = np.asarray(X.toarray() if hasattr(X, "multiply") else X, dtype=np.float64)
    m, n = X64.shape
    p = np.asarray(probabilities, dtype=np.float64)
    t = p.shape[1]
    s = np.ones(m) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
    mu = (s @ X64) / max(float(s.sum()), np.finfo(float).tiny) if fit_intercept else np.zeros(n)
    Xs = (X64 - mu).astype(np.float32)
    root = (p * np.sqrt(s)[:, None]).astype(np.float32)
    rank = (root[:, :, None] * Xs[:, None, :]).reshape(m, t * n)
    if fit_intercept:
        rank = np.hstack([rank, root])
    H = -(rank.T @ rank).astype(np.float64)  # NumPy calls BLAS's SYRK for a^T a
    Xt = np.hstack([Xs, np.ones((m, 1), dtype=np.float32)]) if fit_intercept else Xs
    d = Xt.shape[1]
    scaled = (p * s[:, None]).astype(np.float32)
    diag = (Xt.T @ (Xt[:, None, :] * scaled[:, :, None]).reshape(m, t * d)).astype(np.float64)
    k_b = t * n
    for k in range(t):
        block = diag[:, k * d : (k + 1) * d]
        w_k = slice(k * n, (k + 1) * n)
        H[w_k, w_k] += block[:n, :n]
        if fit_intercept:
            H[w_k, k_b + k] += block[:n, n]
            H[k_b + k, w_k] += block[n, :n]
            H[k_b + k, k_b + k] += block[n, n]
    H = 0.5 * (H + H.T)  # the float32 diag blocks are symmetric only to rounding
    return _uncentre(H, mu, t) if fit_intercept else H


def _uncentre(Hc: np.ndarray, mu: np.ndarray, t: int) -> np.ndarray:
    """``J^T Hc J`` for ``J: (W, b) -> (W, b + W mu)``: column (and row) ``W[k, a]`` gains
    ``mu[a]`` times column (row) ``b[k]``."""
    k_b = t * mu.size
    H = Hc.copy()
    H[:, :k_b] += (Hc[:, k_b:][:, :, None] * mu[None, None, :]).reshape(Hc.shape[0], k_b)
    H[:k_b, :] += (H[k_b:, :][:, None, :] * mu[None, :, None]).reshape(k_b, Hc.shape[0])
    return H


@dataclass
class KroneckerFactors:
    r"""A Kronecker-factored model of the Hessian, for the Newton preconditioner.

    The data term's Hessian in ``(W, b)`` is :math:`\sum_i s_i A_i \otimes \tilde x_i \tilde
    x_i^\top` with :math:`A_i = \operatorname{diag}(p_i) - p_i p_i^\top` and :math:`\tilde x_i
    = [x_i; 1]`. Modelling the curvature as independent of the row (K-FAC),

    .. math:: H \approx C\,\bar A \otimes \bar B + I \otimes \operatorname{diag}(1_N, 0),
        \qquad \bar A = \textstyle\sum_i s_i A_i,\quad
        \bar B = \textstyle\sum_i s_i \tilde x_i \tilde x_i^\top / \sum_i s_i,

    and with the features centred at their mean ``mu`` (the change of variables ``b' = b + W
    mu``, which leaves ``f`` unchanged) :math:`\bar B` is block diagonal: the features'
    covariance ``V diag(lam) V^T`` and 1 for the intercept. In the basis of the eigenvectors of
    :math:`\bar A` and :math:`\bar B` the model is diagonal, so it is inverted exactly at the
    cost of four small matrix products.
    """

    mu: np.ndarray  # (N,) the row-weighted feature mean
    lam: np.ndarray  # (N,) eigenvalues of the centred feature covariance
    V: np.ndarray  # (N, N) its eigenvectors
    a: np.ndarray  # (T,) eigenvalues of sum_i s_i A_i
    U: np.ndarray  # (T, T) its eigenvectors


def feature_moments(
    X: Any, row_weight: np.ndarray | None, centre: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(mu, lam, V)``: the row-weighted mean of the features and the eigenpairs of their
    centred covariance :math:`\sum_i s_i (x_i - \mu)(x_i - \mu)^\top / \sum_i s_i`
    (``mu = 0``, the second moment, when not ``centre``).

    One ``N x N`` product with ``X`` and one symmetric eigendecomposition (float64).
    """
    n = X.shape[0]
    s = np.ones(n) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
    total = max(float(s.sum()), np.finfo(float).tiny)
    if centre:
        mu = np.asarray(X.T @ s.astype(X.dtype), dtype=np.float64).ravel() / total
    else:
        mu = np.zeros(X.shape[1])
    if hasattr(X, "multiply"):  # scipy.sparse: centring would densify X; subtract the mean after
        Xs = X.multiply(np.sqrt(s)[:, None].astype(X.dtype)).tocsr() if row_weight is not None else X
        cov = np.asarray((Xs.T @ Xs).todense(), dtype=np.float64) / total - np.outer(mu, mu)
    else:
        Xc = X - mu.astype(X.dtype)
        if row_weight is not None:
            Xc *= np.sqrt(s).astype(X.dtype)[:, None]
        cov = np.asarray(Xc.T @ Xc, dtype=np.float64) / total
    lam, V = np.linalg.eigh(cov)
    return mu, np.maximum(lam, 0.0), V


def data_feature_sums(X: Any, row_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""One block's share of the feature moments: :math:`(\sum_i s_i,\ \sum_i s_i x_i,\
    \sum_i s_i x_i x_i^\top)` in float64, for :func:`moments_from_sums` (blocks add up)."""
    s = np.ones(X.shape[0]) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
    if hasattr(X, "multiply"):
        X64 = X.astype(np.float64)
        gram = np.asarray((X64.T @ X64.multiply(s[:, None]).tocsr()).todense())
    else:
        X64 = np.asarray(X, dtype=np.float64)
        gram = X64.T @ (X64 * s[:, None])
    return np.array([s.sum()]), np.asarray(X64.T @ s).ravel(), gram


def moments_from_sums(
    total: float, first: np.ndarray, gram: np.ndarray, centre: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu, lam, V)`` as :func:`feature_moments` returns, from :func:`data_feature_sums`."""
    total = max(float(total), np.finfo(float).tiny)
    mu = first / total if centre else np.zeros_like(first)
    lam, V = np.linalg.eigh(gram / total - np.outer(mu, mu))
    return mu, np.maximum(lam, 0.0), V


def data_curvature_average(
    X: Any, row_weight: np.ndarray | None, W: np.ndarray, b: np.ndarray | None
) -> np.ndarray:
    """One block's share of :func:`curvature_average` at ``(W, b)`` (blocks add up)."""
    from ..core import softmax

    p = np.asarray(softmax(block_logits(X, W, b).astype(np.float64, copy=False), axis=1))
    return curvature_average(p, row_weight)


def curvature_average(probabilities: np.ndarray, row_weight: np.ndarray | None) -> np.ndarray:
    r""":math:`\sum_i s_i (\operatorname{diag}(p_i) - p_i p_i^\top)`, ``(T, T)`` float64, from
    the probabilities ``p_i``: the curvature wrt the logits summed over the rows."""
    p = probabilities.astype(np.float64, copy=False)
    sp = p if row_weight is None else p * row_weight[:, None]
    return np.diag(sp.sum(axis=0)) - sp.T @ p


def _row_independent(W: np.ndarray, b: np.ndarray | None) -> bool:
    """Whether every row has the same logits ``b`` (``W = 0``, finite intercepts)."""
    return not np.any(W) and (b is None or bool(np.all(np.isfinite(b))))


@dataclass
class _ZeroSums:
    """The row sums a point with ``W = 0`` needs, float64: ``S = sum_i s_i``, ``S_k`` (the
    weight of class ``k``), ``sum_i s_i x_i`` and the class sums ``sum_{y_i = k} s_i x_i``."""

    total: float
    per_class: np.ndarray  # (T,)
    feature_sum: np.ndarray  # (N,)
    class_sums: np.ndarray  # (T, N)

    @classmethod
    def of(cls, X: Any, y: np.ndarray, row_weight: np.ndarray | None, n_classes: int) -> _ZeroSums:
        import scipy.sparse as sp

        from ._data_kernels import class_sums as dense_class_sums

        n = X.shape[0]
        s = np.ones(n) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
        if sp.issparse(X):
            onehot = sp.csr_matrix((s, (np.asarray(y), np.arange(n))), shape=(n_classes, n))
            class_sums = np.asarray((onehot @ X).toarray(), dtype=np.float64)
        else:
            class_sums = dense_class_sums(X, y, row_weight, n_classes)
        per_class = np.bincount(np.asarray(y), weights=s, minlength=n_classes).astype(np.float64)
        return cls(float(per_class.sum()), per_class, class_sums.sum(axis=0), class_sums)


# _StepProducts combines at most this many steps in a row before the logits are computed
# afresh (each combination adds its rounding, about one unit in the last place of the logits).
_STEP_CHAIN = 8


class _StepProducts:
    r"""The logits at the end of a Newton step without a product with ``X``.

    CG builds the step as :math:`p = \sum_j \alpha_j d_j` from the directions it multiplies
    by the Hessian, and each of those products begins with :math:`X\,dW_j^\top`. Summing
    :math:`\alpha_j X\,dW_j^\top` alongside (:meth:`add`, one pass over ``n x T``) gives
    :math:`X (W + \Delta W)^\top = X W^\top + \sum_j \alpha_j X\,dW_j^\top` for the next
    gradient, in place of a GEMM with ``X`` (100000 x 50 x 10: about 1 ms per CG step against
    8 ms per gradient). It is used only when the new point is bitwise the start plus the
    summed step (the solver forms ``w + p`` with the same operations), and at most
    ``_STEP_CHAIN`` times in a row.
    """

    def __init__(self) -> None:
        self.W: np.ndarray | None = None  # the point whose logits X W^T are in the buffer "z"
        self.chain = 0
        self.start: np.ndarray | None = None  # the step's start W, or None when not tracking
        self.delta: np.ndarray | None = None  # the step so far (flat, like W)
        self.products: np.ndarray | None = None  # its X delta^T (the buffer "xs")
        self.last: np.ndarray | None = None  # the last product's direction dW
        self.empty = True  # no part added yet

    def forget(self) -> None:
        self.W, self.start, self.last = None, None, None

    def arrived(self, W: np.ndarray) -> None:
        """The buffer "z" now holds ``X W^T``."""
        self.W, self.start, self.last = W.copy(), None, None

    def begin(self, W: np.ndarray, products: np.ndarray) -> None:
        if self.W is None or not np.array_equal(self.W, W):
            self.start = None
            return
        self.start, self.delta, self.products, self.last = W.copy(), np.zeros(W.size), products, None
        self.empty = True

    def tracking(self, W: np.ndarray) -> bool:
        return self.start is not None and np.array_equal(self.start, W)

    def direction(self, dW: np.ndarray) -> None:
        self.last = np.array(dW, dtype=np.float64).ravel()

    def add(self, alpha: float, kept: np.ndarray) -> None:
        if self.start is None or self.last is None or self.delta is None or self.products is None:
            self.start = None
            return
        from scipy.linalg.blas import daxpy

        self.delta = self.delta + alpha * self.last  # as the solver sums its step
        if self.empty:
            np.multiply(kept, alpha, out=self.products)
            self.empty = False
        else:  # in place, one pass (NumPy's products += alpha * kept makes two: 1.5 ms, this 0.4)
            daxpy(kept.reshape(-1), self.products.reshape(-1), a=alpha)

    def logits_at(self, W: np.ndarray, out: np.ndarray) -> bool:
        """``out += X (W - W_0)^T`` (``out`` holding ``X W_0^T``) where ``W`` is the start plus
        the summed step; False (``out`` unchanged) elsewhere."""
        if self.start is None or self.delta is None or self.products is None or self.chain >= _STEP_CHAIN:
            self.chain = 0
            return False
        if not np.array_equal(self.start.ravel() + self.delta, np.asarray(W).ravel()):
            self.chain = 0
            return False
        out += self.products
        self.chain += 1
        return True


def _weighted_gram(X: Any, row_weight: np.ndarray | None) -> np.ndarray:
    """``X^T diag(s) X`` in float64 (BLAS's SYRK for unweighted dense ``X``)."""
    if hasattr(X, "multiply"):
        X64 = X.astype(np.float64)
        if row_weight is None:
            return np.asarray((X64.T @ X64).todense())
        right = X64.multiply(np.asarray(row_weight, dtype=np.float64)[:, None]).tocsr()
        return np.asarray((X64.T @ right).todense())
    X64 = np.asarray(X, dtype=np.float64)
    if row_weight is None:
        return X64.T @ X64
    return X64.T @ (X64 * np.asarray(row_weight, dtype=np.float64)[:, None])


class SoftmaxObjective:
    r"""The full objective: a data term (left to subclasses) plus the penalty ``0.5 ||W||^2``.

    .. math:: f(w) = C\,D(W, b) + \tfrac12 \lVert W\rVert_F^2 \qquad (f = D \text{ when } C = \infty)

    Subclasses implement :meth:`data_value_and_grad` and :meth:`data_hvp` on the rows they hold
    (in memory, or as a sum over Dask blocks). ``w`` is always float64 (what SciPy's solvers
    use); ``W`` and ``b`` are handed to the data term in the training dtype, so float32 data
    trains in float32.

    Parameters
    ----------
    n_features, n_classes : int
    C : float
        Inverse penalty strength, ``> 0``; ``inf`` for none.
    fit_intercept : bool
    dtype : numpy dtype
        float32 or float64, the dtype of the data.
    row_weight_sum : float
        Sum of the row weights; the solvers minimize ``f / (C * row_weight_sum)`` (``f / row_weight_sum`` when
        ``C`` is infinite) so that their tolerance does not depend on it.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        *,
        C: float,
        fit_intercept: bool,
        dtype: Any,
        row_weight_sum: float,
    ) -> None:
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self.C = float(C)
        self.fit_intercept = bool(fit_intercept)
        self.dtype = np.dtype(dtype)
        self.n_params = self.n_classes * self.n_features + (self.n_classes if fit_intercept else 0)
        penalized = np.isfinite(self.C)
        self.scale = 1.0 / ((self.C if penalized else 1.0) * max(float(row_weight_sum), np.finfo(float).tiny))

    # --- packing -------------------------------------------------------------------------
    def unpack(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(W, b)`` in the training dtype from the flat float64 vector ``w``."""
        k = self.n_classes * self.n_features
        W = w[:k].reshape(self.n_classes, self.n_features).astype(self.dtype, copy=False)
        b = w[k:].astype(self.dtype, copy=False) if self.fit_intercept else None
        return W, b

    def pack(self, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """The flat float64 vector ``[W.ravel(), b]``."""
        parts = [np.asarray(W, dtype=np.float64).ravel()]
        if self.fit_intercept:
            parts.append(np.asarray(b, dtype=np.float64).ravel())
        return np.concatenate(parts)

    # --- the data term: subclasses -------------------------------------------------------
    def data_value_and_grad(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def data_hvp(
        self, W: np.ndarray, b: np.ndarray | None, dW: np.ndarray, db: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    # --- the full objective --------------------------------------------------------------
    def _project(self, gW: np.ndarray, gb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Remove the components along the directions ``f`` does not depend on.

        Adding one constant to every intercept, or (without penalty) one vector to every row of
        ``W``, leaves every softmax unchanged, so the exact gradient and Hessian-vector
        product have zero mean over the classes there. Their round-off does not; a Newton or
        quasi-Newton step divides it by a zero curvature, and the intercepts drift to values
        (1e5 with float32 data) where the logits lose every digit. Taking the mean out keeps
        the iterates where they started along those directions.
        """
        if gb is not None:
            gb = gb - gb.mean(dtype=np.float64).astype(gb.dtype)
        if not np.isfinite(self.C):
            gW = gW - gW.mean(axis=0, dtype=np.float64).astype(gW.dtype)
        return gW, gb

    def project(self, v: np.ndarray) -> np.ndarray:
        """The flat vector ``v`` without its components along the directions ``f`` ignores."""
        k = self.n_classes * self.n_features
        v = v.copy()
        if self.fit_intercept:
            v[k:] -= v[k:].mean()
        if not np.isfinite(self.C):
            V = v[:k].reshape(self.n_classes, self.n_features)
            V -= V.mean(axis=0)
        return v

    def data_curvature_moments(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def preconditioner(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""A preconditioner for Newton's CG at ``w``: centres ``mu`` and a diagonal ``d``.

        The intercept is not penalized, so ``b_k = b'_k - W_k \cdot \mu_k`` changes nothing in
        ``f``; with ``mu_k`` the curvature-weighted mean of the rows (class ``k``), the
        Hessian in ``(W, b')`` has the features centred, which takes away the near-collinearity
        of uncentred features with the intercept (wine: alcohol 13 +- 0.8). ``d`` is the
        diagonal of the Hessian in ``(W, b')`` (float64, layout of ``w``); ``mu`` is
        ``(T, N)``, zeros without intercept.
        """
        W, b = self.unpack(w)
        s0, s1, s2 = self.data_curvature_moments(W, b)
        c = self.C if np.isfinite(self.C) else 1.0
        penalty = 1.0 if np.isfinite(self.C) else 0.0
        if self.fit_intercept:
            mu = s1 / np.maximum(s0, np.finfo(float).tiny)[:, None]
            dW = s2 - s1 * mu
        else:
            mu = np.zeros_like(s1)
            dW = s2
        dW = np.maximum(dW, 1e-10 * s2) * c + penalty
        parts = [dW.ravel()]
        if self.fit_intercept:
            parts.append(s0 * c)
        d = np.concatenate(parts)
        floor = 1e-12 * max(float(np.max(d, initial=0.0)), np.finfo(float).tiny)
        return mu, np.maximum(d, floor)

    def kronecker_factors(self, w: np.ndarray) -> KroneckerFactors:
        """:class:`KroneckerFactors` at ``w``; subclasses that can compute them cheaply override
        this (NotImplementedError: the solver falls back to :meth:`preconditioner`)."""
        raise NotImplementedError

    def sampled_hessian(self, w: np.ndarray) -> np.ndarray:
        """A dense estimate of the Hessian of ``f`` at ``w`` from a sample of the rows, for
        subclasses where it pays (NotImplementedError: the solver uses another preconditioner)."""
        raise NotImplementedError

    def exact_hessian(self, w: np.ndarray) -> np.ndarray:
        """The dense Hessian of ``f`` at ``w``, exact, for subclasses that can form it cheaply
        at some points (NotImplementedError elsewhere: the solver uses an estimate)."""
        raise NotImplementedError

    def add_null_space(self, M: np.ndarray, weight: float) -> None:
        """In place: ``M += weight * sum_j v_j v_j^T`` over an orthonormal basis ``v_j`` of the
        directions ``f`` ignores (the common shift of the intercepts; without penalty, of the
        rows of ``W``), which makes a Hessian estimate invertible there."""
        t, n = self.n_classes, self.n_features
        k = t * n
        if self.fit_intercept:
            M[k:, k:] += weight / t
        if not np.isfinite(self.C):
            rows = np.arange(t)[:, None, None] * n + np.arange(n)[None, None, :]
            cols = np.arange(t)[None, :, None] * n + np.arange(n)[None, None, :]
            M[rows, cols] += weight / t

    def value_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """``f(w)`` and its gradient (float64, length ``n_params``)."""
        W, b = self.unpack(w)
        d, gW, gb = self.data_value_and_grad(W, b)
        g = self.pack(*self._project(gW, gb))
        if not np.isfinite(self.C):
            return d, g
        W64 = w[: self.n_classes * self.n_features]
        f = self.C * d + 0.5 * float(W64 @ W64)
        g *= self.C
        g[: W64.size] += W64
        return f, g

    def hvp(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The exact Hessian of ``f`` at ``w`` times ``v`` (float64, length ``n_params``)."""
        W, b = self.unpack(w)
        dW, db = self.unpack(v)
        return self._hvp_total(self.data_hvp(W, b, dW, db), v)

    def _hvp_total(self, data: tuple[np.ndarray, np.ndarray | None], v: np.ndarray) -> np.ndarray:
        """The full objective's Hessian times ``v`` from the data term's (penalty added)."""
        h = self.pack(*self._project(*data))
        if not np.isfinite(self.C):
            return h
        h *= self.C
        k = self.n_classes * self.n_features
        h[:k] += v[:k]
        return h


class ArrayObjective(SoftmaxObjective):
    """:class:`SoftmaxObjective` over rows held in memory (dense array or CSR matrix).

    The data term is the fused one of :mod:`._data_kernels`: the logits go by BLAS into a
    buffer reused by every call, one pass over the rows turns them into the gradient wrt the
    logits and keeps the probabilities, and the Hessian-vector products at that point (all a
    Newton step asks for) cost two products with ``X`` and one light pass. Where that pass meets
    a non-finite logit it hands the call to the reference path of :mod:`softgrad.losses`
    (:func:`data_value_and_grad`, :func:`data_hvp`), which treats those as the losses do.
    """

    def __init__(
        self,
        X: Any,
        y: np.ndarray,
        row_weight: np.ndarray | None,
        n_classes: int,
        *,
        C: float,
        fit_intercept: bool,
    ) -> None:
        total = float(X.shape[0]) if row_weight is None else float(np.sum(row_weight, dtype=np.float64))
        super().__init__(
            X.shape[1], n_classes, C=C, fit_intercept=fit_intercept, dtype=X.dtype, row_weight_sum=total
        )
        self.X, self.y, self.row_weight = X, y, row_weight
        self._buffers: dict[str, np.ndarray] = {}
        # (W, b) at which the buffer "p" holds the probabilities; None when it holds none
        self._at: tuple[np.ndarray, np.ndarray | None] | None = None
        self._squares: Any = None  # X * X, made on the first preconditioner a solver asks for
        self._moments: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # mu, lam, V
        self._sample: tuple[np.ndarray, Any, np.ndarray | None] | None = None  # Hessian's rows
        self._zero_sums: _ZeroSums | None = None  # the sums a point with W = 0 needs (once)
        # dense float64 data: the logits of a Newton step's end point from its CG products
        self._step: _StepProducts | None = (
            _StepProducts() if not hasattr(X, "multiply") and X.dtype == np.float64 else None
        )
        self._gram: np.ndarray | None = None  # X^T diag(s) X, for the Hessian at W = 0 (once)

    def _buffer(self, name: str) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = np.empty((self.X.shape[0], self.n_classes), dtype=self.X.dtype)
        return buf

    def _products_into(self, name: str, W: np.ndarray) -> np.ndarray:
        """``X W^T`` by BLAS into the buffer ``name`` (the kernels add the intercepts as they
        read it)."""
        X = self.X
        out = self._buffer(name)
        if hasattr(X, "multiply"):  # scipy.sparse has no out=
            out[...] = X @ W.T
        elif self.n_features >= _WIDE_FEATURES:
            np.copyto(out, (W @ X.T).T)
        else:
            np.matmul(X, W.T, out=out)
        return out

    def _back(self, G: np.ndarray, colsum: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(G^T X, sum_i G_i)`` with the column sums from the kernel's pass (``G.sum(axis=0)``
        took 2.4 ms of a 25 ms gradient on 100000 x 10); ``G^T X`` in that order is BLAS's fast
        layout for a C-ordered ``X`` (measured: 4x faster than ``(X^T G)^T`` on MNIST-5k)."""
        X = self.X
        gW = (X.T @ G).T if hasattr(X, "multiply") else G.T @ X
        return np.asarray(gW), (colsum.astype(G.dtype) if self.fit_intercept else None)

    def _is_at(self, W: np.ndarray, b: np.ndarray | None) -> bool:
        at = self._at
        return at is not None and np.array_equal(at[0], W) and (b is None or np.array_equal(at[1], b))  # type: ignore[arg-type]

    def data_value_and_grad(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        from ._data_kernels import ce_value_grad

        self._at = None
        step = self._step
        if _row_independent(W, b):
            if step is not None:
                step.forget()
            return self._value_and_grad_at_zero(W, b)
        if step is None:
            Z = G = self._products_into("z", W)
        else:  # the logits X W^T are kept ("z"), the gradient goes to "g"
            Z, G = self._buffer("z"), self._buffer("g")
            if not step.logits_at(W, Z):
                self._products_into("z", W)
            step.arrived(W)
        colsum = np.empty(self.n_classes)
        loss, bad = ce_value_grad(Z, self.y, self.row_weight, self._buffer("p"), colsum, b, out=G)
        if bad:
            if step is not None:
                step.forget()
            return data_value_and_grad(self.X, self.y, self.row_weight, W, b)
        self._at = (W.copy(), None if b is None else b.copy())
        gW, gb = self._back(G, colsum)
        return loss, gW, gb

    def step_begin(self, w: np.ndarray) -> None:
        """A solver's step from ``w`` begins: :meth:`step_add` adds its parts (see
        :class:`_StepProducts`). A no-op where the data are not dense float64."""
        if self._step is not None:
            W, _ = self.unpack(w)
            self._step.begin(W, self._buffer("xs"))

    def step_add(self, alpha: float) -> None:
        """The step so far gains ``alpha`` times the direction of the last Hessian-vector
        product (whose products with ``X`` are kept)."""
        if self._step is not None:
            self._step.add(alpha, self._buffer("xd"))

    def _sums_at_zero(self) -> _ZeroSums:
        if self._zero_sums is None:
            self._zero_sums = _ZeroSums.of(self.X, self.y, self.row_weight, self.n_classes)
        return self._zero_sums

    def _value_and_grad_at_zero(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        r"""The data term and its gradient where ``W = 0``: every row has the logits ``b`` and
        the probabilities ``p = softmax(b)``, so

        .. math:: D = S \operatorname{logsumexp}(b) - \textstyle\sum_k S_k b_k,\quad
            \nabla_W D = p\,(\textstyle\sum_i s_i x_i)^\top - (\sum_{y_i = k} s_i x_i)_k,\quad
            \nabla_b D = S p - (S_k)_k

        from per-class sums made once (one sparse product with ``X``), not the two products
        with ``X`` and the pass over the rows of the general point (the solvers start at
        ``W = 0``: 100000 x 50 x 10, about 5 ms instead of 28). The probability buffer is
        filled with ``p`` for the Hessian-vector products at this point."""
        sums = self._sums_at_zero()
        logits = np.zeros(self.n_classes) if b is None else np.asarray(b, dtype=np.float64)
        top = float(np.max(logits))
        e = np.exp(logits - top)
        p = e / e.sum()
        lse = top + float(np.log(e.sum()))
        loss = sums.total * lse - float(sums.per_class @ logits)
        gW = np.outer(p, sums.feature_sum) - sums.class_sums
        gb = sums.total * p - sums.per_class if b is not None else None
        np.copyto(self._buffer("p"), p.astype(self.X.dtype))
        self._at = (W.copy(), None if b is None else b.copy())
        return loss, gW.astype(W.dtype), None if gb is None else gb.astype(W.dtype)

    def _probabilities(self, W: np.ndarray, b: np.ndarray | None) -> np.ndarray | None:
        """The probabilities at ``(W, b)`` (None where the logits are not all finite)."""
        if not self._is_at(W, b):
            self.data_value_and_grad(W, b)
        return self._buffers["p"] if self._is_at(W, b) else None

    def data_hvp(
        self, W: np.ndarray, b: np.ndarray | None, dW: np.ndarray, db: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        from ._data_kernels import ce_hvp_rows

        P = self._probabilities(W, b)
        if P is None:
            return data_hvp(self.X, self.y, self.row_weight, W, b, dW, db)
        colsum = np.empty(self.n_classes)
        out = self._buffer("dz")
        if self._step is not None and self._step.tracking(W):
            dZ = self._products_into("xd", dW)  # kept for step_add
            self._step.direction(dW)
        else:
            dZ = self._products_into("dz", dW)
        ce_hvp_rows(P, self.row_weight, dZ, colsum, db, out=out)
        return self._back(out, colsum)

    def data_curvature_moments(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._squares is None:
            X = self.X
            self._squares = X.multiply(X).tocsr() if hasattr(X, "multiply") else np.square(X)
        return data_curvature_moments(self.X, self._squares, self.row_weight, block_logits(self.X, W, b))

    def _feature_moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The row-weighted feature mean and the eigenpairs of the centred covariance (once)."""
        if self._moments is None:
            self._moments = feature_moments(self.X, self.row_weight, centre=self.fit_intercept)
        return self._moments

    def kronecker_factors(self, w: np.ndarray) -> KroneckerFactors:
        """:class:`KroneckerFactors` at ``w``: the features' moments once per fit, the curvature
        average from the probabilities the last gradient left (NotImplementedError when ``X``
        has too many features for an ``N x N`` eigendecomposition to pay off)."""
        if self.n_features > _KRONECKER_MAX_FEATURES:
            raise NotImplementedError
        W, b = self.unpack(w)
        P = self._probabilities(W, b)
        if P is None:
            raise NotImplementedError
        mu, lam, V = self._feature_moments()
        a, U = np.linalg.eigh(curvature_average(P, self.row_weight))
        return KroneckerFactors(mu, lam, V, a, U)

    def _sample_size(self) -> int:
        """``_SAMPLE_FRACTION`` of the rows, at least ``_SAMPLE_ROWS_PER_PARAM`` per parameter."""
        n = self.X.shape[0]
        return min(n, max(int(_SAMPLE_FRACTION * n), _SAMPLE_ROWS_PER_PARAM * self.n_params))

    def _hessian_sample(self) -> np.ndarray:
        """The rows of the Hessian sample, evenly spaced, so sorted data is sampled evenly."""
        n = self.X.shape[0]
        return np.unique(np.linspace(0, n - 1, self._sample_size()).round().astype(np.intp))

    def sampled_hessian(self, w: np.ndarray) -> np.ndarray:
        r"""The Hessian of ``f`` at ``w`` with the data term estimated on a fixed, evenly spaced
        sample ``S`` of the rows (:func:`data_hessian` times :math:`\sum_i s_i / \sum_{i \in S}
        s_i`), the penalty exact. Offered (else NotImplementedError) where its build costs
        about two Hessian-vector products and the rows far outnumber the parameters (see
        ``_SAMPLED_HESSIAN_MAX_PARAMS``, ``_SAMPLED_HESSIAN_MIN_WORK``, ``_MIN_ROWS_PER_PARAM``,
        ``_BUILD_BUDGET``).
        """
        n = self.X.shape[0]
        if not self._dense_hessian_pays():
            raise NotImplementedError
        W, b = self.unpack(w)
        P = self._probabilities(W, b)
        if P is None:
            raise NotImplementedError
        if self._sample is None:
            rows = self._hessian_sample()
            weights = None if self.row_weight is None else self.row_weight[rows]
            self._sample = (rows, self.X[rows], weights)
        rows, Xs, weights = self._sample
        total = float(n) if self.row_weight is None else float(np.sum(self.row_weight, dtype=np.float64))
        part = float(rows.size) if weights is None else float(np.sum(weights, dtype=np.float64))
        H = data_hessian(Xs, weights, P[rows], self.fit_intercept)
        H *= (self.C if np.isfinite(self.C) else 1.0) * total / max(part, np.finfo(float).tiny)
        if np.isfinite(self.C):
            k = self.n_classes * self.n_features
            H[np.arange(k), np.arange(k)] += 1.0
        return H

    def _dense_hessian_pays(self) -> bool:
        """Whether a dense ``P x P`` Hessian (estimate) is worth its build and Cholesky factor
        here (see ``_SAMPLED_HESSIAN_MAX_PARAMS`` and below)."""
        n, n_params = self.X.shape[0], self.n_params
        return not (
            n_params > _SAMPLED_HESSIAN_MAX_PARAMS
            or n * n_params < _SAMPLED_HESSIAN_MIN_WORK
            or n < _MIN_ROWS_PER_PARAM * n_params
            or self._sample_size() * n_params > _BUILD_BUDGET * n
        )

    def exact_hessian(self, w: np.ndarray) -> np.ndarray:
        r"""The Hessian of ``f`` where ``W = 0`` (the solvers' starting point), exact and cheap:
        every row has the same probabilities ``p = softmax(b)``, so with
        :math:`A = \operatorname{diag}(p) - p p^\top` and :math:`\tilde x_i = [x_i; 1]`

        .. math:: H = C\, A \otimes \textstyle\sum_i s_i \tilde x_i \tilde x_i^\top
            + I \otimes \operatorname{diag}(1_N, 0)

        from the Gram matrix :math:`X^\top \operatorname{diag}(s) X` (one ``N x N`` product with
        ``X``, made once, float64) and the feature sums. Offered where the dense Hessian
        estimate is (:meth:`sampled_hessian`); NotImplementedError at any other point, where
        the rows' curvatures differ."""
        W, b = self.unpack(w)
        if not (self._dense_hessian_pays() and _row_independent(W, b)):
            raise NotImplementedError
        sums = self._sums_at_zero()
        if self._gram is None:
            self._gram = _weighted_gram(self.X, self.row_weight)
        logits = np.zeros(self.n_classes) if b is None else np.asarray(b, dtype=np.float64)
        e = np.exp(logits - np.max(logits))
        p = e / e.sum()
        A = (np.diag(p) - np.outer(p, p)) * (self.C if np.isfinite(self.C) else 1.0)
        H = np.kron(A, self._gram)
        if self.fit_intercept:
            cross = np.kron(A, sums.feature_sum[:, None])
            H = np.block([[H, cross], [cross.T, A * sums.total]])
        if np.isfinite(self.C):
            k = self.n_classes * self.n_features
            H[np.arange(k), np.arange(k)] += 1.0
        return H

    def rows(self, idx: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """The block ``(X[idx], y[idx], row_weight[idx])``, for mini-batch solvers."""
        return self.X[idx], self.y[idx], None if self.row_weight is None else self.row_weight[idx]
