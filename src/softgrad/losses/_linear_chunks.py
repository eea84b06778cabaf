"""The chunk loop of :func:`~softgrad.losses.linear_cross_entropy` for in-memory arrays.

Each chunk of rows forms its logits ``x_c W^T + b``, reduces them to the loss and (with
``return_grad``) to their gradient, and contracts that gradient with ``W`` and ``x_c`` at once.
NumPy input runs through BLAS with preallocated buffers (:func:`_numpy_chunks`); every other
array library through its own ``matmul`` (:func:`_xp_chunks`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat

from .._array import Array, as_int, compute_dtype, is_numpy_array
from .cross_entropy import (
    RowStep,
    _check_targets,
    _Problem,
    _reduce,
    _reference_rows,
    _row_scale,
    _row_step,
    _Scales,
    _scales,
)
from .layer import _validated_layer_inputs

__all__ = ["check_chunk_size", "chunked_linear_cross_entropy"]

_DEFAULT_CHUNK_BYTES = 96 * 2**20  # one chunk's logits in the input dtype: big enough for BLAS


def check_chunk_size(chunk_size: Any, n_classes: int, itemsize: int) -> int:
    if chunk_size is None:
        return max(1, _DEFAULT_CHUNK_BYTES // max(1, n_classes * itemsize))
    chunk = as_int(chunk_size, "chunk_size", "an int >= 1 or None")
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    return chunk


def chunked_linear_cross_entropy(
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
    """:func:`~softgrad.losses.linear_cross_entropy` for arrays held in memory (not Dask).

    Validates everything, then runs the NumPy loop or the generic ``xp`` loop over the chunks.
    """
    xp, x, W, b, dtype = _validated_layer_inputs(x, W, b)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    n_rows, n_classes = x.shape[0], W.shape[0]
    work_dtype = compute_dtype(xp, dtype)
    # A single x (N,) has logits (T,): validate the target against that shape, as cross_entropy.
    shape, axis = ((n_classes,), 0) if single else ((n_rows, n_classes), 1)
    opts, tgt, sw = _check_targets(
        xp, x, shape, axis, work_dtype, target,
        weight, ignore_index, label_smoothing, reduction, sample_weight,
    )
    chunk = check_chunk_size(chunk_size, n_classes, xp.finfo(dtype).bits // 8)
    if not isinstance(return_grad, bool):
        raise TypeError(f"return_grad must be a bool, got {return_grad!r}")
    problem = _Problem(xp, None, tgt, sw, opts, -1, shape[:-1], dtype, work_dtype)
    chunks = _Chunks(problem, _scales(problem), x, W, b, chunk, return_grad)
    losses, grads = (_numpy_chunks if is_numpy_array(x) else _xp_chunks)(chunks)
    if n_rows == 0:  # no chunk ran: nothing to concatenate (issue #16's fuzz)
        rows = xp.zeros((0,), dtype=work_dtype, device=array_api_compat.device(x))
    else:
        rows = losses[0] if len(losses) == 1 else xp.concat(losses, axis=0)
    loss = _reduce(problem, rows, chunks.scales)
    if grads is None:
        return loss
    dx, dW, db = grads
    if single:
        dx = dx[0, ...]
    return loss, (dx, dW, db)


class _Chunks(NamedTuple):
    """A validated call, ready for the chunk loop."""

    problem: _Problem  # targets and options (no logits: they are made chunk by chunk)
    scales: _Scales
    x: Array  # (B, N)
    W: Array  # (T, N)
    b: Array | None
    chunk: int  # rows per chunk
    return_grad: bool

    def rows(self) -> list[slice]:
        n_rows = self.x.shape[0]
        return [slice(start, min(start + self.chunk, n_rows)) for start in range(0, n_rows, self.chunk)]

    def loss_grad(
        self, step: RowStep, z: Array, sl: slice, grad_out: Array | None
    ) -> tuple[Array, Array | None]:
        """The chunk's sample-weighted per-row losses and the gradient of its logits ``z``."""
        p = self.problem
        weights, scale = _row_scale(p.sample_weight, sl), _row_scale(self.scales.row, sl)
        return step(
            p.xp, z, p.target[sl, ...], weights, scale, p.opts, p.compute_dtype,
            True, self.return_grad, grad_out,
        )


def _numpy_chunks(c: _Chunks) -> tuple[list[Array], tuple[Array, Array, Array] | None]:
    """BLAS products into preallocated buffers; each chunk's gradient overwrites its logits."""
    import numpy as np

    x, W, b = c.x, c.W, c.b
    dtype = c.problem.out_dtype
    n_rows, n_classes = x.shape[0], W.shape[0]
    grads = None
    if c.return_grad:
        dx = np.empty(x.shape, dtype=dtype)
        grads = (dx, np.zeros(W.shape, dtype=dtype), np.zeros(n_classes, dtype=dtype))
    Wt = W.T
    # One logits buffer for all chunks: a fresh 100 MB array costs its page faults on every
    # chunk (about 40 ms each here, a third of the chunk's first product).
    zbuf = np.empty((min(c.chunk, n_rows), n_classes), dtype=dtype)
    step = _row_step(zbuf, c.problem.opts)  # the kernel or the reference, for every chunk
    losses = []
    for sl in c.rows():
        xs = x[sl, ...]
        z = _matmul_into(zbuf[: xs.shape[0]], xs, Wt)
        if b is not None:
            z += b
        loss_rows, gz = c.loss_grad(step, z, sl, grad_out=z)  # block by block: no second array
        del z
        losses.append(loss_rows)
        if grads is None or gz is None:
            continue
        dx, dW, db = grads
        _matmul_into(dx[sl], gz, W)
        _matmul_into(dW, gz.T, xs, accumulate=True)
        db += np.sum(gz, axis=0)
        del gz  # a view of the logits buffer, which the next chunk overwrites
    return losses, grads


def _xp_chunks(c: _Chunks) -> tuple[list[Array], tuple[Array, Array, Array] | None]:
    """Any other array library: its own ``matmul``, new arrays for every chunk."""
    xp, x, W, b = c.problem.xp, c.x, c.W, c.b
    dtype = c.problem.out_dtype
    Wt = xp.matrix_transpose(W)
    dW = xp.zeros(tuple(W.shape), dtype=dtype, device=array_api_compat.device(W))
    db = xp.zeros((W.shape[0],), dtype=dtype, device=array_api_compat.device(W))
    losses, dx_parts = [], []
    for sl in c.rows():
        xs = x[sl, ...]
        z = xp.matmul(xs, Wt)
        if b is not None:
            z = z + b
        loss_rows, gz = c.loss_grad(_reference_rows, z, sl, grad_out=None)  # kernels are NumPy-only
        losses.append(loss_rows)
        if gz is None:
            continue
        dx_parts.append(xp.matmul(gz, W))
        dW = dW + xp.matmul(xp.matrix_transpose(gz), xs)
        db = db + xp.sum(gz, axis=0)
    if not c.return_grad:
        return losses, None
    device = array_api_compat.device(x)
    dx = dx_parts[0] if len(dx_parts) == 1 else (
        xp.concat(dx_parts, axis=0) if dx_parts else xp.zeros(tuple(x.shape), dtype=dtype, device=device)
    )
    return losses, (dx, dW, db)


def _matmul_into(out: Any, a: Any, b: Any, accumulate: bool = False) -> Any:
    """``out = a @ b`` (``out += a @ b`` with ``accumulate``) in place, for NumPy; returns ``out``.

    Every product of the chunk loop goes through SciPy's BLAS ``gemm`` (``beta = 1``
    accumulates without a ``(T, N)`` temporary). One BLAS for all three products matters:
    NumPy and SciPy ship separate OpenBLAS builds, each with its own threads, and the idle one's
    threads spin beside the busy one's after every switch (8192 x 512 -> 32000 float32 took
    16 % less time with OpenBLAS's spin cut short). Seen in Fortran order,
    ``out.T = b.T @ a.T``: transposed views of C-contiguous arrays are Fortran-contiguous, so
    nothing is copied. Other layouts and dtypes take NumPy's ``matmul``.
    """
    import numpy as np
    from scipy.linalg import blas

    def fortran(m: Any) -> tuple[Any, int] | None:  # (operand, transpose flag) without a copy
        if m.flags.f_contiguous:
            return m, 0
        return (m.T, 1) if m.flags.c_contiguous else None

    left, right = fortran(b.T), fortran(a.T)
    if (
        out.dtype in (np.float32, np.float64)
        and a.dtype == b.dtype == out.dtype
        and out.flags.c_contiguous
        and out.size > 0
        and a.shape[1] > 0
        and left is not None
        and right is not None
    ):
        gemm = blas.get_blas_funcs("gemm", (out,))
        result = gemm(
            1.0, left[0], right[0], beta=1.0 if accumulate else 0.0, c=out.T,
            trans_a=left[1], trans_b=right[1], overwrite_c=1,
        )
        if not np.shares_memory(result, out):
            out[...] = result.T  # BLAS had to copy (should not happen): keep the result anyway
        return out
    if accumulate:
        out += a @ b
        return out
    return np.matmul(a, b, out=out)
