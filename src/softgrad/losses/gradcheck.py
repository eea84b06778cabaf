r"""Check a derivative against central differences: :func:`gradcheck`, :func:`numerical_jacobian`.

Point :func:`gradcheck` at a function and its hand-written Jacobian or vector-Jacobian product;
it compares them with

.. math:: J_{:, k} \approx \frac{f(x + h_k e_k) - f(x - h_k e_k)}{2 h_k},
          \qquad h_k = \epsilon^{1/3} \max(1, |x_k|),

the step that balances the truncation error (``O(h^2)``) against the rounding error
(``O(eps / h)``) for the dtype of ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._array import Array, as_float_array

__all__ = ["GradcheckResult", "gradcheck", "numerical_jacobian"]

# Default tolerances per dtype (bits of the significand's rounding unit): the errors of a
# central difference with the cube-root step are about eps^(2/3) times the size of f.
_TOLERANCES = {64: (1e-5, 1e-7), 32: (1e-2, 1e-3), 16: (1e-1, 5e-2)}


@dataclass(frozen=True)
class GradcheckResult:
    """What :func:`gradcheck` found. True (``bool(result)``) when every element is within tolerance.

    Attributes
    ----------
    passed : bool
        ``|analytic - numeric| <= atol + rtol * |numeric|`` for every Jacobian element (NaN fails).
    index : tuple of int
        The worst element's index in the Jacobian of shape ``f(x).shape + x.shape``.
    analytic, numeric : float
        Both values at ``index``.
    max_abs_error : float
        ``max |analytic - numeric|``.
    max_rel_error : float
        ``max |analytic - numeric| / max |numeric|`` (norm-wise, so zero entries do not blow up).
    eps, rtol, atol : float
        The relative step and the tolerances used.
    """

    passed: bool
    index: tuple[int, ...]
    analytic: float
    numeric: float
    max_abs_error: float
    max_rel_error: float
    eps: float
    rtol: float
    atol: float

    def __bool__(self) -> bool:
        return self.passed


def _to_numpy(a: Any) -> Any:
    import numpy as np

    if hasattr(a, "detach"):  # torch
        a = a.detach().cpu()
    if hasattr(a, "compute") and not isinstance(a, np.ndarray):  # dask
        a = a.compute()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(a).astype(np.float64)


def _default_eps(xp: Any, dtype: Any) -> float:
    return float(xp.finfo(dtype).eps) ** (1.0 / 3.0)


def _check_point(xp: Any, x: Array, step: float) -> None:
    """ValueError where central differences are undefined: a non-finite ``x``, or one so large
    that ``x + h`` overflows (issue #16's fuzz)."""
    if math.prod(x.shape) == 0:
        return
    big = float(xp.finfo(x.dtype).max) / (1.0 + step)
    if not bool(xp.all(xp.abs(x) <= big)):  # NaN fails too
        raise ValueError(
            f"x must be finite and below {big:.3g} in magnitude for central differences, "
            f"got a largest |x| of {float(xp.max(xp.abs(x)))}"
        )


def numerical_jacobian(f: Callable[[Array], Any], x: Array, *, eps: float | None = None) -> Array:
    r"""The Jacobian of ``f`` at ``x`` by central differences.

    .. math:: J[\ldots, k] = \frac{f(x + h_k e_k) - f(x - h_k e_k)}{2 h_k},
              \qquad h_k = \text{eps} \cdot \max(1, |x_k|)

    rounded so that ``x_k + h_k`` is exact. Costs ``2 x.size`` calls of ``f``.

    Parameters
    ----------
    f : callable
        Takes an array of ``x``'s shape and library, returns an array (or a scalar).
    x : array
        The point; a real floating array of any shape and array library.
    eps : float, optional
        The relative step; default ``finfo(x.dtype).eps ** (1/3)`` (6.1e-6 for float64,
        4.9e-3 for float32).

    Returns
    -------
    array
        Shape ``f(x).shape + x.shape``, in ``x``'s array library.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> J = sg.numerical_jacobian(sg.softmax, np.array([1.0, 2.0, 3.0]))
    >>> np.allclose(J, sg.softmax_jacobian([1.0, 2.0, 3.0]), atol=1e-9)
    True
    """
    xp, x = as_float_array(x, "x")
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    step = _default_eps(xp, x.dtype) if eps is None else _check_eps(eps)
    _check_point(xp, x, step)
    shape = tuple(x.shape)
    flat = xp.reshape(x, (-1,))
    n = flat.shape[0]
    h = step * xp.maximum(xp.ones_like(flat), xp.abs(flat))
    h = (flat + h) - flat  # representable: x + h is exact
    if n and not bool(xp.all(h > 0)):  # the step is below the resolution of x's dtype there
        raise ValueError(f"eps={step!r} gives a step of 0 at some x in {x.dtype}; use a larger eps")
    idx = xp.arange(n)
    zero = xp.zeros_like(flat)
    cols = []
    out_shape: tuple[int, ...] = ()
    for k in range(n):
        ek = xp.where(idx == k, h, zero)
        fp = xp.asarray(f(xp.reshape(flat + ek, shape)))
        fm = xp.asarray(f(xp.reshape(flat - ek, shape)))
        out_shape = tuple(fp.shape)
        cols.append(xp.reshape((fp - fm) / (2 * h[k]), (-1,)))
    if not cols:
        y = xp.asarray(f(x))
        return xp.zeros((*tuple(y.shape), *shape), dtype=x.dtype)
    return xp.reshape(xp.stack(cols, axis=-1), (*out_shape, *shape))


def _check_eps(eps: Any) -> float:
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a positive number, got {eps!r}") from None
    if not 0.0 < e < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    return e


def _check_tol(value: Any, default: float, name: str) -> float:
    if value is None:
        return default
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number >= 0, got {value!r}") from None
    if not v >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def _jacobian_from_vjp(vjp: Callable[[Array, Array], Any], x: Array, y: Array, xp: Any) -> Any:
    """Stack ``vjp(x, e_i)`` over the outputs ``i``: row ``i`` of the Jacobian."""
    import numpy as np

    m = 1
    for s in y.shape:
        m *= s
    idx = xp.arange(m)
    rows = []
    for i in range(m):
        g = xp.reshape(xp.astype(idx == i, y.dtype), tuple(y.shape))
        rows.append(_to_numpy(vjp(x, g)).reshape(-1))
    return np.stack(rows).reshape(tuple(y.shape) + tuple(x.shape)) if rows else np.zeros(
        tuple(y.shape) + tuple(x.shape)
    )


def _compare(analytic: Any, numeric: Any, rtol: float, atol: float) -> tuple[bool, Any, float, float, float]:
    import numpy as np

    diff = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    ratio = np.where(np.isnan(diff), np.inf, diff / np.where(allowed > 0, allowed, np.finfo(float).tiny))
    worst = int(np.argmax(ratio)) if ratio.size else 0
    passed = bool(np.all(diff <= allowed)) if ratio.size else True
    max_abs = float(np.nanmax(diff)) if diff.size and not np.all(np.isnan(diff)) else 0.0
    if diff.size and np.any(np.isnan(diff)):
        max_abs = float("nan")
    scale = float(np.max(np.abs(numeric))) if numeric.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return passed, worst, max_abs, max_rel, float(ratio.reshape(-1)[worst]) if ratio.size else 0.0


def gradcheck(
    f: Callable[[Array], Any],
    x: Array,
    *,
    jacobian: Callable[[Array], Any] | None = None,
    vjp: Callable[[Array, Array], Any] | None = None,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> GradcheckResult:
    r"""Check a hand-written derivative of ``f`` at ``x`` against central differences.

    Passes when every element of the Jacobian satisfies

    .. math:: |J^{\text{analytic}} - J^{\text{numeric}}| \le \text{atol} + \text{rtol}\, |J^{\text{numeric}}|

    with ``J^numeric`` from :func:`numerical_jacobian`.

    Parameters
    ----------
    f : callable
        ``f(x) -> array``: the function whose derivative is checked.
    x : array
        The point (any shape, any array library; keep it small: ``2 x.size`` calls of ``f``).
    jacobian : callable, optional
        ``jacobian(x) -> J`` of shape ``f(x).shape + x.shape`` (or any shape of that size).
    vjp : callable, optional
        ``vjp(x, g) -> g^T J`` of ``x``'s shape, for a cotangent ``g`` of ``f(x)``'s shape; it is
        called once per output element to build ``J`` row by row. Give ``jacobian``, ``vjp`` or
        both (both must pass).
    eps : float, optional
        Relative step; default ``finfo(x.dtype).eps ** (1/3)``.
    rtol, atol : float, optional
        Defaults for float64 ``1e-5, 1e-7``; float32 ``1e-2, 1e-3``; half ``1e-1, 5e-2``.

    Returns
    -------
    GradcheckResult
        Truthy when it passed; ``index``, ``analytic`` and ``numeric`` locate the worst element.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> x = np.array([0.5, -1.0, 2.0])
    >>> bool(sg.gradcheck(sg.softmax, x, jacobian=sg.softmax_jacobian))
    True
    >>> wrong = lambda x, g: g  # forgot the softmax Jacobian
    >>> result = sg.gradcheck(sg.softmax, x, vjp=wrong)
    >>> result.passed, result.index
    (False, (1, 1))
    """
    import numpy as np

    xp, x = as_float_array(x, "x")
    if jacobian is None and vjp is None:
        raise ValueError("gradcheck needs jacobian= or vjp= (or both), got neither")
    for name, fn in (("f", f), ("jacobian", jacobian), ("vjp", vjp)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    bits = 64 if x.dtype == xp.float64 else 32 if x.dtype == xp.float32 else 16
    rtol_d, atol_d = _TOLERANCES[bits]
    step = _default_eps(xp, x.dtype) if eps is None else _check_eps(eps)
    rtol_v, atol_v = _check_tol(rtol, rtol_d, "rtol"), _check_tol(atol, atol_d, "atol")

    y = xp.asarray(f(x))
    numeric = _to_numpy(numerical_jacobian(f, x, eps=step))
    shape = tuple(y.shape) + tuple(x.shape)
    numeric = numeric.reshape(shape)
    candidates = []
    if jacobian is not None:
        jac = _to_numpy(jacobian(x))
        if jac.size != numeric.size:
            raise ValueError(f"jacobian(x) must have shape {shape}, got {jac.shape}")
        candidates.append(jac.reshape(shape))
    if vjp is not None:
        candidates.append(_jacobian_from_vjp(vjp, x, y, xp))

    best = None
    for analytic in candidates:
        passed, worst, max_abs, max_rel, ratio = _compare(analytic, numeric, rtol_v, atol_v)
        idx = tuple(int(i) for i in np.unravel_index(worst, shape)) if numeric.size else ()
        result = GradcheckResult(
            passed, idx, float(analytic[idx]) if numeric.size else 0.0,
            float(numeric[idx]) if numeric.size else 0.0, max_abs, max_rel, step, rtol_v, atol_v,
        )
        if best is None or (best[0].passed and not passed) or (best[0].passed == passed and ratio > best[1]):
            best = (result, ratio)
    return best[0]  # type: ignore[index]
