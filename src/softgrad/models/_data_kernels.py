r"""The estimator's fused data term: cross-entropy value, gradient and HVP inner step in one pass.

:class:`~softgrad.models._objective.ArrayObjective` computes the logits ``Z = X W^T + b`` with
BLAS into a buffer it reuses, then one pass of :func:`ce_value_grad` over the (short) rows

.. math::

    p_i = \operatorname{softmax}(z_i),\qquad
    D = \sum_i s_i\,(\operatorname{logsumexp}(z_i) - z_{i y_i}),\qquad
    G_i = s_i\,(p_i - e_{y_i})

writes ``G`` over ``Z`` (in place) and ``p`` into a second buffer, which is all a
Hessian-vector product at the same point needs: with ``dZ = X dW^T + db`` (BLAS),
:func:`ce_hvp_rows` turns ``dZ`` in place into :math:`s_i\,p_i \odot (dz_i - p_i \cdot dz_i)`,
and the products back, ``G^T X``, are BLAS again. Nothing ``n x T`` is allocated per iteration,
and float32 data stays float32 in the buffers (the arithmetic of a row is float64).

Accuracy: the maximum's term contributes exactly 1 to the softmax denominator ``1 + rest``, so
``log1p(rest)`` keeps the loss of a confident row (``~rest``) to its relative accuracy, and the
gradient's target entry is ``-(1 + rest - e_y) / (1 + rest)``, never ``p_y - 1`` (which would
cancel). Rows with a non-finite maximum or a NaN are reported (``bad``), not computed: the caller takes
the reference path of :mod:`softgrad.losses` for those calls. Blocks of rows have a fixed size,
so the sums do not depend on the number of threads.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from ..core._fastexp import exp_fast, log1p_pos

__all__ = ["ce_hvp_rows", "ce_value_grad", "class_sums"]

_BLOCK = 512  # rows per block; fixed, so the summation order is too
_PARALLEL_ENTRIES = 1 << 22


@numba.njit(cache=True, error_model="numpy")
def _block_value_grad(  # pragma: no cover - jitted
    Z: Any, y: Any, s: Any, has_s: bool, P: Any, lo: int, hi: int, e: Any, colsum: Any, shift: Any, G: Any
) -> tuple[float, int]:
    # The block is copied transposed into e (classes x rows), so that every loop but the two
    # copies runs across the rows, contiguous and vectorized, one class at a time.
    t = Z.shape[1]
    r = hi - lo
    for i in range(r):
        for k in range(t):
            e[k, i] = np.float64(Z[lo + i, k]) + shift[k]
    m = np.empty(r)
    j = np.zeros(r, dtype=np.int64)
    for i in range(r):
        m[i] = e[0, i]
    for k in range(1, t):
        for i in range(r):
            v = e[k, i]
            bigger = v > m[i]
            m[i] = v if bigger else m[i]
            j[i] = k if bigger else j[i]
    bad = 0
    for i in range(r):
        finite = np.isfinite(m[i])
        bad += 0 if finite else 1
        m[i] = m[i] if finite else 0.0  # the row's results are not used (bad > 0)
    target = np.empty(r)
    for i in range(r):
        target[i] = e[y[lo + i], i]
    rest = np.zeros(r)
    for k in range(t):
        for i in range(r):
            d = e[k, i] - m[i]
            bad += 0 if d == d else 1  # NaN (e.g. inf - inf in X W^T)
            # below -700 the term is < 1e-304: clamped there it changes no sum, and exp_fast
            # (normal results only) vectorizes without the subnormal path
            v = exp_fast(d if d > -700.0 else -700.0, 0.0)
            e[k, i] = v
            rest[i] += 0.0 if j[i] == k else v
    # the rows' losses first (a loop that vectorizes), then their sum: a float sum in the same
    # loop kept log1p_pos scalar (the sum's order is fixed either way)
    loss = np.empty(r)
    for i in range(r):
        w = np.float64(s[lo + i]) if has_s else 1.0
        loss[i] = w * (log1p_pos(rest[i]) + (m[i] - target[i]))
    acc = 0.0
    for i in range(r):
        acc += loss[i]
    for i in range(r):
        w = np.float64(s[lo + i]) if has_s else 1.0
        yi = y[lo + i]
        total = 1.0 + rest[i]
        off = rest[i] if yi == j[i] else total - e[yi, i]  # sum of e over the classes but y
        m[i] = -w * (off / total)  # the target entry of G (m is free now)
        rest[i] = 1.0 / total
        target[i] = w
    for k in range(t):
        for i in range(r):
            e[k, i] *= rest[i]
    for i in range(r):
        for k in range(t):
            P[lo + i, k] = e[k, i]
    for k in range(t):
        for i in range(r):
            e[k, i] *= target[i]
    for i in range(r):
        e[y[lo + i], i] = m[i]
    for i in range(r):
        for k in range(t):
            g = e[k, i]
            G[lo + i, k] = g
            colsum[k] += np.float64(G[lo + i, k])
    return acc, bad


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _value_grad_parallel(  # pragma: no cover - jitted
    Z: Any, y: Any, s: Any, has_s: bool, P: Any, shift: Any, G: Any
) -> tuple[Any, Any, Any]:
    n, t = Z.shape
    nb = (n + _BLOCK - 1) // _BLOCK
    partial = np.zeros(nb)
    bad = np.zeros(nb, dtype=np.int64)
    colsum = np.zeros((nb, t))
    for blk in prange(nb):
        e = np.empty((t, _BLOCK))
        lo = blk * _BLOCK
        partial[blk], bad[blk] = _block_value_grad(
            Z, y, s, has_s, P, lo, min(n, lo + _BLOCK), e, colsum[blk], shift, G
        )
    return partial, bad, colsum  # summed by the caller: a parallel sum would change the order


@numba.njit(cache=True, error_model="numpy")
def _value_grad_serial(  # pragma: no cover - jitted
    Z: Any, y: Any, s: Any, has_s: bool, P: Any, shift: Any, G: Any
) -> tuple[Any, Any, Any]:
    n, t = Z.shape
    nb = (n + _BLOCK - 1) // _BLOCK
    partial = np.zeros(nb)
    bad = np.zeros(nb, dtype=np.int64)
    colsum = np.zeros((nb, t))
    e = np.empty((t, _BLOCK))
    for blk in range(nb):
        lo = blk * _BLOCK
        partial[blk], bad[blk] = _block_value_grad(
            Z, y, s, has_s, P, lo, min(n, lo + _BLOCK), e, colsum[blk], shift, G
        )
    return partial, bad, colsum


@numba.njit(cache=True, error_model="numpy")
def _block_hvp(  # pragma: no cover - jitted
    P: Any, s: Any, has_s: bool, dZ: Any, lo: int, hi: int, colsum: Any, shift: Any, out: Any
) -> None:
    t = P.shape[1]
    for i in range(lo, hi):
        dot = 0.0
        for k in range(t):
            dot += np.float64(P[i, k]) * (np.float64(dZ[i, k]) + shift[k])
        w = np.float64(s[i]) if has_s else 1.0
        for k in range(t):
            out[i, k] = w * np.float64(P[i, k]) * ((np.float64(dZ[i, k]) + shift[k]) - dot)
            colsum[k] += np.float64(out[i, k])


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _hvp_parallel(  # pragma: no cover - jitted
    P: Any, s: Any, has_s: bool, dZ: Any, shift: Any, out: Any
) -> Any:
    n, t = P.shape
    nb = (n + _BLOCK - 1) // _BLOCK
    colsum = np.zeros((nb, t))
    for blk in prange(nb):
        _block_hvp(P, s, has_s, dZ, blk * _BLOCK, min(n, (blk + 1) * _BLOCK), colsum[blk], shift, out)
    return colsum


@numba.njit(cache=True, error_model="numpy")
def _hvp_serial(  # pragma: no cover - jitted
    P: Any, s: Any, has_s: bool, dZ: Any, shift: Any, out: Any
) -> Any:
    n, t = P.shape
    nb = (n + _BLOCK - 1) // _BLOCK
    colsum = np.zeros((nb, t))
    for blk in range(nb):
        _block_hvp(P, s, has_s, dZ, blk * _BLOCK, min(n, (blk + 1) * _BLOCK), colsum[blk], shift, out)
    return colsum


def _parallel(size: int) -> bool:
    # Measured on the shared two-core machine: waking Numba's threads for 5000 x 10 entries
    # cost 16 ms against 0.07 ms for the serial pass; only large arrays amortize it. Tried
    # (#15): from 2^19 entries on, alone two threads paid (100000 x 10: 6.8 -> 4.4 ms), but
    # inside a fit under load 2 they made the single-threaded BLAS products beside them slower
    # (OpenMP's workers spin after a parallel region): value and gradient 29 -> 48 ms.
    return size >= _PARALLEL_ENTRIES and numba.get_num_threads() > 1


def _weights(row_weight: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    if row_weight is None:
        return np.ones(1), False
    return np.ascontiguousarray(row_weight, dtype=np.float64).reshape(n), True


def _shift(shift: np.ndarray | None, t: int) -> np.ndarray:
    if shift is None:
        return np.zeros(t)
    return np.ascontiguousarray(shift, dtype=np.float64).reshape(t)


def ce_value_grad(
    Z: np.ndarray,
    y: np.ndarray,
    row_weight: np.ndarray | None,
    P: np.ndarray,
    colsum: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> tuple[float, int]:
    r"""In place: ``Z`` (``(n, T)`` C-contiguous) becomes ``G = s (softmax(Z + shift) -
    onehot(y))`` (or ``out`` does, ``Z`` kept, when given: an ``(n, T)`` array of ``Z``'s
    dtype) and ``P`` the probabilities; returns ``(sum_i s_i CE_i, bad)`` of the logits
    ``Z + shift``. ``colsum`` (float64 ``(T,)``), when given, receives ``sum_i G_i`` (the
    intercepts' gradient), summed in the same pass. ``shift`` (``(T,)``, the intercepts;
    default 0) is added to every row as it is read, in float64: ``Z += b`` beforehand was a
    separate pass over ``Z`` (1.3 ms of 28 ms per gradient on 100000 x 10).

    ``bad`` is 0 when every logit is finite; otherwise it is positive (it counts non-finite
    maxima and NaN entries) and the caller must not use any of the results.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.log(np.array([[0.5, 0.25, 0.25]]))
    >>> P = np.empty_like(Z)
    >>> loss, bad = ce_value_grad(Z, np.array([0]), None, P)
    >>> round(loss, 12), bad, P.round(3).tolist(), Z.round(3).tolist()
    (0.69314718056, 0, [[0.5, 0.25, 0.25]], [[-0.5, 0.25, 0.25]])
    """
    s, has_s = _weights(row_weight, Z.shape[0])
    run = _value_grad_parallel if _parallel(Z.size) else _value_grad_serial
    labels = np.ascontiguousarray(y, dtype=np.intp)
    G = Z if out is None else out
    partial, bad, sums = run(Z, labels, s, has_s, P, _shift(shift, Z.shape[1]), G)
    if colsum is not None:
        colsum[...] = sums.sum(axis=0)
    return float(np.sum(partial)), int(np.sum(bad))


def ce_hvp_rows(
    P: np.ndarray,
    row_weight: np.ndarray | None,
    dZ: np.ndarray,
    colsum: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> None:
    r"""In place: ``dZ_i <- s_i p_i * (u_i - p_i . u_i)`` with ``u_i = dZ_i + shift`` (into
    ``out`` instead, ``dZ`` kept, when given): the Hessian of ``s_i CE_i`` wrt the logits times
    ``u_i``, with ``P`` from :func:`ce_value_grad` at the same logits; ``colsum``, when given,
    receives the column sums of the result (float64 ``(T,)``); ``shift`` (``(T,)``, the
    intercepts' direction) defaults to 0.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.5, 0.5]]); dZ = np.array([[1.0, -1.0]])
    >>> ce_hvp_rows(P, None, dZ); dZ.tolist()
    [[0.5, -0.5]]
    """
    s, has_s = _weights(row_weight, P.shape[0])
    run = _hvp_parallel if _parallel(P.size) else _hvp_serial
    sums = run(P, s, has_s, dZ, _shift(shift, P.shape[1]), dZ if out is None else out)
    if colsum is not None:
        colsum[...] = sums.sum(axis=0)


@numba.njit(cache=True, error_model="numpy")
def _class_sums(X: Any, y: Any, s: Any, has_s: bool, out: Any) -> None:  # pragma: no cover - jitted
    n, m = X.shape
    for i in range(n):
        w = np.float64(s[i]) if has_s else 1.0
        k = y[i]
        for j in range(m):
            out[k, j] += w * np.float64(X[i, j])


def class_sums(X: np.ndarray, y: np.ndarray, row_weight: np.ndarray | None, n_classes: int) -> np.ndarray:
    r"""``(sum_{i: y_i = k} s_i x_i)_k``, float64 ``(T, N)``, of a dense C-ordered ``X`` in one
    pass over its rows (SciPy's product with a one-hot CSR matrix took 8 ms on 100000 x 50,
    this about 2 ms).

    Examples
    --------
    >>> import numpy as np
    >>> class_sums(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([1, 0, 1]), None, 2).tolist()
    [[3.0, 4.0], [6.0, 8.0]]
    """
    s, has_s = _weights(row_weight, X.shape[0])
    out = np.zeros((n_classes, X.shape[1]))
    _class_sums(np.ascontiguousarray(X), np.ascontiguousarray(y, dtype=np.intp), s, has_s, out)
    return out
