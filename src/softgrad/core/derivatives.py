"""Exact derivatives of softmax and log_softmax in closed form.

Vector products (VJP, JVP) cost O(N) per row and never form a Jacobian; the dense Jacobians
and the Hessian are there for when a user asks for them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat

from .._array import (
    Array,
    array_namespace,
    as_float_array,
    cast_result,
    check_out,
    check_same_shape,
    check_temperature,
    compute_dtype,
    normalize_axis,
    store_out,
    temperature_in,
)
from . import _dispatch
from .softmax import _overflow_limit, log_softmax, softmax

__all__ = [
    "log_softmax_jacobian",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "softmax_hessian",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]


def _probabilities_last(x: Array, axis: Any, temperature: Any) -> tuple[Any, Array, Any, float]:
    """softmax(x) in the compute dtype with ``axis`` moved last, plus the output dtype."""
    xp, x = as_float_array(x, "x")
    axis = normalize_axis(axis, x.ndim)
    t = check_temperature(temperature)
    cd = compute_dtype(xp, x.dtype)
    s = softmax(xp.astype(x, cd), axis=axis, temperature=t)
    return xp, xp.moveaxis(s, axis, -1), x.dtype, t


def _over_temperature(xp: Any, a: Array, t: float) -> Array:
    """``a / T``; quotients beyond the largest float are ``+-inf``, set without an overflow.

    A tiny ``T`` (down to the smallest subnormal) divides finite derivatives out of range: the
    exact value is then beyond every float and ``+-inf`` is its rounding.
    """
    tc = temperature_in(xp, a.dtype, t)
    if tc >= 1.0:
        return a / tc
    bits = round(1 - math.log2(float(xp.finfo(a.dtype).eps)))
    over = xp.abs(a) >= _overflow_limit(float(xp.finfo(a.dtype).max), bits, tc)
    quotient = xp.where(over, xp.zeros_like(a), a) / tc
    inf = xp.full_like(a, xp.inf)
    return xp.where(over, xp.where(a > 0, inf, -inf), quotient)


def _eye_minus(xp: Any, s: Array) -> Array:
    """``A[..., i, j] = delta_ij - s_j``."""
    n = s.shape[-1]
    return xp.eye(n, dtype=s.dtype, device=array_api_compat.device(s)) - s[..., None, :]


def softmax_jacobian(x: Array, /, axis: int = -1, *, temperature: float = 1.0) -> Array:
    r"""The full Jacobian of :func:`softmax`, one ``N x N`` matrix per row.

    .. math:: J_{ij} = \frac{\partial S_i}{\partial x_j} = \frac{S_i (\delta_{ij} - S_j)}{T}

    Symmetric, with rows and columns summing to 0. For a gradient use :func:`softmax_vjp`,
    which costs O(N) instead of O(N^2).

    Parameters
    ----------
    x : array_like
        Input of shape ``(..., N, ...)``.
    axis : int, optional
        The softmax axis (default -1); it is moved last in the result.
    temperature : float, optional
        ``T > 0`` (default 1).

    Returns
    -------
    array
        Shape ``(..., N, N)``: the batch axes in order, then ``i``, then ``j``. Same array type
        and dtype as ``x``. Masked or underflowed probabilities give zero rows and columns.

    Examples
    --------
    >>> import softgrad as sg
    >>> sg.softmax_jacobian([1.0, 2.0, 3.0])
    array([[ 0.08192507, -0.02203304, -0.05989202],
           [-0.02203304,  0.18483645, -0.1628034 ],
           [-0.05989202, -0.1628034 ,  0.22269543]])
    """
    xp, s, out_dtype, t = _probabilities_last(x, axis, temperature)
    jac = s[..., :, None] * _eye_minus(xp, s)
    if t != 1.0:
        jac = _over_temperature(xp, jac, t)
    return cast_result(xp, jac, out_dtype)


def log_softmax_jacobian(x: Array, /, axis: int = -1, *, temperature: float = 1.0) -> Array:
    r"""The full Jacobian of :func:`log_softmax`, one ``N x N`` matrix per row.

    .. math:: J_{ij} = \frac{\partial \log S_i}{\partial x_j} = \frac{\delta_{ij} - S_j}{T}

    Rows ``i`` whose log-probability is ``-inf`` (a ``-inf`` input entry, or an empty row)
    are constant in ``x`` and are 0.

    Parameters
    ----------
    x, axis, temperature
        As for :func:`softmax_jacobian`.

    Returns
    -------
    array
        Shape ``(..., N, N)``, ``x``'s array type and dtype.

    Examples
    --------
    >>> import softgrad as sg
    >>> sg.log_softmax_jacobian([0.0, 0.0])
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """
    xp, x = as_float_array(x, "x")
    axis = normalize_axis(axis, x.ndim)
    xp, s, out_dtype, t = _probabilities_last(x, axis, temperature)
    logp = xp.moveaxis(log_softmax(xp.astype(x, s.dtype), axis=axis), axis, -1)
    in_support = logp != -xp.inf  # NaN stays in, and poisons its row
    jac = xp.where(in_support[..., :, None], _eye_minus(xp, s), xp.zeros_like(s[..., None, :]))
    if t != 1.0:
        jac = _over_temperature(xp, jac, t)
    return cast_result(xp, jac, out_dtype)


class _Pair(NamedTuple):
    """Two validated arrays of one library and shape (not yet cast to the compute dtype)."""

    xp: Any
    a: Array
    b: Array
    axis: int
    out_dtype: Any  # their promoted dtype
    t: float  # the temperature


def _pair(a: Any, b: Any, names: tuple[str, str], axis: Any, temperature: Any) -> _Pair:
    """The checks of every product function: one array library, one shape, the axis, ``T``."""
    name_a, name_b = names
    xp, a = as_float_array(a, name_a)
    if isinstance(b, (int, float, list, tuple)):  # plain numbers join a's array library
        _, b = as_float_array(b, name_b)
        b = xp.asarray(b) if xp is not array_namespace(b) else b
    xp_b, b = as_float_array(b, name_b)
    if xp_b is not xp:
        raise TypeError(
            f"{name_a} and {name_b} must be arrays of one array library, "
            f"got {type(a).__name__} and {type(b).__name__}"
        )
    check_same_shape(a, b, name_a, name_b)
    axis = normalize_axis(axis, a.ndim)
    t = check_temperature(temperature)
    return _Pair(xp, a, b, axis, xp.result_type(a.dtype, b.dtype), t)


def _in_compute_dtype(pair: _Pair) -> tuple[Array, Array]:
    cd = compute_dtype(pair.xp, pair.out_dtype)
    return pair.xp.astype(pair.a, cd), pair.xp.astype(pair.b, cd)


def _kernel_takes(pair: _Pair, a: Any, b: Any) -> bool:
    """The caller's own NumPy arrays (not converted lists) of one float32/float64 dtype."""
    same = pair.a is a and pair.b is b
    return same and _dispatch.applies(pair.a, pair.b) and _dispatch.temperature_applies(pair.t)


def _softmax_product(pair: _Pair) -> Array:
    xp, axis, t = pair.xp, pair.axis, pair.t
    s, v = _in_compute_dtype(pair)
    prod = s * (v - xp.sum(v * s, axis=axis, keepdims=True))
    if t != 1.0:
        prod = _over_temperature(xp, prod, t)
    return cast_result(xp, prod, pair.out_dtype)


def softmax_vjp(
    s: Array, g: Array, /, axis: int = -1, *, temperature: float = 1.0, out: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of softmax: the gradient with respect to ``x`` given ``dL/dS``.

    .. math:: (g^\top J)_j = \frac{S_j \,(g_j - \sum_i g_i S_i)}{T}

    O(N) per row; the Jacobian is never formed.

    Parameters
    ----------
    s : array
        ``softmax(x, axis, temperature=T)``.
    g : array
        The cotangent ``dL/dS``, of ``s``'s shape.
    axis, temperature
        As used to compute ``s``.
    out : numpy.ndarray, optional
        Where to write the result (NumPy input only).

    Returns
    -------
    array
        ``dL/dx``, of ``s``'s shape, in the promoted dtype of ``s`` and ``g``.

    Examples
    --------
    >>> import softgrad as sg
    >>> s = sg.softmax([1.0, 2.0, 3.0])
    >>> sg.softmax_vjp(s, [1.0, 0.0, 0.0])  # the first row of the Jacobian
    array([ 0.08192507, -0.02203304, -0.05989202])
    """
    pair = _pair(s, g, ("s", "g"), axis, temperature)
    check_out(out, tuple(pair.a.shape), pair.out_dtype, pair.a)
    if _kernel_takes(pair, s, g):
        return _dispatch.softmax_vjp(pair.a, pair.b, pair.axis, pair.t, out)
    return store_out(_softmax_product(pair), out)


def softmax_jvp(s: Array, v: Array, /, axis: int = -1, *, temperature: float = 1.0) -> Array:
    r"""Jacobian-vector product of softmax: the change of ``S`` along a tangent ``v``.

    .. math:: (J v)_i = \frac{S_i \,(v_i - \sum_j S_j v_j)}{T}

    (the softmax Jacobian is symmetric, so this is the same formula as :func:`softmax_vjp`).

    Examples
    --------
    >>> import softgrad as sg
    >>> s = sg.softmax([0.0, 0.0])
    >>> sg.softmax_jvp(s, [1.0, -1.0])
    array([ 0.5, -0.5])
    """
    return _softmax_product(_pair(s, v, ("s", "v"), axis, temperature))


def _log_softmax_products(pair: _Pair, vjp: bool) -> Array:
    xp, axis, t = pair.xp, pair.axis, pair.t
    logp, g = _in_compute_dtype(pair)
    in_support = logp != -xp.inf  # NaN stays in, and poisons its row
    p = xp.exp(logp)
    zeros = xp.zeros_like(g)
    if vjp:
        total = xp.sum(xp.where(in_support, g, zeros), axis=axis, keepdims=True)
        prod = xp.where(in_support, g - p * total, zeros)
    else:
        g = xp.where(in_support, g, zeros)
        prod = xp.where(in_support, g - xp.sum(p * g, axis=axis, keepdims=True), zeros)
    if t != 1.0:
        prod = _over_temperature(xp, prod, t)
    return cast_result(xp, prod, pair.out_dtype)


def log_softmax_vjp(
    logp: Array, g: Array, /, axis: int = -1, *, temperature: float = 1.0, out: Array | None = None
) -> Array:
    r"""Vector-Jacobian product of log_softmax, from its output ``logp``.

    .. math:: (g^\top J)_j = \frac{g_j - \exp(\log S_j) \sum_i g_i}{T}

    Entries with ``logp == -inf`` (masked, ``-inf`` input) are constant in ``x``: their
    cotangent is ignored and their gradient is 0, so an all-masked row gives zeros.

    Parameters
    ----------
    logp : array
        ``log_softmax(x, axis, temperature=T)``.
    g : array
        The cotangent ``dL/dlogp``, of ``logp``'s shape.
    axis, temperature, out
        As for :func:`softmax_vjp`.

    Examples
    --------
    >>> import softgrad as sg
    >>> logp = sg.log_softmax([0.0, 0.0])
    >>> sg.log_softmax_vjp(logp, [-1.0, 0.0])  # d(-log S_0)/dx = S - e_0
    array([-0.5,  0.5])
    """
    pair = _pair(logp, g, ("logp", "g"), axis, temperature)
    check_out(out, tuple(pair.a.shape), pair.out_dtype, pair.a)
    if _kernel_takes(pair, logp, g):
        return _dispatch.log_softmax_vjp(pair.a, pair.b, pair.axis, pair.t, out)
    return store_out(_log_softmax_products(pair, True), out)


def log_softmax_jvp(logp: Array, v: Array, /, axis: int = -1, *, temperature: float = 1.0) -> Array:
    r"""Jacobian-vector product of log_softmax, from its output ``logp``.

    .. math:: (J v)_i = \frac{v_i - \sum_j S_j v_j}{T}

    with ``S = exp(logp)``; entries with ``logp == -inf`` give 0.

    Examples
    --------
    >>> import softgrad as sg
    >>> sg.log_softmax_jvp(sg.log_softmax([0.0, 0.0]), [1.0, 0.0])
    array([ 0.5, -0.5])
    """
    return _log_softmax_products(_pair(logp, v, ("logp", "v"), axis, temperature), False)


def softmax_hessian(x: Array, /, axis: int = -1, *, temperature: float = 1.0) -> Array:
    r"""Second derivatives of softmax, one ``N x N x N`` tensor per row.

    .. math::
        H_{ijk} = \frac{\partial^2 S_i}{\partial x_j \partial x_k}
        = \frac{S_i \left[(\delta_{ij} - S_j)(\delta_{ik} - S_k) - S_j (\delta_{jk} - S_k)\right]}{T^2}

    Symmetric in ``j`` and ``k``; summing over ``i`` gives 0.

    Parameters
    ----------
    x, axis, temperature
        As for :func:`softmax_jacobian`.

    Returns
    -------
    array
        Shape ``(..., N, N, N)`` with the softmax axis moved last, ``x``'s type and dtype.

    Examples
    --------
    >>> import softgrad as sg
    >>> H = sg.softmax_hessian([0.0, 1.0])
    >>> H.shape
    (2, 2, 2)
    >>> float(H[0, 0, 0])  # d2 S_0 / dx_0^2 = S_0 (1 - S_0) (1 - 2 S_0)
    0.0908...
    """
    xp, s, out_dtype, t = _probabilities_last(x, axis, temperature)
    a = _eye_minus(xp, s)
    hess = s[..., :, None, None] * (
        a[..., :, :, None] * a[..., :, None, :] - s[..., None, :, None] * a[..., None, :, :]
    )
    if t != 1.0:
        hess = _over_temperature(xp, _over_temperature(xp, hess, t), t)  # T * T may underflow to 0
    return cast_result(xp, hess, out_dtype)
