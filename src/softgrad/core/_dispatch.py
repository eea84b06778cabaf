"""Dispatch to the fused CPU kernels (Numba) for NumPy input.

Each function returns the result when a kernel applies (NumPy float32/float64 input, kernels
enabled in :mod:`softgrad.config`) and ``None`` otherwise, in which case the caller runs the
reference code. The reference code is the oracle the kernels are tested against.

What runs where:

* NumPy ``float32``/``float64`` arrays with at least one element: the kernel, along any axis
  (a softmax axis that is not the last, contiguous one is copied into place first; the result
  comes back as a view with the axes in the caller's order).
* ``where=`` masks: the masked entries are replaced by ``-inf`` (one extra pass), which is
  exactly how the reference treats them.
* ``out=``: validated as the reference does (NumPy array of the result's shape and dtype) and
  written directly when it is C-contiguous and does not overlap the input; otherwise through a
  temporary.
* Anything else (other dtypes, other array libraries, empty rows, mixed dtypes in the VJPs,
  kernels switched off with ``SOFTGRAD_DISABLE_KERNELS=1`` or ``config.kernels(False)``):
  ``None``. Bad arguments raise the same errors as the reference.

Numba and the kernels are imported on first use; compiled code is cached on disk, so the first
call in a process costs Numba's import and a cache load (about 0.5 s here) instead of a
compilation (about 45 s for everything, once per checkout).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import config
from .._array import cast_result, check_temperature, normalize_axis, validate_where

__all__ = [
    "cross_entropy_rows",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "softmax",
    "softmax_vjp",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _applies(*arrays: Any) -> bool:
    """Kernels on, NumPy arrays of one float32/float64 dtype, not empty."""
    if not config.kernels_enabled():
        return False
    first = arrays[0]
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != first.dtype:
            return False
    return first.dtype in _FLOATS and first.size > 0


def _check_out(out: Any, shape: tuple[int, ...], dtype: Any) -> None:
    """The reference's ``store_out`` checks, before any work is done."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out= is supported for NumPy arrays only, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {shape} and dtype {np.dtype(dtype)}, got {out.shape} and {out.dtype}"
        )


def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` moved last, as a C-contiguous ``(rows, n)`` array (a view if it can)."""
    if axis != a.ndim - 1:
        a = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _target(out: Any, shape: tuple[int, ...], axis: int, inputs: tuple[np.ndarray, ...]) -> Any:
    """A ``(rows, n)`` array the kernel may write into directly: ``out`` itself when it can."""
    if out is None or axis != len(shape) - 1 or not out.flags.c_contiguous:
        return None
    if any(np.shares_memory(out, a) for a in inputs):
        return None
    return out.reshape(-1, shape[-1])


def _finish(result2d: np.ndarray, shape: tuple[int, ...], axis: int, out: Any) -> np.ndarray:
    """The ``(rows, n)`` kernel result in the caller's layout, copied into ``out`` if given."""
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    result = result2d.reshape(moved)
    if axis != len(shape) - 1:
        result = np.moveaxis(result, -1, axis)
    if out is None:
        return result
    if not np.shares_memory(out, result2d):
        np.copyto(out, result)
    return out


def _softmax_like(x: Any, axis: Any, temperature: Any, where: Any, out: Any, log: bool) -> Any:
    if not _applies(x):
        return None
    axis = normalize_axis(axis, x.ndim)
    t = check_temperature(temperature)
    w = validate_where(np, where, x)
    if out is not None:
        _check_out(out, x.shape, x.dtype)
    if w is not None:
        x = np.where(w, x, x.dtype.type(-np.inf))
    from . import _kernels

    x2 = _rows(x, axis)
    target = _target(out, x.shape, axis, (x,))
    result = target if target is not None else np.empty_like(x2)
    _kernels.softmax_2d(x2, result, t, log)
    return _finish(result, x.shape, axis, out)


def softmax(x: Any, axis: Any, temperature: Any, where: Any, out: Any) -> Any:
    return _softmax_like(x, axis, temperature, where, out, log=False)


def log_softmax(x: Any, axis: Any, temperature: Any, where: Any, out: Any) -> Any:
    return _softmax_like(x, axis, temperature, where, out, log=True)


def logsumexp(x: Any, axis: Any, keepdims: Any, where: Any, out: Any) -> Any:
    if not _applies(x):
        return None
    axis = normalize_axis(axis, x.ndim)
    w = validate_where(np, where, x)
    shape = x.shape[:axis] + ((1,) if keepdims else ()) + x.shape[axis + 1 :]
    if out is not None:
        _check_out(out, shape, x.dtype)
    if w is not None:
        x = np.where(w, x, x.dtype.type(-np.inf))
    from . import _kernels

    x2 = _rows(x, axis)
    lse = np.empty(x2.shape[0], dtype=np.float64)
    _kernels.logsumexp_2d(x2, lse)
    result = cast_result(np, lse, x.dtype).reshape(shape)
    if out is not None:
        np.copyto(out, result)
        return out
    return result[()] if result.ndim == 0 else result


def _vjp_like(a: Any, g: Any, axis: Any, temperature: Any, out: Any, log: bool) -> Any:
    if not _applies(a, g) or a.shape != g.shape:
        return None  # mixed dtypes or shapes: the reference promotes or raises
    axis = normalize_axis(axis, a.ndim)
    t = check_temperature(temperature)
    if out is not None:
        _check_out(out, a.shape, a.dtype)
    from . import _kernels

    a2 = _rows(a, axis)
    g2 = _rows(g, axis)
    target = _target(out, a.shape, axis, (a, g))
    result = target if target is not None else np.empty_like(a2)
    if log:
        _kernels.log_softmax_vjp_2d(a2, g2, result, t)
    else:
        _kernels.softmax_vjp_2d(a2, g2, result, t)
    return _finish(result, a.shape, axis, out)


def softmax_vjp(s: Any, g: Any, axis: Any, temperature: Any, out: Any) -> Any:
    return _vjp_like(s, g, axis, temperature, out, log=False)


def log_softmax_vjp(logp: Any, g: Any, axis: Any, temperature: Any, out: Any) -> Any:
    return _vjp_like(logp, g, axis, temperature, out, log=True)


def cross_entropy_rows(
    x: Any,
    target: Any,
    sw: Any,
    row: Any,
    weight: Any,
    ignore_index: int,
    smoothing: float,
    by_checked_index: bool,
    want_loss: bool,
    want_grad: bool,
    grad_out: Any = None,
) -> Any:
    """The per-row step of cross-entropy (``losses.cross_entropy._loss_grad_rows``), fused.

    Takes validated rows: ``x`` (R, C) logits, ``target`` (R,) class indices already checked to
    lie in ``[0, C)`` or equal ``ignore_index`` (``by_checked_index``), ``sw`` (R,) sample
    weights or None, ``row`` the gradient's row scale ((R,), 0-d or None), ``weight`` (C,) or
    None. Returns ``(loss_rows, grad)`` as that function does (sample-weighted float64 losses;
    the gradient in ``x``'s dtype, written into ``grad_out`` when given), or None.
    """
    if not (by_checked_index and _applies(x)) or x.ndim != 2:
        return None
    for a in (target, sw, row, weight, grad_out):
        if a is not None and not isinstance(a, np.ndarray):
            return None
    from . import _kernels

    rows, n = x.shape
    if n > _kernels.GROUP or target.shape != (rows,) or target.dtype.kind not in "iu":
        return None
    if grad_out is not None and (
        grad_out.shape != x.shape or grad_out.dtype != x.dtype or not grad_out.flags.c_contiguous
    ):
        return None
    w = None if weight is None else np.ascontiguousarray(weight, dtype=np.float64)
    s = None if sw is None else np.ascontiguousarray(sw, dtype=np.float64)
    if (w is not None and w.shape != (n,)) or (s is not None and s.shape != (rows,)):
        return None
    if row is None or row.ndim == 0:
        rs: Any = None if row is None else float(row)
    elif row.shape == (rows,):
        rs = np.ascontiguousarray(row, dtype=np.float64)
    else:
        return None
    xc = np.ascontiguousarray(x)
    loss = np.empty(rows, dtype=np.float64) if want_loss else None
    grad = None
    if want_grad:
        grad = grad_out if grad_out is not None else np.empty_like(xc)
    y = np.ascontiguousarray(target, dtype=np.int64)
    _kernels.cross_entropy_2d(xc, y, w, int(ignore_index), float(smoothing), s, rs, loss, grad)
    return loss, grad
