"""Dispatch to the fused CPU kernels (Numba) for NumPy input.

The public functions of :mod:`.softmax` and :mod:`.derivatives` do three things in order: they
validate every argument (the same checks and errors whichever path runs), they ask
:func:`applies` whether a kernel takes the input, and they compute, either here or in the
reference code. The reference code is the oracle the kernels are tested against. The functions
below trust their (validated) arguments.

What runs where:

* NumPy ``float32``/``float64`` arrays with at least one element, as the caller passed them
  (lists and integer arrays are converted by the reference path as before): the kernel, along
  any axis (a softmax axis that is not the last, contiguous one is copied into place first; the
  result comes back as a view with the axes in the caller's order).
* ``where=`` masks: the masked entries are replaced by ``-inf`` (one extra pass), which is
  exactly how the reference treats them.
* ``out=``: written directly when it is C-contiguous and does not overlap the input; otherwise
  through a temporary.
* Anything else (other dtypes, other array libraries, empty arrays, mixed dtypes in the VJPs,
  kernels switched off with ``SOFTGRAD_DISABLE_KERNELS=1`` or ``config.kernels(False)``): the
  reference code.

Numba and the kernels are imported on first use; compiled code is cached on disk, so the first
call in a process costs Numba's import and a cache load (about 0.5 s here) instead of a
compilation (about 45 s for everything, once per checkout).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import config
from .._array import cast_result

__all__ = [
    "KERNEL_MIN_TEMPERATURE",
    "applies",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "softmax",
    "softmax_vjp",
    "temperature_applies",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def applies(*arrays: Any) -> bool:
    """Kernels on, NumPy arrays of one float32/float64 dtype, not empty."""
    if not config.kernels_enabled():
        return False
    first = arrays[0]
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != first.dtype:
            return False
    return first.dtype in _FLOATS and first.size > 0


# The kernels divide by ``t`` through its inverse, which overflows for subnormal ``t``, and their
# division remainder underflows (loses bits) for ``t`` below about 2**-970: below this the
# reference runs, which scales such a ``t`` up before it divides and sends quotients beyond the
# largest float to -inf, so both paths give the exact ``x / T`` and its ``T -> 0+`` limit (#16).
KERNEL_MIN_TEMPERATURE = 2.0**-896


def temperature_applies(t: float) -> bool:
    """Whether the kernels take the (validated) temperature ``t``."""
    return t >= KERNEL_MIN_TEMPERATURE


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


def _masked(x: np.ndarray, where: Any) -> np.ndarray:
    return x if where is None else np.where(where, x, x.dtype.type(-np.inf))


def _softmax_like(x: np.ndarray, axis: int, t: float, where: Any, out: Any, log: bool) -> np.ndarray:
    from . import _kernels

    x = _masked(x, where)
    x2 = _rows(x, axis)
    target = _target(out, x.shape, axis, (x,))
    result = target if target is not None else np.empty_like(x2)
    _kernels.softmax_2d(x2, result, t, log)
    return _finish(result, x.shape, axis, out)


def softmax(x: np.ndarray, axis: int, t: float, where: Any, out: Any) -> np.ndarray:
    """softmax along ``axis`` (validated: a non-negative int), temperature ``t``, mask ``where``."""
    return _softmax_like(x, axis, t, where, out, log=False)


def log_softmax(x: np.ndarray, axis: int, t: float, where: Any, out: Any) -> np.ndarray:
    return _softmax_like(x, axis, t, where, out, log=True)


def logsumexp(x: np.ndarray, axis: int, keepdims: bool, where: Any, out: Any) -> Any:
    from . import _kernels

    shape = x.shape[:axis] + ((1,) if keepdims else ()) + x.shape[axis + 1 :]
    x2 = _rows(_masked(x, where), axis)
    lse = np.empty(x2.shape[0], dtype=np.float64)
    _kernels.logsumexp_2d(x2, lse)
    result = cast_result(np, lse, x.dtype).reshape(shape)
    if out is not None:
        np.copyto(out, result)
        return out
    return result[()] if result.ndim == 0 else result


def _vjp_like(a: np.ndarray, g: np.ndarray, axis: int, t: float, out: Any, log: bool) -> np.ndarray:
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


def softmax_vjp(s: np.ndarray, g: np.ndarray, axis: int, t: float, out: Any) -> np.ndarray:
    """``s`` and ``g`` of one shape and dtype (validated)."""
    return _vjp_like(s, g, axis, t, out, log=False)


def log_softmax_vjp(logp: np.ndarray, g: np.ndarray, axis: int, t: float, out: Any) -> np.ndarray:
    return _vjp_like(logp, g, axis, t, out, log=True)
