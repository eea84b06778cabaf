"""Fused Numba CPU kernels for the softmax family (float32 and float64, rows along the last axis).

The reference code in :mod:`.softmax` and :mod:`.derivatives` is the specification; these
kernels compute the same thing in one or two sweeps over memory. :mod:`._dispatch` validates
the arguments, lays the data out as C-contiguous ``(rows, n)`` and calls the drivers at the
bottom of this module.

How a row of softmax is computed (``x`` of length ``n``, ``buf`` a per-thread scratch row):

1. **Stats** (one read of ``x``, from memory): the maximum ``m``, the minimum, and whether the
   row holds a NaN, by integer reductions over the bits (an order-preserving map of floats to
   integers), which LLVM vectorizes without any fast-math flag. Rows holding NaN or ``±inf``
   go to a scalar routine with the reference semantics (:func:`_special_row`).
2. **Exp** (from L1/L2): ``x - m`` as an exact pair ``s + err`` (TwoSum), ``e = exp(s + err)``
   with the exp of :mod:`._fastexp` (``err`` folded into its reduced argument), stored in
   ``buf``; ``ties`` counts the entries equal to the maximum (``s == 0``, ``e == 1`` exactly).
   When the row's spread is small (min >= m - 86 in float32, m - 700 in float64) every ``e``
   is a normal number and the cheaper :func:`exp_fast` runs; otherwise :func:`exp_core`
   with clamping (-inf entries, subnormal results).
3. **Sum** in float64 over ``buf``: blocks of 256 summed with the reassociation flag (the only
   fast-math flag used, and only on these additions: it lets LLVM vectorize the sum by
   changing its order), blocks combined with a compensated (Neumaier) sum.
4. **Store**: ``buf * (1/total)`` with ``1/total`` split in two floats (one FMA per element,
   about one rounding), written with non-temporal stores when the output is large (no
   read-for-ownership of the destination: that is what lets a fused kernel approach
   ``np.copyto`` speed).

float32 input computes in float32 with error-free corrections and float64 sums: results are
within a few ULP of the exact value (the tests measure it against mpmath). float64 input does
the same in float64. Short rows are processed in groups so that the scratch and the
non-temporal stores cover many rows at once.
"""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ._fastexp import exp_core, exp_fast, exp_full, exp_lowp, f2i, fma, i2f, nt_line, sfence

__all__ = [
    "GROUP",
    "log_softmax_vjp_2d",
    "logsumexp_2d",
    "softmax_2d",
    "softmax_vjp_2d",
]

# Elements per scratch group: a row longer than this is processed chunk by chunk (recomputing
# exp in the store sweep); shorter rows are grouped up to this many elements.
GROUP = 1 << 20
_SMALL_GROUP = 1 << 14  # rows grouped for short rows: keep the group in L2
_BLOCK = 256  # summation block for the small parts (reassociated inside, compensated across)

_strict = numba.njit(cache=True, nogil=True)


# ---------------------------------------------------------------------------------------------
# dtype-generic building blocks (overloads pick the float32 or float64 body)


def row_stats(x: Any, lo: int, hi: int) -> Any:  # pragma: no cover - jitted only
    """``(max, min, has_nan)`` of ``x[lo:hi]``."""
    raise NotImplementedError


def _stats32(x: Any, lo: Any, hi: Any) -> Any:
    mx = np.int32(-2147483648)
    mn = np.int32(2147483647)
    ab = np.int32(0)
    for j in range(lo, hi):
        b = f2i(x[j])
        key = np.int32(b ^ ((b >> 31) & 0x7FFFFFFF))  # order-preserving: float order = int order
        mx = max(mx, key)
        mn = min(mn, key)
        ab = max(ab, np.int32(b & 0x7FFFFFFF))
    m = i2f(np.int32(mx ^ ((mx >> 31) & 0x7FFFFFFF)))
    least = i2f(np.int32(mn ^ ((mn >> 31) & 0x7FFFFFFF)))
    return m, least, ab > 0x7F800000


def _stats64(x: Any, lo: Any, hi: Any) -> Any:
    mask = np.int64(0x7FFFFFFFFFFFFFFF)
    mx = np.int64(-0x7FFFFFFFFFFFFFFF - 1)
    mn = np.int64(0x7FFFFFFFFFFFFFFF)
    ab = np.int64(0)
    for j in range(lo, hi):
        b = f2i(x[j])
        key = b ^ ((b >> 63) & mask)
        mx = max(mx, key)
        mn = min(mn, key)
        ab = max(ab, b & mask)
    m = i2f(mx ^ ((mx >> 63) & mask))
    least = i2f(mn ^ ((mn >> 63) & mask))
    return m, least, ab > np.int64(0x7FF0000000000000)


@overload(row_stats, jit_options={"fastmath": False})
def _row_stats_ol(x: Any, lo: Any, hi: Any) -> Any:
    if x.dtype == types.float32:
        return _stats32
    if x.dtype == types.float64:
        return _stats64
    return None


@_strict
def two_diff(a: Any, b: Any) -> Any:  # pragma: no cover - jitted
    """``a - b == s + err`` exactly (Knuth's TwoSum), for finite ``a - b``."""
    s = a - b
    bb = s - a
    err = (a - (s - bb)) + (-b - bb)
    return s, err


@_strict
def _tempered64(v: Any, m: Any, t: float, invt: float) -> Any:  # pragma: no cover - jitted
    """``(v - m) / t`` as ``q + lo`` (float64), as the reference: the quotient rounded once and
    the division's exact remainder (one FMA) kept in ``lo``. A difference beyond the largest
    float (``v - m`` overflows) is divided in halves; ``-inf`` entries give ``(-inf, 0)``."""
    s, err = two_diff(v, m)
    q = s / t
    lo = (fma(-q, t, s) + err) * invt
    beyond = s == -np.inf
    half = (v * 0.5 - m * 0.5) / (0.5 * t)
    return (half if beyond else q), (0.0 if beyond else lo)


def exp_sweep(x: Any, lo: Any, hi: Any, work: Any, m: Any, t: Any, fast: Any) -> Any:  # pragma: no cover
    """``work[j - lo] = exp((x[j] - m) / t)`` in float64 for j in [lo, hi).

    The maxima get exactly 1 (``x - m == 0``, exp's polynomial gives 1 at 0).
    """
    raise NotImplementedError


def _exp_sweep32(x: Any, lo: Any, hi: Any, work: Any, m: Any, t: Any, fast: Any) -> Any:
    # float32 computes in float64 (as the reference): x - m is exact, exp_lowp's error is
    # 2**-33, so the float32 result is rounded once from a value far more accurate than it.
    m64 = np.float64(m)
    if t == 1.0:
        for j in range(lo, hi):
            d = np.float64(x[j]) - m64
            work[j - lo] = exp_lowp(d if d > -200.0 else -200.0)
    else:
        invt = 1.0 / t
        for j in range(lo, hi):
            d = (np.float64(x[j]) - m64) * invt
            work[j - lo] = exp_lowp(d if d > -200.0 else -200.0)


def _exp_sweep64(x: Any, lo: Any, hi: Any, work: Any, m: Any, t: Any, fast: Any) -> Any:
    if t == 1.0:
        if fast:  # spread below 700: every exp is a normal number
            for j in range(lo, hi):
                s, err = two_diff(x[j], m)
                work[j - lo] = exp_fast(s, err)
        else:
            for j in range(lo, hi):
                s, err = two_diff(x[j], m)
                work[j - lo] = exp_clamped(s, err)
    else:
        invt = 1.0 / t
        for j in range(lo, hi):
            q, qlo = _tempered64(x[j], m, t, invt)
            work[j - lo] = exp_clamped(q, qlo)


@overload(exp_sweep, jit_options={"fastmath": False})
def _exp_sweep_ol(x: Any, lo: Any, hi: Any, work: Any, m: Any, t: Any, fast: Any) -> Any:
    if x.dtype == types.float32:
        return _exp_sweep32
    if x.dtype == types.float64:
        return _exp_sweep64
    return None


def exp_clamped(s: Any, err: Any) -> Any:  # pragma: no cover - jitted only
    """``exp(s + err)`` (float64) for any ``s <= 0``: ``-inf`` and huge spreads included."""
    raise NotImplementedError


def _exp_clamped64(s: Any, err: Any) -> Any:
    ok = s > -1400.0
    return exp_core(s if ok else -1400.0, err if ok else 0.0)


@overload(exp_clamped, jit_options={"fastmath": False})
def _exp_clamped_ol(s: Any, err: Any) -> Any:
    if s == types.float64:
        return _exp_clamped64
    return None


def scale_sweep(work: Any, n: Any, stage: Any, soff: Any, total: Any) -> Any:  # pragma: no cover
    """``stage[soff + j] = work[j] / total`` rounded to ``stage``'s dtype, j < n."""
    raise NotImplementedError


def _scale_sweep32(work: Any, n: Any, stage: Any, soff: Any, total: Any) -> Any:
    inv = 1.0 / total  # float64: the product rounds to float32 once
    for j in range(n):
        stage[soff + j] = np.float32(work[j] * inv)


def _scale_sweep64(work: Any, n: Any, stage: Any, soff: Any, total: Any) -> Any:
    # 1/total as hi + lo: one FMA per entry gives the quotient to about half an ULP.
    hi = 1.0 / total
    lo = fma(-hi, total, 1.0) / total
    for j in range(n):
        b = work[j]
        stage[soff + j] = fma(b, hi, b * lo)


@overload(scale_sweep, jit_options={"fastmath": False})
def _scale_sweep_ol(work: Any, n: Any, stage: Any, soff: Any, total: Any) -> Any:
    if stage.dtype == types.float32:
        return _scale_sweep32
    if stage.dtype == types.float64:
        return _scale_sweep64
    return None


def logp_sweep(x: Any, lo: Any, hi: Any, stage: Any, soff: Any, m: Any, t: Any, shift: Any) -> Any:
    """``stage[soff + j - lo] = (x[j] - m) / t - shift``."""  # pragma: no cover - jitted only
    raise NotImplementedError


def _logp_sweep32(x: Any, lo: Any, hi: Any, stage: Any, soff: Any, m: Any, t: Any, shift: Any) -> Any:
    m64 = np.float64(m)
    if t == 1.0:
        for j in range(lo, hi):
            stage[soff + j - lo] = np.float32((np.float64(x[j]) - m64) - shift)
    else:
        invt = 1.0 / t
        for j in range(lo, hi):
            stage[soff + j - lo] = np.float32((np.float64(x[j]) - m64) * invt - shift)


def _logp_sweep64(x: Any, lo: Any, hi: Any, stage: Any, soff: Any, m: Any, t: Any, shift: Any) -> Any:
    if t == 1.0:
        for j in range(lo, hi):
            s, err = two_diff(x[j], m)
            err = err if s > -np.inf else 0.0
            stage[soff + j - lo] = (s - shift) + err
    else:
        invt = 1.0 / t
        for j in range(lo, hi):
            q, qlo = _tempered64(x[j], m, t, invt)
            stage[soff + j - lo] = (q - shift) + qlo


@overload(logp_sweep, jit_options={"fastmath": False})
def _logp_sweep_ol(x: Any, lo: Any, hi: Any, stage: Any, soff: Any, m: Any, t: Any, shift: Any) -> Any:
    if x.dtype == types.float32:
        return _logp_sweep32
    if x.dtype == types.float64:
        return _logp_sweep64
    return None


# ---------------------------------------------------------------------------------------------
# Sums (float64): vectorized blocks, compensated across blocks


@_strict
def _split(e: float, c: float) -> Any:  # pragma: no cover - jitted
    """``e == hi + lo`` with ``hi`` on the grid of ``ulp(c)``: ``(e + c) - c`` rounds ``e`` to it."""
    hi = (e + c) - c
    return hi, e - hi


@numba.njit(fastmath={"reassoc"}, cache=True, nogil=True)
def _block_split_sum(buf: Any, lo: int, hi: int, c: float) -> Any:  # pragma: no cover - jitted
    # Reassociation (the one fast-math flag in softgrad) lets LLVM keep partial sums in vector
    # registers. It cannot change the first sum: every ``hi`` and every partial sum of them is a
    # multiple of ulp(c) below c / 3, so all those additions are exact in any order. The
    # second one adds numbers below ulp(c) / 2 over a short block. The split itself is strict.
    sh = 0.0
    sl = 0.0
    for j in range(lo, hi):
        a, b = _split(buf[j], c)
        sh += a
        sl += b
    return sh, sl


@_strict
def split_constant(n: int) -> float:  # pragma: no cover - jitted
    """``1.5 * 2**p`` with ``2**p >= 2 * (n + 1)``: a grid fine enough for sums of n numbers <= 1."""
    p = 1
    while 2.0**p < 2.0 * (n + 1):
        p += 1
    return 1.5 * 2.0**p


@_strict
def esum(buf: Any, lo: int, hi: int, c: float, acc: Any) -> Any:  # pragma: no cover - jitted
    """Add ``sum(buf[lo:hi])`` (numbers in [0, 1]) to ``acc = (H, L, comp)``.

    ``H`` is the exact sum of the leading parts, ``L + comp`` the compensated sum of the rest:
    the total ``H + L + comp`` is accurate to about one rounding whatever ``n``, and
    ``(H - 1) + (L + comp)`` gives the "rest" of a normalizer exactly enough for log1p.
    """
    sh, sl, comp = acc
    for b in range(lo, hi, _BLOCK):
        h, low = _block_split_sum(buf, b, min(b + _BLOCK, hi), c)
        sh += h
        sl, comp = _two_sum(sl, comp, low)
    return sh, sl, comp


@numba.njit(fastmath={"reassoc"}, cache=True, nogil=True)
def _block_dot(a: Any, b: Any, lo: int, hi: int) -> float:  # pragma: no cover - jitted
    acc = 0.0
    for j in range(lo, hi):
        acc += np.float64(a[j]) * np.float64(b[j])
    return acc


@numba.njit(fastmath={"reassoc"}, cache=True, nogil=True)
def _block_sum_where(g: Any, logp: Any, lo: int, hi: int) -> float:  # pragma: no cover - jitted
    acc = 0.0
    for j in range(lo, hi):
        acc += np.float64(g[j]) if logp[j] != -np.inf else 0.0  # NaN stays in
    return acc


@_strict
def _two_sum(s: float, c: float, t: float) -> Any:  # pragma: no cover - jitted
    """Neumaier: add ``t`` to the compensated sum ``(s, c)``."""
    u = s + t
    if abs(s) >= abs(t):
        c += (s - u) + t
    else:
        c += (t - u) + s
    return u, c


# ---------------------------------------------------------------------------------------------
# One row


@_strict
def _stream(out: Any, olo: int, buf: Any, blo: int, n: int, nt: bool) -> None:  # pragma: no cover
    """``out[olo:olo+n] = buf[blo:blo+n]``; non-temporal stores for the 64-byte-aligned middle."""
    if not nt:
        for j in range(n):
            out[olo + j] = buf[blo + j]
        return
    lanes = 64 // out.itemsize
    addr = out.ctypes.data + olo * out.itemsize
    head = min(((64 - (addr & 63)) & 63) // out.itemsize, n)
    for j in range(head):
        out[olo + j] = buf[blo + j]
    j = head
    while j + lanes <= n:
        nt_line(out, olo + j, buf, blo + j)
        j += lanes
    for k in range(j, n):
        out[olo + k] = buf[blo + k]


@_strict
def _special_row(x: Any, out: Any, olo: int, n: int, kind: int, op: int) -> float:  # pragma: no cover
    """A row holding NaN (kind 0), +inf (kind 1) or only -inf (kind 2), as the reference does.

    op 0 softmax, 1 log_softmax (both write ``out[olo:olo+n]``), 2 logsumexp (returned).
    """
    if kind == 0:
        if op < 2:
            for j in range(n):
                out[olo + j] = np.nan
        return np.nan
    if kind == 2:
        if op < 2:
            fill = 0.0 if op == 0 else -np.inf
            for j in range(n):
                out[olo + j] = fill
        return -np.inf
    if op < 2:
        k = 0
        for j in range(n):
            k += x[j] == np.inf
        on = 1.0 / k if op == 0 else -np.log(np.float64(k))
        off = 0.0 if op == 0 else -np.inf
        for j in range(n):
            out[olo + j] = on if x[j] == np.inf else off
    return np.inf


@_strict
def _classify(x: Any, t: float) -> Any:  # pragma: no cover - jitted
    """``(m, kind, fast)``: kind -1 regular, 0 NaN, 1 +inf, 2 all -inf; ``fast``: spread < 700."""
    m, least, nan = row_stats(x, 0, x.shape[0])
    if nan:
        return m, 0, False
    if m == np.inf:
        return m, 1, False
    if m == -np.inf:
        return m, 2, False
    return m, -1, (np.float64(least) - np.float64(m)) >= -700.0


@_strict
def _normalizer(x: Any, work: Any, m: Any, t: float, fast: bool) -> float:  # pragma: no cover
    """``log(sum(exp((x - m) / t)))`` of a regular row via log1p (``work`` as scratch)."""
    n = x.shape[0]
    cap = work.shape[0]
    c = split_constant(n)
    acc = (0.0, 0.0, 0.0)
    for lo in range(0, n, cap):
        hi = min(lo + cap, n)
        exp_sweep(x, lo, hi, work, m, t, fast)
        acc = esum(work, 0, hi - lo, c, acc)
    sh, sl, comp = acc
    return np.log1p((sh - 1.0) + (sl + comp))  # sh - 1 is exact: the maxima count 1 each


@_strict
def _softmax_row(x: Any, out: Any, olo: int, work: Any, stage: Any, soff: int, t: float, nt: bool) -> bool:
    """softmax of the row ``x`` into ``stage[soff:soff+n]`` (returns False); a row longer than
    ``work`` goes chunk by chunk straight to ``out[olo:olo+n]`` (returns True)."""  # pragma: no cover
    n = x.shape[0]
    cap = work.shape[0]
    direct = n > cap
    m, kind, fast = _classify(x, t)
    if kind >= 0:
        if direct:
            _special_row(x, out, olo, n, kind, 0)
        else:
            _special_row(x, stage, soff, n, kind, 0)
        return direct
    c = split_constant(n)
    if not direct:
        exp_sweep(x, 0, n, work, m, t, fast)
        sh, sl, comp = esum(work, 0, n, c, (0.0, 0.0, 0.0))
        scale_sweep(work, n, stage, soff, sh + (sl + comp))
        return False
    acc = (0.0, 0.0, 0.0)
    for lo in range(0, n, cap):
        hi = min(lo + cap, n)
        exp_sweep(x, lo, hi, work, m, t, fast)
        acc = esum(work, 0, hi - lo, c, acc)
    total = acc[0] + (acc[1] + acc[2])
    for lo in range(0, n, cap):  # exp again rather than a second pass over memory
        hi = min(lo + cap, n)
        exp_sweep(x, lo, hi, work, m, t, fast)
        scale_sweep(work, hi - lo, stage, 0, total)
        _stream(out, olo + lo, stage, 0, hi - lo, nt)
    return True


@_strict
def _log_softmax_row(
    x: Any, out: Any, olo: int, work: Any, stage: Any, soff: int, t: float, nt: bool
) -> bool:  # pragma: no cover - jitted
    """log_softmax of the row ``x``; same protocol as :func:`_softmax_row`."""
    n = x.shape[0]
    cap = work.shape[0]
    direct = n > cap
    m, kind, fast = _classify(x, t)
    if kind >= 0:
        if direct:
            _special_row(x, out, olo, n, kind, 1)
        else:
            _special_row(x, stage, soff, n, kind, 1)
        return direct
    shift = _normalizer(x, work, m, t, fast)
    if not direct:
        logp_sweep(x, 0, n, stage, soff, m, t, shift)
        return False
    for c in range(0, n, cap):
        h = min(c + cap, n)
        logp_sweep(x, c, h, stage, 0, m, t, shift)
        _stream(out, olo + c, stage, 0, h - c, nt)
    return True


@_strict
def _logsumexp_row(x: Any, work: Any) -> float:  # pragma: no cover - jitted
    m, kind, fast = _classify(x, 1.0)
    if kind >= 0:
        return _special_row(x, work, 0, 0, kind, 2)
    return np.float64(m) + _normalizer(x, work, m, 1.0, fast)


# ---------------------------------------------------------------------------------------------
# 2-D drivers: rows of a C-contiguous array, parallel over groups of rows


@_strict
def _softmax_group(
    x: Any, flat: Any, work: Any, stage: Any, g: int, per: int, t: float, log: bool, nt: bool
) -> None:  # pragma: no cover - jitted
    """Rows ``[g*per, (g+1)*per)``: results gathered in ``stage``, then streamed out at once."""
    rows, n = x.shape
    r0 = g * per
    r1 = min(r0 + per, rows)
    written = False
    for r in range(r0, r1):
        soff = (r - r0) * n
        if log:
            written = _log_softmax_row(x[r], flat, r * n, work, stage, soff, t, nt)
        else:
            written = _softmax_row(x[r], flat, r * n, work, stage, soff, t, nt)
    if not written:
        _stream(flat, r0 * n, stage, 0, (r1 - r0) * n, nt)
    if nt:
        sfence()


@numba.njit(parallel=True, cache=True, nogil=True)
def _softmax_2d(
    x: Any, out: Any, t: float, log: bool, nt: bool, work: Any, stage: Any, per: int
) -> None:  # pragma: no cover - jitted
    rows = x.shape[0]
    ngroups = (rows + per - 1) // per
    flat = out.reshape(-1)
    for g in prange(ngroups):
        tid = numba.get_thread_id()
        _softmax_group(x, flat, work[tid], stage[tid], g, per, t, log, nt)


@numba.njit(parallel=True, cache=True, nogil=True)
def _logsumexp_2d(x: Any, out: Any, work: Any) -> None:  # pragma: no cover - jitted
    for r in prange(x.shape[0]):
        out[r] = _logsumexp_row(x[r], work[numba.get_thread_id()])


# ---------------------------------------------------------------------------------------------
# VJPs


def vjp_sweep(s: Any, g: Any, out: Any, n: Any, dot: Any, t: Any) -> Any:  # pragma: no cover
    """``out[j] = s[j] * (g[j] - dot) / t`` in the compute precision."""
    raise NotImplementedError


def _vjp_sweep32(s: Any, g: Any, out: Any, n: Any, dot: Any, t: Any) -> Any:
    inv = 1.0 / t
    for j in range(n):
        out[j] = np.float32(np.float64(s[j]) * (np.float64(g[j]) - dot) * inv)


def _vjp_sweep64(s: Any, g: Any, out: Any, n: Any, dot: Any, t: Any) -> Any:
    if t == 1.0:
        for j in range(n):
            out[j] = s[j] * (g[j] - dot)
    else:
        for j in range(n):
            out[j] = s[j] * (g[j] - dot) / t


@overload(vjp_sweep, jit_options={"fastmath": False})
def _vjp_sweep_ol(s: Any, g: Any, out: Any, n: Any, dot: Any, t: Any) -> Any:
    if s.dtype == types.float32:
        return _vjp_sweep32
    if s.dtype == types.float64:
        return _vjp_sweep64
    return None


@_strict
def _dot64(a: Any, b: Any, n: int) -> float:  # pragma: no cover - jitted
    s = 0.0
    c = 0.0
    for k in range(0, n, _BLOCK):
        s, c = _two_sum(s, c, _block_dot(a, b, k, min(k + _BLOCK, n)))
    return s + c


@numba.njit(parallel=True, cache=True, nogil=True)
def _softmax_vjp_2d(s: Any, g: Any, out: Any, t: float) -> None:  # pragma: no cover - jitted
    rows, n = s.shape
    for r in prange(rows):
        vjp_sweep(s[r], g[r], out[r], n, _dot64(s[r], g[r], n), t)


def lvjp_sweep(logp: Any, g: Any, out: Any, n: Any, total: Any, t: Any) -> Any:  # pragma: no cover
    """``out = where(logp != -inf, g - exp(logp) * total, 0) / t`` (exp in float64)."""
    raise NotImplementedError


def _lvjp_sweep32(logp: Any, g: Any, out: Any, n: Any, total: Any, t: Any) -> Any:
    inv = 1.0 / t
    for j in range(n):
        lp = np.float64(logp[j])
        v = (np.float64(g[j]) - exp_full(lp) * total) * inv
        out[j] = np.float32(v) if lp != -np.inf else np.float32(0.0)


def _lvjp_sweep64(logp: Any, g: Any, out: Any, n: Any, total: Any, t: Any) -> Any:
    if t == 1.0:
        for j in range(n):
            lp = logp[j]
            v = g[j] - exp_full(lp) * total
            out[j] = v if lp != -np.inf else 0.0
    else:
        for j in range(n):
            lp = logp[j]
            v = (g[j] - exp_full(lp) * total) / t
            out[j] = v if lp != -np.inf else 0.0


@overload(lvjp_sweep, jit_options={"fastmath": False})
def _lvjp_sweep_ol(logp: Any, g: Any, out: Any, n: Any, total: Any, t: Any) -> Any:
    if logp.dtype == types.float32:
        return _lvjp_sweep32
    if logp.dtype == types.float64:
        return _lvjp_sweep64
    return None


@_strict
def _support_sum(g: Any, logp: Any, n: int) -> float:  # pragma: no cover - jitted
    s = 0.0
    c = 0.0
    for k in range(0, n, _BLOCK):
        s, c = _two_sum(s, c, _block_sum_where(g, logp, k, min(k + _BLOCK, n)))
    return s + c


@numba.njit(parallel=True, cache=True, nogil=True)
def _log_softmax_vjp_2d(logp: Any, g: Any, out: Any, t: float) -> None:  # pragma: no cover - jitted
    rows, n = logp.shape
    for r in prange(rows):
        lvjp_sweep(logp[r], g[r], out[r], n, _support_sum(g[r], logp[r], n), t)


# ---------------------------------------------------------------------------------------------
# Entry points used by _dispatch: C-contiguous 2-D input of one float dtype, out preallocated

_NT_MIN_BYTES = 1 << 22  # stream outputs past the caches from this size on
_local = threading.local()


def _scratch(name: str, rows: int, cols: int, dtype: Any) -> np.ndarray:
    """A per-Python-thread scratch array of at least ``(rows, cols)``, reused across calls.

    Reusing it avoids the page faults of a fresh buffer on every call; one per Python thread
    because the kernels release the GIL.
    """
    key = (name, np.dtype(dtype).str)
    buf = getattr(_local, "bufs", {}).get(key)
    if buf is None or buf.shape[0] < rows or buf.shape[1] < cols:
        shape = (max(rows, 0 if buf is None else buf.shape[0]), max(cols, 0 if buf is None else buf.shape[1]))
        buf = np.empty(shape, dtype)
        if not hasattr(_local, "bufs"):
            _local.bufs = {}
        _local.bufs[key] = buf
    return buf[:rows, :cols]


def _layout(rows: int, n: int, nthreads: int) -> tuple[int, int, int]:
    """``(rows per group, work length, stage length)`` for rows of length ``n``."""
    if n >= _SMALL_GROUP:
        per = 1
    else:
        per = max(1, min(rows, _SMALL_GROUP // n))
        per = max(1, min(per, -(-rows // (2 * nthreads))))  # at least two groups per thread
    work = min(n, GROUP)
    return per, work, max(per * n, work) if n <= GROUP else work


def softmax_2d(x: np.ndarray, out: np.ndarray, t: float, log: bool) -> None:
    """softmax (``log`` False) or log_softmax of every row of ``x`` into ``out``."""
    rows, n = x.shape
    nthr = numba.get_num_threads()
    per, wl, sl = _layout(rows, n, nthr)
    work = _scratch("work", nthr, wl, np.float64)
    stage = _scratch("stage", nthr, sl, x.dtype)
    _softmax_2d(x, out, float(t), bool(log), out.nbytes >= _NT_MIN_BYTES, work, stage, per)


def logsumexp_2d(x: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = logsumexp(x[r])`` in float64 (``out``: float64, one entry per row)."""
    nthr = numba.get_num_threads()
    work = _scratch("work", nthr, min(x.shape[1], GROUP), np.float64)
    _logsumexp_2d(x, out, work)


def softmax_vjp_2d(s: np.ndarray, g: np.ndarray, out: np.ndarray, t: float) -> None:
    _softmax_vjp_2d(s, g, out, float(t))


def log_softmax_vjp_2d(logp: np.ndarray, g: np.ndarray, out: np.ndarray, t: float) -> None:
    _log_softmax_vjp_2d(logp, g, out, float(t))
