r"""Row-chunked Dask input for :func:`~softgrad.losses.linear_cross_entropy`: one task per block.

Each block of rows ``x_b`` (with its targets and sample weights) is handed to the NumPy
:func:`~softgrad.losses.linear_cross_entropy` on the worker that holds it, with
``reduction="sum"``; the block's partial loss, its share of the ``"mean"`` denominator and its
``dW``, ``db`` are summed in a fixed tree, in float64:

.. math:: \ell = \frac{\sum_b \ell_b}{\sum_b d_b}, \qquad
          dW = \frac{\sum_b dW_b}{\sum_b d_b}, \qquad dx_b = \frac{\bar z_b W}{\sum_b d_b}

(``d_b`` is 1 for ``"sum"``). ``W``, ``b`` and the class weights enter the graph as one key. The
results are lazy Dask arrays; nothing is gathered: ``dx`` is row-chunked like ``x``. Inside a
block the NumPy function works ``chunk_size`` rows at a time, so a worker's extra memory is
O(chunk_size * T). Dask is imported only when a Dask array arrives.

:func:`~softgrad.losses.cross_entropy` needs no special path: its generic code is lazy on Dask.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from .._array import compute_dtype
from .._dasktools import is_dask_collection, reduce_tree, sum_in_order
from ._linear_chunks import check_chunk_size, chunked_linear_cross_entropy
from .cross_entropy import _check_options, _check_targets, _mean_denominator

__all__ = ["dask_linear_cross_entropy"]  # private module: linear_cross_entropy dispatches here


def _rows(v: Any, rows: tuple[int, ...], name: str, ndim: tuple[int, ...]) -> Any:
    """``v`` (NumPy or Dask) as a Dask array chunked like the rows of ``x``, whole along axis 1."""
    import dask.array as da

    if not is_dask_collection(v):
        v = np.asarray(v)
    if v.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {v.shape}")
    if v.shape[0] != sum(rows):
        raise ValueError(f"{name} has {v.shape[0]} rows but x has {sum(rows)}")
    chunks = (rows,) if v.ndim == 1 else (rows, (v.shape[1],))
    if not is_dask_collection(v):
        return da.from_array(v, chunks=chunks)
    if any(np.isnan(c) for c in v.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes: call {name}.compute_chunk_sizes() first")
    return v if v.chunks == chunks else v.rechunk(chunks)


def _block(
    x: np.ndarray, t: np.ndarray, row_weight: np.ndarray | None, params: tuple[Any, ...], opts: dict[str, Any]
) -> tuple[Any, ...]:
    """One block: ``(loss_sum, denominator, dx, dW, db)`` (gradients of the block's sum)."""
    W, b, weight = params
    kw = {
        "weight": weight,
        "ignore_index": opts["ignore_index"],
        "label_smoothing": opts["label_smoothing"],
        "sample_weight": row_weight,
        "chunk_size": opts["chunk_size"],
    }
    reduction = "none" if opts["reduction"] == "none" else "sum"
    out = chunked_linear_cross_entropy(x, W, t, b, reduction=reduction, return_grad=opts["return_grad"], **kw)
    loss, grads = out if opts["return_grad"] else (out, (None, None, None))
    den = 1.0
    if opts["reduction"] == "mean":  # the block's share of the mean's denominator, by the same rule
        cd = compute_dtype(np, x.dtype)
        shape = (x.shape[0], W.shape[0])
        ignore = kw["ignore_index"]
        o, tgt, s = _check_targets(np, x, shape, 1, cd, t, weight, ignore, 0.0, "mean", row_weight)
        den = float(_mean_denominator(np, tgt, s, o, cd))
    if opts["reduction"] == "none":
        return (np.asarray(loss), den, *grads)
    return (np.float64(loss), den, *grads)


def _partial(block: tuple[Any, ...]) -> tuple[Any, ...]:
    """The summable part of a block's result, in float64: ``(loss, den[, dW, db])``."""
    loss, den, _, dW, db = block
    head = (np.float64(0.0) if np.ndim(loss) else np.float64(loss), np.float64(den))
    if dW is None:
        return head
    return (*head, np.asarray(dW, dtype=np.float64), np.asarray(db, dtype=np.float64))


def _pick(block: tuple[Any, ...], i: int) -> Any:
    return block[i]


def _finish(total: tuple[Any, ...], reduction: str, dtype: Any) -> tuple[Any, ...]:
    """``(loss, scale, dW, db)`` from the summed partials (``scale`` multiplies ``dx``)."""
    loss, den = total[0], total[1]
    if reduction == "mean":
        scale = 0.0 if den == 0 else 1.0 / den  # all rows ignored: NaN loss, zero gradients
        loss = np.nan if den == 0 else loss / den
    else:
        scale = 1.0
    grads = tuple(np.asarray(g * scale, dtype=dtype) for g in total[2:])
    return (np.asarray(loss, dtype=dtype), np.asarray(scale, dtype=dtype), *grads)


def dask_linear_cross_entropy(
    x: Any,
    W: Any,
    target: Any,
    b: Any = None,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Any = None,
    chunk_size: int | None = None,
    return_grad: bool = False,
) -> Any:
    """:func:`~softgrad.losses.linear_cross_entropy` for a row-chunked Dask ``x`` (B, N).

    Same arguments and results, as lazy Dask arrays: ``loss`` (0-d, or ``(B,)`` for
    ``reduction="none"``), ``dx`` chunked like ``x``, ``dW`` ``(T, N)``, ``db`` ``(T,)``.
    """
    import dask
    import dask.array as da

    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a Dask array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"a Dask x must have shape (B, N), got {x.shape}")
    if not isinstance(return_grad, bool):
        raise TypeError(f"return_grad must be a bool, got {return_grad!r}")
    _, reduction, ignore = _check_options(label_smoothing, reduction, ignore_index)
    if any(np.isnan(c) for c in x.chunks[0]):
        raise ValueError("x has unknown chunk sizes: call x.compute_chunk_sizes() first")
    if len(x.chunks[1]) > 1:
        x = x.rechunk({1: -1})
    W_shape = tuple(W.shape)
    if len(W_shape) != 2 or W_shape[1] != x.shape[1]:
        raise ValueError(f"W must have shape (T, N) with N = x.shape[1] = {x.shape[1]}, got {W_shape}")
    T = W_shape[0]
    rows = x.chunks[0]
    target = _rows(target, rows, "target", (1, 2))
    row_weight = None if sample_weight is None else _rows(sample_weight, rows, "sample_weight", (1,))
    if weight is not None and not is_dask_collection(weight):
        weight = np.asarray(weight)
    dtype = np.result_type(x.dtype, W.dtype, *(() if b is None else (b.dtype,)))
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    chunk = check_chunk_size(chunk_size, T, dtype.itemsize)
    opts = {
        "ignore_index": ignore,
        "label_smoothing": float(label_smoothing),
        "reduction": reduction,
        "chunk_size": chunk,
        "return_grad": return_grad,
    }

    token = uuid.uuid4().hex
    # W, b and the class weights: ONE key that every block task references
    params = dask.delayed(tuple, pure=False)([W, b, weight], dask_key_name=f"softgrad-lce-params-{token}")
    xs = x.to_delayed().ravel()
    ts = target.to_delayed().ravel()
    ss = [None] * len(xs) if row_weight is None else list(row_weight.to_delayed().ravel())
    blocks = [
        dask.delayed(_block, pure=False)(xb, tb, sb, params, opts, dask_key_name=f"softgrad-lce-{token}-{i}")
        for i, (xb, tb, sb) in enumerate(zip(xs, ts, ss, strict=True))
    ]
    parts = [
        dask.delayed(_partial)(blk, dask_key_name=f"softgrad-lce-part-{token}-{i}")
        for i, blk in enumerate(blocks)
    ]

    def merge(group: list[Any], level: int, i: int) -> Any:
        return dask.delayed(sum_in_order)(*group, dask_key_name=f"softgrad-lce-sum-{token}-{level}-{i}")

    root = reduce_tree(parts, merge)
    total = dask.delayed(_finish)(root, reduction, dtype, dask_key_name=f"softgrad-lce-total-{token}")

    def item(i: int, shape: tuple[int, ...]) -> Any:
        return da.from_delayed(dask.delayed(_pick)(total, i), shape=shape, dtype=dtype)

    if reduction == "none":
        loss = da.concatenate(
            [
                da.from_delayed(dask.delayed(_pick)(blk, 0), shape=(n,), dtype=dtype)
                for blk, n in zip(blocks, rows, strict=True)
            ]
        )
    else:
        loss = item(0, ())
    if not return_grad:
        return loss
    dx = da.concatenate(
        [
            da.from_delayed(dask.delayed(_pick)(blk, 2), shape=(n, x.shape[1]), dtype=dtype)
            for blk, n in zip(blocks, rows, strict=True)
        ]
    )
    if reduction == "mean":
        dx = (dx * item(1, ())).astype(dtype)
    return loss, (dx, item(2, W_shape), item(3, (T,)))
