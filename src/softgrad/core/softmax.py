"""softmax, log_softmax and logsumexp: the reference implementation.

All three are built on one private helper, :func:`_shift`, which subtracts the row maximum with
its rounding error kept (an error-free TwoSum), so that ``exp`` sees the exact shifted input, and
which splits the normalizer into "the entries equal to the maximum" and "the rest" so that
``logsumexp([0, -30])`` is computed as ``log1p(exp(-30))`` and not as ``log(1 + tiny)``.

A temperature divides the shifted differences, with the division's remainder kept in the same
error term (Dekker's product), so ``softmax(x, temperature=T)`` is as accurate as
``softmax(x)``: it is the softmax of the exact ``x / T``, not of ``x / T`` rounded.

float32 input computes in float64 and half precision in float32, then rounds once, so results
are within an ULP or two of the exact value (measured against mpmath in
``tests/test_core_accuracy.py``). Each public function validates its arguments first, then
lets the fused CPU kernels (:mod:`._dispatch`) take NumPy float32/float64 input, or runs the
reference code below; the kernels are tested against it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

from .._array import (
    Array,
    as_float_array,
    cast_result,
    check_out,
    check_temperature,
    compute_dtype,
    normalize_axis,
    store_out,
    temperature_in,
    validate_where,
)
from . import _autodiff, _computes, _dispatch

__all__ = ["log_softmax", "logsumexp", "softmax"]


class _Shifted(NamedTuple):
    """A row-wise shift by the maximum: ``(x - max) / T = y + lo`` up to ``lo``'s rounding."""

    y: Array  # (x - max) / T, rounded; 0 at the maxima, -inf at masked and -inf entries
    lo: Array  # the rounding error of ``y``: (x - max) / T == y + lo
    m: Array  # the row maximum of x (keepdims); -inf for empty rows, +inf for rows holding +inf
    ties: Array  # how many entries equal the maximum (keepdims), as a float
    rest: Array  # sum of exp(y + lo) over the other entries (keepdims)
    e: Array  # exp(y + lo), to first order in lo


def _shift(xp: Any, x: Array, axis: int, where: Array | None, t: float = 1.0) -> _Shifted:
    """Shift ``x`` (already in the compute dtype) by its maximum along ``axis``, then divide by ``t``.

    Rows holding +inf are treated as the limit of finite rows: the +inf entries share the mass
    equally and every other entry gets 0. Rows with no unmasked entry, or only -inf entries, have
    ``ties == 0`` and ``rest == 0``. A NaN anywhere in a row (unmasked) makes the whole row NaN.
    Differences beyond the largest float (``[1e308, -1e308]``) round to -inf without overflowing.
    """
    neg_inf = xp.asarray(-xp.inf, dtype=x.dtype, device=_device(x))
    if where is not None:
        x = xp.where(where, x, neg_inf)
    if x.shape[axis] == 0:  # rows of no entries are empty rows: logsumexp -inf, as in SciPy
        shape = tuple(1 if i == axis else n for i, n in enumerate(x.shape))
        m = xp.full(shape, -xp.inf, dtype=x.dtype, device=_device(x))
    else:
        m = xp.max(x, axis=axis, keepdims=True)
    zero = xp.zeros_like(m)
    m_shift = xp.where(xp.isinf(m), zero, m)  # NaN stays NaN and poisons the row
    # x - m overflows only when x and m are huge and of opposite signs; then the exact
    # difference is below -max and rounds to -inf. Halving is exact, so test on halves.
    fmax = float(xp.finfo(x.dtype).max)
    finite = xp.isfinite(x)
    half_diff = x * 0.5 - m_shift * 0.5
    beyond = finite & (half_diff < -0.5 * fmax)
    y = xp.where(beyond, neg_inf, x - xp.where(beyond, x, m_shift))
    pos_inf_row = m == xp.inf
    y = xp.where(pos_inf_row, xp.where(x == xp.inf, xp.zeros_like(x), neg_inf), y)

    # TwoSum(a, b) error term with a = x, b = -m, on finite differences only.
    a = xp.where(finite & ~beyond, x, xp.zeros_like(x))
    b = -xp.where(xp.isfinite(m), m, zero)
    s = a + b
    bb = s - a
    lo = (a - (s - bb)) + (b - bb)
    if t != 1.0:
        t = temperature_in(xp, x.dtype, t)
        y, lo = _divide(xp, y, lo, t)
        if t > 1.0:  # a difference beyond the largest float may come back in range
            q = _quotient(xp, xp.where(beyond, half_diff, xp.zeros_like(x)), 0.5 * t)
            y = xp.where(beyond, q, y)

    is_top = y == 0
    e = xp.exp(y)
    e = e + e * lo
    ties = xp.sum(xp.astype(is_top, x.dtype), axis=axis, keepdims=True)
    rest = xp.sum(xp.where(is_top, xp.zeros_like(e), e), axis=axis, keepdims=True)
    return _Shifted(y, lo, m, ties, rest, e)


def _divide(xp: Any, y: Array, lo: Array, t: float) -> tuple[Array, Array]:
    """``(y + lo) / t`` as ``q + lo_q`` with the rounding error of ``y / t`` kept.

    The remainder ``r = y - q t`` of the rounded quotient ``q`` is exact in floating point; it is
    found with Dekker's product (Veltkamp splits of ``q`` and ``t``), so that ``exp`` sees the
    exact tempered input, as it does for ``t == 1``. Quotients beyond the largest float round to
    -inf (``y <= 0``) without overflowing.
    """
    dtype = y.dtype
    fi = xp.finfo(dtype)
    fmax = float(fi.max)
    emax = math.frexp(fmax)[1]
    bits = round(1 - math.log2(float(fi.eps)))  # 53 for float64, 24 for float32
    half = (bits + 1) // 2
    if t < math.ldexp(1.0, -emax // 8 * 7):
        y, lo, t = _scaled_up(xp, y, lo, t, _overflow_limit(fmax, bits, t))
    tc = t  # already as the compute dtype holds it (temperature_in)
    mant, exp = math.frexp(tc)
    t_hi = math.ldexp(math.floor(math.ldexp(mant, half)), exp - half)  # ``half`` leading bits
    t_lo = tc - t_hi

    q = _quotient(xp, y, tc)
    # Split moderate quotients only: beyond them the correction is far below an ULP of q.
    ok = xp.isfinite(q) & (xp.abs(q) < math.ldexp(1.0, emax // 2)) & (xp.abs(y) < math.ldexp(1.0, emax - 2))
    qs = xp.where(ok, q, xp.zeros_like(q))
    c = qs * float(2**half + 1)
    q_hi = c - (c - qs)
    q_lo = qs - q_hi
    p = qs * tc
    err = ((q_hi * t_hi - p) + q_hi * t_lo + q_lo * t_hi) + q_lo * t_lo  # qs * tc == p + err
    r = (y - p) - err  # y - p is exact (Sterbenz)
    return q, xp.where(ok, r + lo, xp.zeros_like(y)) / tc


def _scaled_up(xp: Any, y: Array, lo: Array, t: float, limit: float) -> tuple[Array, Array, float]:
    """``(y 2^s, lo 2^s, t 2^s)`` with ``t 2^s`` in [0.5, 1): the same quotient, and Dekker's
    products no longer underflow (a tiny ``T``, issue #16). Quotients beyond the largest float
    (``y <= -limit``) become ``-inf`` first, so the scaling never overflows."""
    s = -math.frexp(t)[1]
    over = y <= -limit
    zero = xp.zeros_like(y)
    y, lo = xp.where(over, zero, y), xp.where(over, zero, lo)
    for step in (s // 2, s - s // 2):  # 2**s itself may be beyond the largest float
        y, lo = y * math.ldexp(1.0, step), lo * math.ldexp(1.0, step)
    return xp.where(over, xp.full_like(y, -xp.inf), y), lo, math.ldexp(t, s)


def _quotient(xp: Any, y: Array, t: float) -> Array:
    """``y / t`` for ``y <= 0``, with quotients beyond the largest float set to -inf first."""
    fi = xp.finfo(y.dtype)
    bits = round(1 - math.log2(float(fi.eps)))
    limit = _overflow_limit(float(fi.max), bits, t)
    if not math.isfinite(limit):
        return y / t
    over = y <= -limit
    neg_inf = xp.asarray(-xp.inf, dtype=y.dtype, device=_device(y))
    return xp.where(over, neg_inf, xp.where(over, xp.zeros_like(y), y) / t)


def _overflow_limit(fmax: float, bits: int, t: float) -> float:
    """The smallest float ``v`` with ``v / t`` rounding beyond ``fmax`` (inf when there is none)."""
    emax = math.frexp(fmax)[1]
    omega = Fraction(2) ** emax - Fraction(2) ** (emax - bits - 1)  # halfway past fmax
    bound = omega * Fraction(t)
    if bound > fmax:
        return math.inf
    v = float(bound)
    if Fraction(v) < bound:
        v = math.nextafter(v, math.inf)
    return v


def _log_normalizer_shift(xp: Any, shifted: _Shifted) -> Array:
    """``log(sum(exp(x - max)))``: ``log1p`` keeps small ``rest`` exact when there is one top.

    Empty rows (``ties == 0``) give ``-inf``.
    """
    nonempty = shifted.ties > 0
    arg = xp.where(nonempty, (shifted.ties - 1) + shifted.rest, xp.zeros_like(shifted.rest))
    return xp.where(nonempty, xp.log1p(arg), xp.full_like(arg, -xp.inf))


class _Checked(NamedTuple):
    """The validated arguments of softmax, log_softmax and logsumexp."""

    xp: Any
    x: Array  # a real floating array (lists and integers converted), in the caller's dtype
    axis: int
    t: float
    where: Array | None  # broadcast to x's shape


def _check(x: Any, axis: Any, temperature: Any, where: Any) -> _Checked:
    xp, xf = as_float_array(x, "x")
    axis = normalize_axis(axis, xf.ndim)
    t = check_temperature(temperature)
    return _Checked(xp, xf, axis, t, validate_where(xp, where, xf))


def _kernel_takes(a: _Checked, x: Any) -> bool:
    """The caller's own NumPy float32/float64 array (a converted list keeps the reference)."""
    return a.x is x and _dispatch.applies(a.x) and _dispatch.temperature_applies(a.t)


def _shifted(a: _Checked, t: float = 1.0) -> _Shifted:
    """The reference's shift of ``a.x``, in the compute dtype."""
    xp = a.xp
    return _shift(xp, xp.astype(a.x, compute_dtype(xp, a.x.dtype)), a.axis, a.where, t)


def softmax(
    x: Array,
    /,
    axis: int = -1,
    *,
    temperature: float = 1.0,
    where: Array | None = None,
    out: Array | None = None,
) -> Array:
    r"""Softmax along ``axis``: probabilities that sum to 1.

    .. math:: S_i = \frac{\exp(x_i / T)}{\sum_j \exp(x_j / T)}

    computed as :math:`\exp(x_i/T - m) / \sum_j \exp(x_j/T - m)` with :math:`m` the row
    maximum, so it never overflows. Softmax is the gradient of :func:`logsumexp` and the
    exponential of :func:`log_softmax`.

    Parameters
    ----------
    x : array_like
        Real input of any shape with at least one dimension. Integers are promoted to the
        default floating dtype of their array library; complex input is a ``TypeError``.
    axis : int, optional
        The axis to normalize over (default -1). All other axes are batch axes.
    temperature : float, optional
        ``T > 0``: the input is divided by ``T`` first (default 1).
    where : array of bool, optional
        Broadcastable to ``x``. False entries are left out of the normalization and get
        probability 0.
    out : numpy.ndarray, optional
        A NumPy array of ``x``'s shape and dtype to write the result into (NumPy input only).

    Returns
    -------
    array
        Same array type, shape, dtype and device as ``x``.

    Notes
    -----
    float32 computes in float64 and float16/bfloat16 in float32; the result is within a few
    ULP of the exact value. Special rows:

    * a row holding ``+inf`` shares the mass equally among its ``+inf`` entries (the limit);
    * a row whose entries are all ``-inf`` or all masked gives 0 everywhere;
    * a NaN anywhere in a row (unmasked) gives NaN for the whole row.

    Examples
    --------
    >>> import softgrad as sg
    >>> sg.softmax([1.0, 2.0, 3.0])
    array([0.09003057, 0.24472847, 0.66524096])
    >>> sg.softmax([1000.0, 2000.0, 3000.0])  # the naive formula gives nan here
    array([0., 0., 1.])
    >>> sg.softmax([1.0, 2.0, 3.0], where=[True, False, True])
    array([0.11920292, 0.        , 0.88079708])
    """
    if _autodiff.takes(x, temperature, where, out):
        return _autodiff.softmax(x, axis)
    a = _check(x, axis, temperature, where)
    check_out(out, tuple(a.x.shape), a.x.dtype, a.x)
    if _kernel_takes(a, x):
        return _dispatch.softmax(a.x, a.axis, a.t, a.where, out)
    return store_out(_softmax(a), out)


def _softmax(a: _Checked) -> Array:
    """The reference softmax of validated arguments."""
    xp = a.xp
    shifted = _shifted(a, a.t)
    total = shifted.ties + shifted.rest
    total = xp.where(total > 0, total, xp.ones_like(total))  # empty rows: 0 / 1 = 0
    s = shifted.e / total
    return xp.astype(s, a.x.dtype)


def log_softmax(
    x: Array,
    /,
    axis: int = -1,
    *,
    temperature: float = 1.0,
    where: Array | None = None,
    out: Array | None = None,
) -> Array:
    r"""Logarithm of :func:`softmax`, computed without forming softmax.

    .. math:: \log S_i = x_i / T - \operatorname{logsumexp}(x / T)

    Exact where softmax underflows: ``log_softmax([0, -1000]) == [0, -1000]``.

    Parameters
    ----------
    x, axis, temperature, where, out
        As for :func:`softmax`.

    Returns
    -------
    array
        Same array type, shape, dtype and device as ``x``.

    Notes
    -----
    Masked entries and ``-inf`` entries give ``-inf``; a row that is all ``-inf`` or all masked
    gives ``-inf`` everywhere; in a row holding ``k`` entries equal to ``+inf`` those entries
    give ``-log(k)`` and the others ``-inf``; a NaN makes its row NaN.

    Examples
    --------
    >>> import softgrad as sg
    >>> sg.log_softmax([0.0, -1000.0])
    array([    0., -1000.])
    >>> sg.log_softmax([1.0, 2.0, 3.0])
    array([-2.40760596, -1.40760596, -0.40760596])
    """
    if _autodiff.takes(x, temperature, where, out):
        return _autodiff.log_softmax(x, axis)
    a = _check(x, axis, temperature, where)
    check_out(out, tuple(a.x.shape), a.x.dtype, a.x)
    if _kernel_takes(a, x):
        return _dispatch.log_softmax(a.x, a.axis, a.t, a.where, out)
    return store_out(_log_softmax(a), out)


def _log_softmax(a: _Checked) -> Array:
    """The reference log_softmax of validated arguments."""
    xp = a.xp
    shifted = _shifted(a, a.t)
    shift = _log_normalizer_shift(xp, shifted)
    shift = xp.where(xp.isinf(shift), xp.zeros_like(shift), shift)  # empty rows stay -inf
    logp = (shifted.y - shift) + shifted.lo
    return cast_result(xp, logp, a.x.dtype)


def logsumexp(
    x: Array,
    /,
    axis: int | tuple[int, ...] | None = -1,
    *,
    keepdims: bool = False,
    where: Array | None = None,
    b: Array | None = None,
    return_sign: bool = False,
    out: Array | None = None,
) -> Any:
    r"""Log of the sum of exponentials along ``axis``, without overflow.

    .. math:: \operatorname{logsumexp}(x) = m + \log \sum_i \exp(x_i - m), \quad m = \max_i x_i

    The sum over the non-maximal entries goes through ``log1p``, so results near 0 are exact
    (``logsumexp([0, -30]) == log1p(exp(-30))``). Its gradient is :func:`softmax`.

    Parameters
    ----------
    x, where, out
        As for :func:`softmax`.
    axis : int, tuple of ints or None, optional
        The axis (default -1, the last: softgrad's convention throughout, where SciPy's
        default is ``None``), several axes, or ``None`` for all of them, as in SciPy.
    keepdims : bool, optional
        Keep the reduced axes with length 1.
    b : array_like, optional
        Weights broadcastable to ``x``, as in SciPy: ``log(sum(b * exp(x)))``. Entries with
        ``b == 0`` are left out (also when ``x`` is ``+inf`` there).
    return_sign : bool, optional
        Also return the sign of ``sum(b * exp(x))`` (1, -1, or 0 for an empty sum), and the
        log of its absolute value, as SciPy. Without it a negative sum gives NaN.

    Returns
    -------
    array
        ``x``'s array type and dtype, with ``axis`` removed (or of length 1 with ``keepdims``).

    Notes
    -----
    An empty row (all ``-inf`` or all masked) gives ``-inf``; a row holding ``+inf`` gives
    ``+inf``; a NaN gives NaN.

    The result is within a few ULP of the exact value, except where it cancels against a
    negative maximum (``logsumexp([-0.7, -0.7]) = -0.0069``): the condition number there is
    ``|max x| / |result|``, and the error is a few ULP of ``max x`` instead (float64; float32
    input computes in float64 and keeps its few ULP).

    Examples
    --------
    >>> import softgrad as sg
    >>> float(sg.logsumexp([1000.0, 1000.0]))
    1000.6931471805599...
    >>> float(sg.logsumexp([0.0, -30.0]))
    9.357622968839737e-14
    """
    if axis is None or isinstance(axis, tuple) or b is not None or return_sign:
        return _general_logsumexp(x, axis, bool(keepdims), where, b, bool(return_sign), out)
    if _autodiff.takes(x, 1.0, where, out):
        return _autodiff.logsumexp(x, axis, bool(keepdims))
    a = _check(x, axis, 1.0, where)
    shape = tuple(a.x.shape)
    check_out(out, shape[: a.axis] + ((1,) if keepdims else ()) + shape[a.axis + 1 :], a.x.dtype, a.x)
    if _kernel_takes(a, x):
        return _dispatch.logsumexp(a.x, a.axis, keepdims, a.where, out)
    return store_out(_logsumexp(a, keepdims), out)


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints or None) as sorted distinct non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    axes = tuple(sorted(normalize_axis(a, ndim) for a in items))
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis must not repeat an axis, got {axis!r}")
    return axes


def _general_logsumexp(
    x: Any, axis: Any, keepdims: bool, where: Any, b: Any, return_sign: bool, out: Any
) -> Any:
    """logsumexp over several axes, with SciPy's ``b=`` weights and ``return_sign``.

    The reduced axes are moved last and merged into one, so the one-axis code does the work:
    the error-free reference (or the kernel) without ``b``/``return_sign``; with them
    ``m + log|sum(b exp(x - m))|`` in the compute dtype (float64 for float32 input), with ``m``
    the maximum over the entries whose weight is not 0.
    """
    xp, xf = as_float_array(x, "x")
    if xf.ndim == 0:
        xf = xp.reshape(xf, (1,))
    shape = tuple(xf.shape)
    axes = _axes(axis, len(shape))
    kept = [i for i in range(len(shape)) if i not in axes]
    rows = tuple(shape[i] for i in kept)
    width = math.prod(shape[i] for i in axes)

    def merged(a: Array) -> Array:
        return xp.reshape(xp.permute_dims(a, (*kept, *axes)), (*rows, width))

    mask = validate_where(xp, where, xf)
    result_shape = tuple(1 if i in axes else n for i, n in enumerate(shape)) if keepdims else rows
    check_out(out, result_shape, xf.dtype, xf)
    xm = merged(xf)
    wm = None if mask is None else merged(xp.broadcast_to(mask, shape))
    if b is None and not return_sign:
        lse = logsumexp(xm, -1, where=wm)
        return store_out(xp.reshape(xp.asarray(lse), result_shape), out)
    cdt = compute_dtype(xp, xf.dtype)
    a = xp.astype(xm, cdt)
    weights = _weights(xp, b, xf, cdt)
    bm = xp.ones_like(a) if weights is None else merged(xp.broadcast_to(weights, shape))
    keep = bm != 0 if wm is None else (bm != 0) & wm
    neg_inf = xp.asarray(-xp.inf, dtype=cdt, device=_device(a))
    a = xp.where(keep, a, neg_inf)
    if width:
        m = xp.max(a, axis=-1, keepdims=True)
    else:
        m = xp.full((*rows, 1), -xp.inf, dtype=cdt, device=_device(a))
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    total = xp.sum(xp.where(keep, bm * xp.exp(a - m), xp.zeros_like(a)), axis=-1)
    sign = xp.sign(total)
    empty = total == 0
    size = xp.where(empty, xp.ones_like(total), xp.abs(total))  # log(0) = -inf, without a warning
    lse = xp.where(empty, xp.full_like(total, -xp.inf), xp.squeeze(m, axis=-1) + xp.log(size))
    if not return_sign:
        lse = xp.where(total < 0, xp.full_like(lse, xp.nan), lse)
    lse = store_out(cast_result(xp, xp.reshape(lse, result_shape), xf.dtype), out)
    if return_sign:
        return lse, store_out(xp.astype(xp.reshape(sign, result_shape), xf.dtype), None)
    return lse


def _weights(xp: Any, b: Any, like: Array, dtype: Any) -> Array | None:
    """SciPy's ``b``: real weights broadcastable to ``like``, in ``dtype``."""
    if b is None:
        return None
    _, bf = as_float_array(b if hasattr(b, "shape") else xp.asarray(b, device=_device(like)), "b")
    try:
        bf = xp.broadcast_to(bf, tuple(like.shape))
    except (ValueError, RuntimeError):
        raise ValueError(
            f"b must be broadcastable to x's shape {tuple(like.shape)}, got {tuple(bf.shape)}"
        ) from None
    return xp.astype(bf, dtype)


def _device(a: Array) -> Any:
    import array_api_compat

    return array_api_compat.device(a)


def _logsumexp(a: _Checked, keepdims: bool) -> Array:
    """The reference logsumexp of validated arguments."""
    xp = a.xp
    shifted = _shifted(a)
    shift = _log_normalizer_shift(xp, shifted)
    lse = shifted.m + xp.where(xp.isinf(shifted.m), xp.zeros_like(shift), shift)
    if not keepdims:
        lse = xp.squeeze(lse, axis=a.axis)
    return cast_result(xp, lse, a.x.dtype)


# What the autodiff rules compute with: the public functions (their kernels take NumPy views) and
# the reference alone (JAX).
_computes.register("softmax")(softmax)
_computes.register("log_softmax")(log_softmax)
_computes.register("logsumexp")(logsumexp)


@_computes.register("softmax_reference")
def _softmax_reference(x: Array, axis: int) -> Array:
    return _softmax(_check(x, axis, 1.0, None))


@_computes.register("log_softmax_reference")
def _log_softmax_reference(x: Array, axis: int) -> Array:
    return _log_softmax(_check(x, axis, 1.0, None))


@_computes.register("logsumexp_reference")
def _logsumexp_reference(x: Array, axis: int, keepdims: bool) -> Array:
    return _logsumexp(_check(x, axis, 1.0, None), keepdims)
