r"""Fused linear layer + cross-entropy over chunks of rows: the ``(B, T)`` logits are never held.

For a large number of classes ``T`` (a vocabulary) the logits ``x W^T + b`` of a batch are the
biggest array of a training step. :func:`linear_cross_entropy` computes the loss and, on
request, the gradients with respect to ``x``, ``W`` and ``b`` one chunk of rows at a time:

.. math::
    \bar z_c = \frac{\partial \ell}{\partial z_c} = c_i (a_i\, \operatorname{softmax}(z_c) - q_c),
    \quad dx_c = \bar z_c W, \quad dW \mathrel{+}= \bar z_c^\top x_c,
    \quad db \mathrel{+}= \textstyle\sum_c \bar z_c

so the extra memory is that of one chunk's logits and their temporaries, O(chunk_size * T).
"""

from __future__ import annotations

from typing import Any

from .._array import Array, as_int, compute_dtype, is_numpy_array
from . import _dask
from .cross_entropy import (
    _check_targets,
    _loss_grad_rows,
    _Problem,
    _reduce,
    _row_scale,
    _scales,
)
from .layer import _validated_layer_inputs

__all__ = ["linear_cross_entropy"]

_DEFAULT_CHUNK_BYTES = 96 * 2**20  # one chunk's logits in the input dtype: big enough for BLAS


def _check_chunk_size(chunk_size: Any, n_classes: int, itemsize: int) -> int:
    if chunk_size is None:
        return max(1, _DEFAULT_CHUNK_BYTES // max(1, n_classes * itemsize))
    chunk = as_int(chunk_size, "chunk_size", "an int >= 1 or None")
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    return chunk


def linear_cross_entropy(
    x: Array,
    W: Array,
    target: Array,
    b: Array | None = None,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Array | None = None,
    chunk_size: int | None = None,
    return_grad: bool = False,
) -> Any:
    r"""``cross_entropy(x @ W.T + b, target)`` computed chunk by chunk, with its gradients.

    .. math::
        \ell = \operatorname{reduce}_i\; \ell_i(W x_i + b), \qquad
        \frac{\partial \ell}{\partial W_{ij}} = \sum_r \bar z_{ri}\, x_{rj}
        \;=\; \sum_r (S_{ri} - \delta_{y_r i})\, x_{rj} \text{ (plain sum)}

    the seed gradient :math:`\partial\, \mathrm{xent} / \partial W_{ij} = (S_i - \delta_{yi}) x_j`
    summed over the rows. Rows are processed ``chunk_size`` at a time: the logits of one chunk
    are formed, reduced to the loss and (with ``return_grad``) turned into their gradient
    :math:`\bar z`, which is contracted with ``W`` and ``x`` at once. The full ``(B, T)`` logits
    never exist; the extra memory is O(chunk_size * T) on top of the inputs and the gradients.

    Parameters
    ----------
    x : array of shape (B, N) or (N,)
        The inputs (hidden states).
    W : array of shape (T, N)
        The output weights, one row per class.
    target : array
        Class indices of shape ``(B,)`` or probabilities of shape ``(B, T)``, as for
        :func:`cross_entropy`.
    b : array of shape (T,), optional
        The biases.
    weight, ignore_index, label_smoothing, reduction, sample_weight
        As for :func:`cross_entropy`.
    chunk_size : int, optional
        Rows per chunk (>= 1). The default makes one chunk's logits about 96 MiB in the input
        dtype: ``96 MiB // (4 T)`` rows for float32 (786 rows for T = 32000): smaller chunks
        leave the matrix products too thin to run at full speed.
    return_grad : bool, optional
        Also return the gradients of the loss.

    Returns
    -------
    loss, or (loss, (dx, dW, db))
        ``loss`` as :func:`cross_entropy` returns it. ``dx`` has ``x``'s shape, ``dW`` ``(T, N)``
        and ``db`` ``(T,)`` (the gradient with respect to the bias, also when ``b`` is None).
        For ``reduction="none"`` the gradients are those of the sum of the per-row losses.

    Notes
    -----
    The matrix products run in the input dtype (as PyTorch does; float32 BLAS for float32),
    the softmax part in the compute dtype; the result equals the unfused
    ``cross_entropy_value_and_grad(x @ W.T + b, ...)`` followed by the two products, up to
    rounding. NumPy input goes through BLAS chunk by chunk (``dW`` accumulated in place by
    ``gemm``); a row-chunked Dask ``x`` runs this NumPy code once per block, on its worker; any
    other array library goes through its own ``matmul``.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> rng = np.random.default_rng(0)
    >>> x, W, y = rng.normal(size=(6, 4)), rng.normal(size=(10, 4)), np.array([0, 3, 9, 2, 2, 5])
    >>> loss, (dx, dW, db) = sg.linear_cross_entropy(x, W, y, chunk_size=4, return_grad=True)
    >>> bool(np.isclose(loss, sg.cross_entropy(x @ W.T, y)))
    True
    >>> g = sg.cross_entropy_grad(x @ W.T, y)
    >>> np.allclose(dW, g.T @ x), np.allclose(dx, g @ W), np.allclose(db, g.sum(0))
    (True, True, True)
    """
    if _dask.is_dask_collection(x) and x.ndim == 2:  # row-chunked Dask x: one task per block (#6)
        return _dask.linear_cross_entropy(
            x, W, target, b, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
            reduction=reduction, sample_weight=sample_weight, chunk_size=chunk_size, return_grad=return_grad,
        )
    xp, x, W, b, dtype = _validated_layer_inputs(x, W, b)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    n_rows, n_classes = x.shape[0], W.shape[0]
    cd = compute_dtype(xp, dtype)
    # A single x (N,) has logits (T,): validate the target against that shape, as cross_entropy.
    shape, axis = ((n_classes,), 0) if single else ((n_rows, n_classes), 1)
    opts, tgt, sw = _check_targets(
        xp, x, shape, axis, cd, target, weight, ignore_index, label_smoothing, reduction, sample_weight
    )
    chunk = _check_chunk_size(chunk_size, n_classes, xp.finfo(dtype).bits // 8)
    if not isinstance(return_grad, bool):
        raise TypeError(f"return_grad must be a bool, got {return_grad!r}")
    p = _Problem(xp, None, tgt, sw, opts, -1, shape[:-1], dtype, cd)
    scales = _scales(p)
    numpy = is_numpy_array(x)
    losses: list[Array] = []
    dx_parts: list[Array] = []
    dx = dW = db = None
    if return_grad:
        dW = xp.zeros(tuple(W.shape), dtype=dtype)
        db = xp.zeros((n_classes,), dtype=dtype)
        if numpy:
            import numpy as np

            dx = np.empty(tuple(x.shape), dtype=dtype)
    Wt = xp.matrix_transpose(W)
    if numpy:
        import numpy as np

        # One logits buffer for all chunks: a fresh 100 MB array costs its page faults on every
        # chunk (about 40 ms each here, a third of the chunk's first product).
        zbuf = np.empty((min(chunk, n_rows), n_classes), dtype=dtype)
    for start in range(0, n_rows, chunk):
        sl = slice(start, min(start + chunk, n_rows))
        xs = x[sl, ...]
        z = np.matmul(xs, Wt, out=zbuf[: xs.shape[0]]) if numpy else xp.matmul(xs, Wt)
        if b is not None:
            if numpy:
                z += b
            else:
                z = z + b
        swc = _row_scale(sw, sl)
        rs = _row_scale(scales.row, sl)
        # NumPy: the chunk's gradient overwrites its logits, block by block (no second array).
        lb, gz = _loss_grad_rows(
            xp, z, tgt[sl, ...], swc, rs, opts, cd, True, return_grad, grad_out=z if numpy else None
        )
        del z
        losses.append(lb)
        if gz is None:
            continue
        if numpy:
            import numpy as np

            np.matmul(gz, W, out=dx[sl])  # type: ignore[index]
            _accumulate_gram(dW, gz, xs)
            db += np.sum(gz, axis=0)
        else:
            dx_parts.append(xp.matmul(gz, W))
            dW = dW + xp.matmul(xp.matrix_transpose(gz), xs)
            db = db + xp.sum(gz, axis=0)
        del gz  # a view of the logits buffer, which the next chunk overwrites
    rows = losses[0] if len(losses) == 1 else xp.concat(losses, axis=0)
    if n_rows == 0:
        rows = xp.zeros((0,), dtype=cd)
    loss = _reduce(p, rows, scales)
    if not return_grad:
        return loss
    if not numpy:
        dx = dx_parts[0] if len(dx_parts) == 1 else (
            xp.concat(dx_parts, axis=0) if dx_parts else xp.zeros(tuple(x.shape), dtype=dtype)
        )
    if single:
        dx = dx[0, ...]  # type: ignore[index]
    return loss, (dx, dW, db)


def _accumulate_gram(dW: Any, gz: Any, xs: Any) -> None:
    """``dW += gz.T @ xs`` in place for NumPy, without a ``(T, N)`` temporary.

    BLAS ``gemm`` with ``beta = 1`` accumulates into its output; seen in Fortran order,
    ``dW.T (N, T) += xs.T @ gz``, and ``xs.T``, ``gz.T`` are Fortran-ordered views: no copies.
    """
    import numpy as np
    from scipy.linalg import blas

    if (
        dW.dtype in (np.float32, np.float64)
        and dW.flags.c_contiguous
        and xs.flags.c_contiguous
        and gz.flags.c_contiguous
        and xs.dtype == dW.dtype == gz.dtype
        and xs.shape[0] > 0
    ):
        gemm = blas.get_blas_funcs("gemm", (dW,))
        out = gemm(1.0, xs.T, gz.T, beta=1.0, c=dW.T, trans_b=1, overwrite_c=1)
        if np.shares_memory(out, dW):
            return
        dW[...] = out.T  # BLAS had to copy (should not happen): keep the result anyway
        return
    dW += gz.T @ xs
