"""Fused Numba CPU kernels for the softmax family (float32 and float64, rows along the last axis).

The reference code in :mod:`.softmax` and :mod:`.derivatives` is the specification; these
kernels compute the same thing in as few sweeps over memory as they can. :mod:`._dispatch`
validates the arguments, lays the data out as C-contiguous ``(rows, n)`` and calls the entry
points at the bottom of this module.

A row of softmax (``x`` of length ``n``; ``work`` and ``stage`` are per-thread scratch rows):

1. **Stats**, the one read of ``x`` from memory: the maximum ``m``, the minimum, and whether the
   row holds a NaN, by integer reductions over the bits (an order-preserving map of floats to
   integers), which LLVM vectorizes without any fast-math flag. Rows holding NaN or ``±inf``
   go to a scalar routine with the reference semantics (:func:`_special_row`).
2. **Exp** (``x`` now comes from L1/L2): ``e = exp((x - m) / T)`` into ``work`` (float64).
   float32 input computes in float64 like the reference: ``x - m`` is exact there and
   :func:`exp_lowp` has a relative error below 2**-33, so the float32 result is rounded once
   from a far more accurate value. float64 input takes ``x - m`` as an exact pair ``s + err``
   (TwoSum) and folds ``err`` into the reduced argument of :func:`exp_fast` (rows whose spread
   is below 700, every result normal) or :func:`exp_core` (clamped: ``-inf`` entries,
   subnormal results); with a temperature the division keeps its exact remainder, as in the
   reference.
3. **Sum**, fused with the exp sweep (:func:`exp_sum`): float64 splits every ``e`` in [0, 1] as
   ``hi + lo`` with ``hi`` on a grid fine enough that all sums of ``hi`` are exact in any
   order, sums the ``lo`` in short blocks and compensates across blocks: the total is accurate
   to about one rounding, and ``(H - 1) + L`` is the "rest" of the normalizer that log1p needs
   (the reference's split into ties and rest, without counting ties). float32 sums plainly in
   float64 (error below ``n 2**-53``, far below float32's) and re-sums the rest without the
   maxima when one entry dominates (:func:`_total_rest`).
4. **Store**: ``e / total`` rounded once, gathered in ``stage`` and written out with
   non-temporal stores when the output is large (no read-for-ownership of the destination:
   that is what lets a fused kernel approach ``np.copyto`` speed).

Short rows are processed in groups, so that one stage and one streamed store cover many rows.
Every hot loop runs over ``range(n)`` on sliced arrays: an index that Numba cannot prove
non-negative costs a wraparound check per access, which turns vector loads into gathers.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ._fastexp import (
    exp_core,
    exp_fast,
    exp_full,
    exp_lowp,
    f2i,
    fma,
    i2f,
    nt_affine_line,
    nt_line,
    nt_logp_line,
    nt_scale_line,
    nt_vjp_line,
    prefetch,
    sfence,
    wide,
)

__all__ = [
    "GROUP",
    "cross_entropy_2d",
    "log_softmax_vjp_2d",
    "logsumexp_2d",
    "softmax_2d",
    "softmax_vjp_2d",
]

# Elements of ``work`` per thread: a row longer than this is processed chunk by chunk
# (recomputing exp in the store sweep instead of reading a spilled buffer).
GROUP = 1 << 20
_SMALL_GROUP = 1 << 14  # short rows are grouped up to this many elements (stage stays in L2)
_CHUNK = 2048  # stage of a long row: scaled results pass through it on their way out (L1)
# Streamed rows at least this long are written row by row (full 64-byte lines computed in
# registers, plain stores only for the partial lines where rows meet) instead of gathered first.
_LINE_ROWS = 256
_BLOCK = 256  # summation block for the small parts (reassociated inside, compensated across)

# The row-level functions never allocate (scratch comes from the caller), so they are compiled
# without Numba's reference counting (``_nrt=False``): every array slice would otherwise cost an
# atomic increment and decrement, which dominated rows of ten entries.
_NO_NRT: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False}
_strict = numba.njit(**_NO_NRT)
_reassoc = numba.njit(fastmath={"reassoc"}, **_NO_NRT)


# ---------------------------------------------------------------------------------------------
# dtype-generic building blocks (an overload picks the float32 or the float64 body)


def _by_dtype(dtype: Any, f32: Any, f64: Any) -> Any:
    """The float32 or float64 body of an overload, by the dtype of the array it dispatches on."""
    return {types.float32: f32, types.float64: f64}.get(dtype)


def row_stats(x: Any) -> Any:  # pragma: no cover - jitted only
    """``(max, min, has_nan)`` of the row ``x``."""
    raise NotImplementedError


def _stats32(x: Any) -> Any:
    wide()
    mx = np.int32(-2147483648)
    mn = np.int32(2147483647)
    for j in range(x.shape[0]):
        b = f2i(x[j])
        key = np.int32(b ^ ((b >> 31) & 0x7FFFFFFF))  # float order == integer order
        mx = max(mx, key)
        mn = min(mn, key)
    m = i2f(np.int32(mx ^ ((mx >> 31) & 0x7FFFFFFF)))
    least = i2f(np.int32(mn ^ ((mn >> 31) & 0x7FFFFFFF)))
    # NaNs sort beyond the infinities: +NaN keys above +inf's, -NaN keys below -inf's.
    return m, least, (mx > 0x7F800000) or (mn < -0x7F800001)


def _stats64(x: Any) -> Any:
    wide()
    mask = np.int64(0x7FFFFFFFFFFFFFFF)
    mx = np.int64(-0x7FFFFFFFFFFFFFFF - 1)
    mn = np.int64(0x7FFFFFFFFFFFFFFF)
    for j in range(x.shape[0]):
        b = f2i(x[j])
        key = b ^ ((b >> 63) & mask)
        mx = max(mx, key)
        mn = min(mn, key)
    m = i2f(mx ^ ((mx >> 63) & mask))
    least = i2f(mn ^ ((mn >> 63) & mask))
    return m, least, (mx > np.int64(0x7FF0000000000000)) or (mn < np.int64(-0x7FF0000000000001))


@overload(row_stats, jit_options={"fastmath": False})
def _row_stats_ol(x: Any) -> Any:
    return _by_dtype(x.dtype, _stats32, _stats64)


@_strict
def two_diff(a: Any, b: Any) -> Any:  # pragma: no cover - jitted
    """``a - b == s + err`` exactly (Knuth's TwoSum), for finite ``a - b``."""
    wide()
    s = a - b
    bb = s - a
    err = (a - (s - bb)) + (-b - bb)
    return s, err


@_strict
def _tempered64(v: Any, m: Any, t: float, invt: float) -> Any:  # pragma: no cover - jitted
    """``(v - m) / t`` as ``q + lo`` in float64, as the reference computes it.

    The quotient is rounded once and the division's exact remainder (one FMA) goes into ``lo``.
    A difference beyond the largest float (``v - m`` overflows) is divided in halves; ``-inf``
    entries give ``(-inf, 0)``.
    """
    wide()
    s, err = two_diff(v, m)
    q = s / t
    lo = (fma(-q, t, s) + err) * invt
    beyond = s == -np.inf
    half = (v * 0.5 - m * 0.5) / (0.5 * t)
    keep = q > -np.inf and not beyond  # an overflowing quotient is -inf, without correction
    return (half if beyond else q), (lo if keep else 0.0)


@_strict
def _exp_clamped(s: float, err: float) -> float:  # pragma: no cover - jitted
    """``exp(s + err)`` in float64 for any ``s <= 0``: ``-inf`` and huge spreads included."""
    wide()
    ok = s > -1400.0
    return exp_core(s if ok else -1400.0, err if ok else 0.0)


@_strict
def _e32(v: Any, m64: float, t: float, invt: float) -> float:  # pragma: no cover - jitted
    """exp((v - m) / t) for a float32 entry, in float64 (x - m is exact there)."""
    wide()
    d = np.float64(v) - m64
    if t != 1.0:
        d = d * invt
    return exp_lowp(d if d > -200.0 else -200.0)


@_strict
def _e64(v: Any, m: Any, t: float, invt: float, fast: bool) -> float:  # pragma: no cover - jitted
    """exp((v - m) / t) for a float64 entry, with the TwoSum (and division) remainders folded in."""
    wide()
    if t != 1.0:
        q, qlo = _tempered64(v, m, t, invt)
        return _exp_clamped(q, qlo)
    s, err = two_diff(v, m)
    return exp_fast(s, err) if fast else _exp_clamped(s, err)


def exp_block(x: Any, work: Any, m: Any, t: Any, fast: Any, c: Any) -> Any:  # pragma: no cover
    """``work[j] = exp((x[j] - m) / t)`` in float64, and the split sums ``(sum hi, sum lo)``.

    ``c == 0`` (float32 softmax only): a plain sum in the first, 0 in the second.
    The maxima get exactly 1 (``x - m == 0`` and the polynomial is exactly 1 at 0). ``x`` is
    one block (short: its ``lo`` parts are summed in any order); see :func:`esum`.
    """
    raise NotImplementedError


# The loops below carry the reassociation flag, which lets LLVM vectorize their two sums: every
# ``hi`` and every partial sum of them is a multiple of ulp(c) below c / 3, so those additions
# are exact in any order, and the ``lo`` parts of one block are tiny. All other arithmetic is in
# the strict helpers they call (fast-math flags belong to instructions, and survive inlining).


def _exp_block32(x: Any, work: Any, m: Any, t: Any, fast: Any, c: Any) -> Any:
    wide()
    m64 = np.float64(m)
    invt = 1.0 / t
    sh = 0.0
    sl = 0.0
    if c == 0.0 and t == 1.0 and fast:  # spread below 700: no clamp needed (no -inf)
        for j in range(x.shape[0]):
            e = exp_lowp(np.float64(x[j]) - m64)
            work[j] = e
            sh += e
    elif c == 0.0 and t == 1.0:  # a plain float64 sum: the float32 results cannot tell
        for j in range(x.shape[0]):
            e = _e32(x[j], m64, 1.0, 1.0)
            work[j] = e
            sh += e
    elif t == 1.0:
        for j in range(x.shape[0]):
            e = _e32(x[j], m64, 1.0, 1.0)
            work[j] = e
            a, b = _split(e, c)
            sh += a
            sl += b
    else:
        for j in range(x.shape[0]):
            e = _e32(x[j], m64, t, invt)
            work[j] = e
            a, b = _split(e, c)
            sh += a
            sl += b
    return sh, sl


def _exp_block64(x: Any, work: Any, m: Any, t: Any, fast: Any, c: Any) -> Any:
    wide()
    invt = 1.0 / t
    sh = 0.0
    sl = 0.0
    if t == 1.0 and fast:  # spread below 700: every exp is a normal number
        for j in range(x.shape[0]):
            e = _e64(x[j], m, 1.0, 1.0, True)
            work[j] = e
            a, b = _split(e, c)
            sh += a
            sl += b
    else:
        for j in range(x.shape[0]):
            e = _e64(x[j], m, t, invt, False)
            work[j] = e
            a, b = _split(e, c)
            sh += a
            sl += b
    return sh, sl


@overload(exp_block, jit_options={"fastmath": {"reassoc"}})
def _exp_block_ol(x: Any, work: Any, m: Any, t: Any, fast: Any, c: Any) -> Any:
    return _by_dtype(x.dtype, _exp_block32, _exp_block64)


@_strict
def exp_sum(
    x: Any, work: Any, m: Any, t: float, fast: bool, c: float, acc: Any, pf: Any
) -> Any:  # pragma: no cover - jitted
    """``work[:len(x)] = exp((x - m) / t)``; adds their sum to ``acc = (H, L, comp)``.

    ``H`` is the exact sum of the leading parts, ``L + comp`` the compensated sum of the rest
    (blocks of ``_BLOCK``): ``H + (L + comp)`` is the sum to about one rounding whatever the
    length, and ``(H - 1) + (L + comp)`` the "rest" of a normalizer, exact enough for log1p.

    ``pf`` (as long as ``x``, or empty): the row this thread reads next, fetched into the cache
    line by line while this one computes, so that its first sweep does not wait for memory.
    """
    wide()
    sh, sl, comp = acc
    n = x.shape[0]
    lanes = 64 // x.itemsize
    for b in range(0, n, _BLOCK):
        e = min(b + _BLOCK, n)
        h, low = exp_block(x[b:e], work[b:e], m, t, fast, c)
        sh += h
        sl, comp = _two_sum(sl, comp, low)
        if pf.shape[0] >= e:
            for k in range(b, e, lanes):
                prefetch(pf, k)
    return sh, sl, comp


def scale_sweep(work: Any, stage: Any, total: Any) -> Any:  # pragma: no cover - jitted only
    """``stage[j] = work[j] / total`` rounded once to ``stage``'s dtype."""
    raise NotImplementedError


def _scale_sweep32(work: Any, stage: Any, total: Any) -> Any:
    wide()
    inv = 1.0 / total  # float64: the product is rounded to float32 once
    for j in range(work.shape[0]):
        stage[j] = np.float32(work[j] * inv)


def _scale_sweep64(work: Any, stage: Any, total: Any) -> Any:
    # 1/total as hi + lo: one FMA per entry gives the quotient to about half an ULP.
    wide()
    hi = 1.0 / total
    lo = fma(-hi, total, 1.0) / total
    for j in range(work.shape[0]):
        b = work[j]
        stage[j] = fma(b, hi, b * lo)


@overload(scale_sweep, jit_options={"fastmath": False})
def _scale_sweep_ol(work: Any, stage: Any, total: Any) -> Any:
    return _by_dtype(stage.dtype, _scale_sweep32, _scale_sweep64)


def logp_sweep(x: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:  # pragma: no cover
    """``stage[j] = (x[j] - m) / t - shift`` rounded once to ``stage``'s dtype."""
    raise NotImplementedError


def _logp_sweep32(x: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    wide()
    m64 = np.float64(m)
    if t == 1.0:
        for j in range(x.shape[0]):
            stage[j] = np.float32((np.float64(x[j]) - m64) - shift)
    else:
        invt = 1.0 / t
        for j in range(x.shape[0]):
            stage[j] = np.float32((np.float64(x[j]) - m64) * invt - shift)


def _logp_sweep64(x: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    wide()
    if t == 1.0:
        for j in range(x.shape[0]):
            s, err = two_diff(x[j], m)
            stage[j] = (s - shift) + (err if s > -np.inf else 0.0)
    else:
        invt = 1.0 / t
        for j in range(x.shape[0]):
            q, qlo = _tempered64(x[j], m, t, invt)
            stage[j] = (q - shift) + qlo


@overload(logp_sweep, jit_options={"fastmath": False})
def _logp_sweep_ol(x: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    return _by_dtype(x.dtype, _logp_sweep32, _logp_sweep64)


# ---------------------------------------------------------------------------------------------
# Sums in float64


@_strict
def _two_sum(s: float, c: float, t: float) -> Any:  # pragma: no cover - jitted
    """Neumaier: add ``t`` to the compensated sum ``(s, c)``."""
    wide()
    u = s + t
    if abs(s) >= abs(t):
        c += (s - u) + t
    else:
        c += (t - u) + s
    return u, c


@_strict
def _split(e: float, c: float) -> Any:  # pragma: no cover - jitted
    """``e == hi + lo`` with ``hi`` on the grid of ``ulp(c)``: ``(e + c) - c`` rounds ``e`` to it."""
    wide()
    hi = (e + c) - c
    return hi, e - hi


@_strict
def split_constant(n: int) -> float:  # pragma: no cover - jitted
    """``1.5 * 2**p`` with ``2**p >= 2 * (n + 1)``: a grid for exact sums of n numbers <= 1."""
    wide()
    _, p = math.frexp(2.0 * (n + 1))  # 2 (n + 1) = f * 2**p, f in [0.5, 1)
    return math.ldexp(1.5, p)


@_reassoc
def _block_dot(a: Any, b: Any) -> float:  # pragma: no cover - jitted
    wide()
    acc = 0.0
    for j in range(a.shape[0]):
        acc += np.float64(a[j]) * np.float64(b[j])
    return acc


@_reassoc
def _block_support_sum(g: Any, logp: Any) -> float:  # pragma: no cover - jitted
    wide()
    acc = 0.0
    for j in range(g.shape[0]):
        acc += np.float64(g[j]) if logp[j] != -np.inf else 0.0  # NaN stays in, as in the reference
    return acc


@_strict
def _dot64(a: Any, b: Any) -> float:  # pragma: no cover - jitted
    wide()
    s = 0.0
    c = 0.0
    n = a.shape[0]
    for k in range(0, n, _BLOCK):
        h = min(k + _BLOCK, n)
        s, c = _two_sum(s, c, _block_dot(a[k:h], b[k:h]))
    return s + c


@_strict
def _support_sum(g: Any, logp: Any) -> float:  # pragma: no cover - jitted
    wide()
    s = 0.0
    c = 0.0
    n = g.shape[0]
    for k in range(0, n, _BLOCK):
        h = min(k + _BLOCK, n)
        s, c = _two_sum(s, c, _block_support_sum(g[k:h], logp[k:h]))
    return s + c


# ---------------------------------------------------------------------------------------------
# One row


@_strict
def _head(out: Any) -> int:  # pragma: no cover - jitted
    """Entries of ``out`` before its first 64-byte boundary (all of them if it has none)."""
    return min(((64 - (out.ctypes.data & 63)) & 63) // out.itemsize, out.shape[0])


@_strict
def _stream(out: Any, buf: Any, nt: bool) -> None:  # pragma: no cover - jitted
    """``out[:] = buf[:len(out)]``; non-temporal stores for the 64-byte-aligned middle.

    Non-temporal stores are weakly ordered: they must be globally visible before anyone reads
    ``out``. The serial drivers end with an ``sfence``; in the parallel ones every worker
    reports the end of its iterations with locked (atomic) instructions, which drain the
    write-combining buffers on x86 as a fence does, before the caller returns. No fence per
    row: waiting for the stores to drain after each row measured about 10 % slower.
    """
    wide()
    n = out.shape[0]
    if not nt:
        for j in range(n):
            out[j] = buf[j]
        return
    lanes = 64 // out.itemsize
    head = _head(out)
    for j in range(head):
        out[j] = buf[j]
    j = head
    while j + lanes <= n:
        nt_line(out, j, buf, j)
        j += lanes
    tail = out[j:]
    rest = buf[j:]
    for k in range(tail.shape[0]):
        tail[k] = rest[k]


@_strict
def _special_row(x: Any, out: Any, kind: int, op: int) -> float:  # pragma: no cover - jitted
    """A row holding NaN (kind 0), +inf (kind 1) or only -inf (kind 2), as the reference does.

    op 0: softmax, 1: log_softmax (both fill ``out``), 2: logsumexp (only returned).
    """
    wide()
    n = out.shape[0] if op < 2 else 0
    if kind == 0:
        for j in range(n):
            out[j] = np.nan
        return np.nan
    if kind == 2:
        fill = 0.0 if op == 0 else -np.inf
        for j in range(n):
            out[j] = fill
        return -np.inf
    k = 0
    for j in range(n):
        k += x[j] == np.inf
    if n:
        on = 1.0 / k if op == 0 else -np.log(np.float64(k))
        off = 0.0 if op == 0 else -np.inf
        for j in range(n):
            out[j] = on if x[j] == np.inf else off
    return np.inf


@_strict
def _classify(x: Any) -> Any:  # pragma: no cover - jitted
    """``(m, kind, fast)``: kind -1 regular, 0 NaN, 1 +inf, 2 all -inf; ``fast``: spread < 700."""
    wide()
    m, least, nan = row_stats(x)
    if nan:
        return m, 0, False
    if m == np.inf:
        return m, 1, False
    if m == -np.inf:
        return m, 2, False
    return m, -1, (np.float64(least) - np.float64(m)) >= -700.0


@_strict
def _normalizer(x: Any, work: Any, m: Any, t: float, fast: bool, pf: Any) -> float:  # pragma: no cover
    """``log(sum(exp((x - m) / t)))`` of a regular row, through log1p (``work`` as scratch)."""
    wide()
    n = x.shape[0]
    cap = work.shape[0]
    if n <= cap:
        return np.log1p(_total_rest(x, work, m, t, fast, pf)[1])
    c = split_constant(n)
    acc = (0.0, 0.0, 0.0)
    for lo in range(0, n, cap):
        hi = min(lo + cap, n)
        acc = exp_sum(x[lo:hi], work, m, t, fast, c, acc, pf[lo:hi] if pf.shape[0] else pf)
    sh, sl, comp = acc
    return np.log1p((sh - 1.0) + (sl + comp))  # sh - 1 is exact: each maximum counts 1


@_reassoc
def _rest_exact(work: Any) -> float:  # pragma: no cover - jitted
    """``sum(work) - 1`` without cancellation: the entries below 1, plus the maxima beyond one
    (an entry is exactly 1 only at a maximum, or so close to it that counting it there is
    exact too). Positive terms: the order of the sum does not matter."""
    wide()
    acc = 0.0
    ones = 0
    for j in range(work.shape[0]):
        e = work[j]
        one = e == 1.0
        acc += 0.0 if one else e
        ones += one
    return (ones - 1.0) + acc


@_strict
def _total_rest(x: Any, work: Any, m: Any, t: float, fast: bool, pf: Any) -> Any:  # pragma: no cover
    """``(total, rest)`` of a regular row that fits ``work``: ``total = sum(e)``, ``rest = total - 1``
    accurate to a few roundings relative to itself (log1p and the top-1 gradient need that).

    float64 sums exactly split (see :func:`exp_sum`). float32 sums plainly in float64, with an
    error below ``n 2**-53`` of the total, far below float32's; only when the rest is under
    1/16 of the total (one entry dominates) is it summed again from ``work`` without the 1.
    """
    wide()
    n = x.shape[0]
    if x.itemsize == 8:
        sh, sl, comp = exp_sum(x, work, m, t, fast, split_constant(n), (0.0, 0.0, 0.0), pf)
        return sh + (sl + comp), (sh - 1.0) + (sl + comp)  # sh - 1 is exact
    total = exp_sum(x, work, m, t, fast, 0.0, (0.0, 0.0, 0.0), pf)[0]
    rest = total - 1.0
    if rest < total * 0.0625:
        rest = _rest_exact(work[:n])
    return total, rest


@_strict
def _scale_out(work: Any, out: Any, total: float, nt: bool) -> None:  # pragma: no cover - jitted
    """``out = work / total``, rounded once (as :func:`scale_sweep`); with ``nt``, the aligned
    middle is scaled in registers and stored non-temporally, a 64-byte line at a time."""
    wide()
    n = out.shape[0]
    if not nt:
        scale_sweep(work[:n], out, total)
        return
    hi = 1.0 / total
    lo = fma(-hi, total, 1.0) / total
    lanes = 64 // out.itemsize
    j = _head(out)
    scale_sweep(work[:j], out[:j], total)
    while j + lanes <= n:
        nt_scale_line(out, j, work, j, hi, lo)
        j += lanes
    scale_sweep(work[j:n], out[j:], total)


@_strict
def _softmax_row(
    x: Any, out: Any, work: Any, stage: Any, t: float, nt: bool, direct: bool, pf: Any
) -> None:
    """softmax of the row ``x``: into ``stage[:n]``, or (``direct``) into ``out`` through
    ``stage`` in chunks. Rows longer than ``work`` are direct and computed chunk by chunk."""
    wide()
    n = x.shape[0]
    cap = work.shape[0]
    m, kind, fast = _classify(x)
    if kind >= 0:
        _special_row(x, out if direct else stage, kind, 0)
        return
    # float32 softmax sums plainly (c = 0): its relative error, n * 2**-53 at worst, is far
    # below float32's; float64 and the log1p of the normalizers need the exact split sum.
    c = split_constant(n) if x.itemsize == 8 else 0.0
    if n <= cap:
        sh, sl, comp = exp_sum(x, work, m, t, fast, c, (0.0, 0.0, 0.0), pf)
        total = sh + (sl + comp)
        if direct:
            _scale_out(work[:n], out, total, nt)
        else:
            scale_sweep(work[:n], stage[:n], total)
        return
    acc = (0.0, 0.0, 0.0)
    for lo in range(0, n, cap):
        acc = exp_sum(x[lo : min(lo + cap, n)], work, m, t, fast, c, acc, pf[:0])
    total = acc[0] + (acc[1] + acc[2])
    for lo in range(0, n, cap):  # exp again rather than a second pass over memory
        hi = min(lo + cap, n)
        exp_sum(x[lo:hi], work, m, t, fast, c, (0.0, 0.0, 0.0), pf[lo:hi] if pf.shape[0] else pf)
        _scale_out(work[: hi - lo], out[lo:hi], total, nt)


@_strict
def _log_softmax_row(
    x: Any, out: Any, work: Any, stage: Any, t: float, nt: bool, direct: bool, pf: Any
) -> None:
    """log_softmax of the row ``x``; same protocol as :func:`_softmax_row`."""  # pragma: no cover
    wide()
    n = x.shape[0]
    m, kind, fast = _classify(x)
    if kind >= 0:
        _special_row(x, out if direct else stage, kind, 1)
        return
    shift = _normalizer(x, work, m, t, fast, pf)
    if not direct:
        logp_sweep(x, stage[:n], m, t, shift)
        return
    if nt:
        logp_stream(x, out, stage, m, t, shift)
    else:
        logp_sweep(x, out, m, t, shift)


@_strict
def _logsumexp_row(x: Any, work: Any) -> float:  # pragma: no cover - jitted
    wide()
    m, kind, fast = _classify(x)
    if kind >= 0:
        return _special_row(x, work, kind, 2)
    return np.float64(m) + _normalizer(x, work, m, 1.0, fast, x[:0])


def logp_stream(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:  # pragma: no cover
    """``out[j] = (x[j] - m) / t - shift`` as :func:`logp_sweep`, stored non-temporally."""
    raise NotImplementedError


def _logp_stream32(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    # The aligned middle is computed in registers and streamed, a 64-byte line at a time.
    wide()
    n = x.shape[0]
    m64 = np.float64(m)
    invt = 1.0 / t  # exactly 1 when t == 1: the same roundings as logp_sweep
    j = _head(out)
    logp_sweep(x[:j], out[:j], m, t, shift)
    while j + 16 <= n:
        nt_logp_line(out, j, x, j, m64, invt, shift)
        j += 16
    logp_sweep(x[j:], out[j:], m, t, shift)


def _logp_stream64(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    wide()
    n = x.shape[0]
    step = stage.shape[0]
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        st = stage[: hi - lo]
        logp_sweep(x[lo:hi], st, m, t, shift)
        _stream(out[lo:hi], st, True)


@overload(logp_stream, jit_options={"fastmath": False})
def _logp_stream_ol(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    return _by_dtype(x.dtype, _logp_stream32, _logp_stream64)


# ---------------------------------------------------------------------------------------------
# 2-D drivers: rows of a C-contiguous array, parallel over groups of rows


@_strict
def _softmax_group(
    x: Any, out: Any, work: Any, stage: Any, r0: int, r1: int, t: float, log: bool, nt: bool
) -> None:  # pragma: no cover - jitted
    """Rows ``[r0, r1)``. One row (a long one): straight to ``out`` through ``stage`` in chunks.
    Several short rows: gathered in ``stage``, then streamed out at once."""
    wide()
    n = x.shape[1]
    direct = n > stage.shape[0] or n > work.shape[0] or (nt and n >= _LINE_ROWS)  # see _layout
    per = r1 - r0
    for r in range(r0, r1):
        st = stage if direct else stage[(r - r0) * n : (r - r0 + 1) * n]
        pf = x[r + per] if r + per < x.shape[0] else x[r, :0]  # the same row of the next group
        if log:
            _log_softmax_row(x[r], out[r], work, st, t, nt, direct, pf)
        else:
            _softmax_row(x[r], out[r], work, st, t, nt, direct, pf)
    if not direct:
        _stream(out[r0:r1].reshape(-1), stage, nt)


@numba.njit(parallel=True, cache=True, nogil=True)
def _softmax_2d(
    x: Any, out: Any, t: float, log: bool, nt: bool, work: Any, stage: Any, per: int
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    ngroups = (rows + per - 1) // per
    for g in prange(ngroups):
        wide()
        tid = numba.get_thread_id()
        r0 = g * per
        _softmax_group(x, out, work[tid], stage[tid], r0, min(r0 + per, rows), t, log, nt)


@_strict
def _softmax_2d_serial(
    x: Any, out: Any, t: float, log: bool, nt: bool, work: Any, stage: Any, per: int
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    for r0 in range(0, rows, per):
        _softmax_group(x, out, work[0], stage[0], r0, min(r0 + per, rows), t, log, nt)
    if nt:
        sfence()


@numba.njit(parallel=True, cache=True, nogil=True)
def _logsumexp_2d(x: Any, out: Any, work: Any) -> None:  # pragma: no cover - jitted
    wide()
    for r in prange(x.shape[0]):
        wide()
        out[r] = _logsumexp_row(x[r], work[numba.get_thread_id()])


@_strict
def _logsumexp_2d_serial(x: Any, out: Any, work: Any) -> None:  # pragma: no cover - jitted
    wide()
    for r in range(x.shape[0]):
        out[r] = _logsumexp_row(x[r], work[0])


# ---------------------------------------------------------------------------------------------
# VJPs


def vjp_sweep(s: Any, g: Any, out: Any, dot: Any, t: Any) -> Any:  # pragma: no cover
    """``out[j] = s[j] * (g[j] - dot) / t`` in the compute precision."""
    raise NotImplementedError


def _vjp_sweep32(s: Any, g: Any, out: Any, dot: Any, t: Any) -> Any:
    wide()
    inv = 1.0 / t
    for j in range(s.shape[0]):
        out[j] = np.float32(np.float64(s[j]) * (np.float64(g[j]) - dot) * inv)


def _vjp_sweep64(s: Any, g: Any, out: Any, dot: Any, t: Any) -> Any:
    wide()
    if t == 1.0:
        for j in range(s.shape[0]):
            out[j] = s[j] * (g[j] - dot)
    else:
        for j in range(s.shape[0]):
            out[j] = s[j] * (g[j] - dot) / t


@overload(vjp_sweep, jit_options={"fastmath": False})
def _vjp_sweep_ol(s: Any, g: Any, out: Any, dot: Any, t: Any) -> Any:
    return _by_dtype(s.dtype, _vjp_sweep32, _vjp_sweep64)


@_strict
def _vjp_row(s: Any, g: Any, out: Any, t: float, nt: bool) -> None:  # pragma: no cover - jitted
    """One row of softmax_vjp; with ``nt``, the aligned middle a streamed 64-byte line at a time
    (float64 with a temperature keeps the scalar loop: it divides by ``t``)."""
    wide()
    dot = _dot64(s, g)
    if not nt or (s.itemsize == 8 and t != 1.0):
        vjp_sweep(s, g, out, dot, t)
        return
    n = out.shape[0]
    lanes = 64 // out.itemsize
    inv = 1.0 / t
    j = _head(out)
    vjp_sweep(s[:j], g[:j], out[:j], dot, t)
    while j + lanes <= n:
        nt_vjp_line(out, j, s, j, g, dot, inv)
        j += lanes
    vjp_sweep(s[j:], g[j:], out[j:], dot, t)


@numba.njit(parallel=True, cache=True, nogil=True)
def _softmax_vjp_2d(s: Any, g: Any, out: Any, t: float, nt: bool) -> None:  # pragma: no cover - jitted
    wide()
    for r in prange(s.shape[0]):
        wide()
        _vjp_row(s[r], g[r], out[r], t, nt)


@_strict
def _softmax_vjp_2d_serial(s: Any, g: Any, out: Any, t: float, nt: bool) -> None:  # pragma: no cover
    wide()
    for r in range(s.shape[0]):
        _vjp_row(s[r], g[r], out[r], t, nt)
    if nt:
        sfence()


def lvjp_sweep(logp: Any, g: Any, out: Any, total: Any, t: Any) -> Any:  # pragma: no cover
    """``out = where(logp != -inf, g - exp(logp) * total, 0) / t`` (exp in float64)."""
    raise NotImplementedError


def _lvjp_sweep32(logp: Any, g: Any, out: Any, total: Any, t: Any) -> Any:
    wide()
    inv = 1.0 / t
    for j in range(logp.shape[0]):
        lp = np.float64(logp[j])
        v = (np.float64(g[j]) - exp_full(lp) * total) * inv
        out[j] = np.float32(v) if lp != -np.inf else np.float32(0.0)


def _lvjp_sweep64(logp: Any, g: Any, out: Any, total: Any, t: Any) -> Any:
    wide()
    if t == 1.0:
        for j in range(logp.shape[0]):
            lp = logp[j]
            v = g[j] - exp_full(lp) * total
            out[j] = v if lp != -np.inf else 0.0
    else:
        for j in range(logp.shape[0]):
            lp = logp[j]
            v = (g[j] - exp_full(lp) * total) / t
            out[j] = v if lp != -np.inf else 0.0


@overload(lvjp_sweep, jit_options={"fastmath": False})
def _lvjp_sweep_ol(logp: Any, g: Any, out: Any, total: Any, t: Any) -> Any:
    return _by_dtype(logp.dtype, _lvjp_sweep32, _lvjp_sweep64)


@numba.njit(parallel=True, cache=True, nogil=True)
def _log_softmax_vjp_2d(logp: Any, g: Any, out: Any, t: float) -> None:  # pragma: no cover
    wide()
    for r in prange(logp.shape[0]):
        wide()
        lvjp_sweep(logp[r], g[r], out[r], _support_sum(g[r], logp[r]), t)


@_strict
def _log_softmax_vjp_2d_serial(logp: Any, g: Any, out: Any, t: float) -> None:  # pragma: no cover
    wide()
    for r in range(logp.shape[0]):
        lvjp_sweep(logp[r], g[r], out[r], _support_sum(g[r], logp[r]), t)


# ---------------------------------------------------------------------------------------------
# Cross-entropy with class-index targets: per-row loss and gradient from one shift of the row
#
# With q_j = valid * ((1 - eps) w_y [j == y] + (eps / C) w_j) and a = sum_j q_j (the reference's
# ``_row_targets``), the row's loss is -sum_{q_j != 0} q_j log p_j and its gradient
# rs * (a p_j - q_j); at a unique maximum k the gradient is rs * (q_off - a * rest / total),
# q_off = sum_{j != k} q_j (``_block`` in losses/cross_entropy.py).


def logp_at(x: Any, j: Any, m: Any, shift: Any) -> Any:  # pragma: no cover - jitted only
    """``log p_j = (x[j] - m) - shift`` in float64, with the exact difference."""
    raise NotImplementedError


def _logp_at32(x: Any, j: Any, m: Any, shift: Any) -> Any:
    wide()
    return (np.float64(x[j]) - np.float64(m)) - shift


def _logp_at64(x: Any, j: Any, m: Any, shift: Any) -> Any:
    wide()
    s, err = two_diff(x[j], m)
    return (s - shift) + (err if s > -np.inf else 0.0)


@overload(logp_at, jit_options={"fastmath": False})
def _logp_at_ol(x: Any, j: Any, m: Any, shift: Any) -> Any:
    return _by_dtype(x.dtype, _logp_at32, _logp_at64)


@_strict
def _logp_weighted_term(x: Any, j: int, w: Any, has_w: bool, m: Any, shift: float) -> float:
    """``w_j * log p_j``, 0 where ``w_j == 0`` (no mass: ``0 * log 0 = 0``)."""  # pragma: no cover
    wide()
    wj = w[j] if has_w else 1.0
    return wj * logp_at(x, j, m, shift) if wj != 0.0 else 0.0


@_reassoc
def _logp_weighted_sum(x: Any, w: Any, has_w: bool, m: Any, shift: float) -> float:  # pragma: no cover
    # Terms of one sign (log p <= 0, w >= 0 in practice): the order of the sum hardly matters.
    wide()
    acc = 0.0
    for j in range(x.shape[0]):
        acc += _logp_weighted_term(x, j, w, has_w, m, shift)
    return acc


@_reassoc
def _sum_except(w: Any, k: int) -> float:  # pragma: no cover - jitted
    """``sum(w) - w[k]`` without the cancellation: the sum of the other entries."""
    wide()
    acc = 0.0
    for j in range(w.shape[0]):
        acc += w[j] if j != k else 0.0
    return acc


@_strict
def _top(x: Any, m: Any) -> Any:  # pragma: no cover - jitted
    """How many entries equal the maximum, and the last index holding it."""
    wide()
    ties = 0
    k = -1
    for j in range(x.shape[0]):
        hit = x[j] == m
        ties += hit
        k = max(k, j if hit else -1)
    return ties, k


def ce_grad_sweep(work: Any, stage: Any, w: Any, has_w: Any, pa: Any, qb: Any) -> Any:  # pragma: no cover
    """``stage[j] = pa * e_j - qb * w_j`` rounded once (the gradient away from y and the top)."""
    raise NotImplementedError


def _ce_grad_sweep(work: Any, stage: Any, w: Any, has_w: Any, pa: Any, qb: Any) -> Any:
    wide()
    if has_w:
        for j in range(work.shape[0]):
            stage[j] = pa * work[j] - qb * w[j]
    else:
        for j in range(work.shape[0]):
            stage[j] = pa * work[j] - qb


@overload(ce_grad_sweep, jit_options={"fastmath": False})
def _ce_grad_sweep_ol(work: Any, stage: Any, w: Any, has_w: Any, pa: Any, qb: Any) -> Any:
    if stage.dtype in (types.float32, types.float64):
        return _ce_grad_sweep
    return None


@_strict
def _ce_q(j: int, y: int, w: Any, has_w: bool, wy: float, eps: float, ceps: float) -> float:
    """The target weight ``q_j`` of a valid row."""  # pragma: no cover - jitted
    wide()
    wj = w[j] if has_w else 1.0
    q = ceps * wj
    if j == y:
        q += (1.0 - eps) * wy
    return q


@_strict
def _ce_special(
    x: Any, kind: int, y: int, w: Any, has_w: bool, sumw: float, eps: float, rs: float,
    stage: Any, want_grad: bool,
) -> float:  # pragma: no cover - jitted
    """Loss (before the sample weight) and gradient of a valid row holding NaN (kind 0), +inf
    (kind 1) or only -inf (kind 2), as the reference computes them."""
    wide()
    n = x.shape[0]
    ceps = eps / n
    wy = w[y] if has_w else 1.0
    a = (1.0 - eps) * wy + ceps * sumw
    if kind != 1:  # NaN row: NaN loss and gradient; empty row: log p = -inf, gradient 0
        lp = np.nan if kind == 0 else -np.inf
        loss = 0.0
        for j in range(n):
            q = _ce_q(j, y, w, has_w, wy, eps, ceps)
            if q != 0.0:
                loss -= q * lp
        if want_grad:
            for j in range(n):
                stage[j] = np.nan if kind == 0 else 0.0
        return loss
    k = 0
    top = -1
    for j in range(n):
        if x[j] == np.inf:
            k += 1
            top = j
    lk = np.log(np.float64(k))
    loss = 0.0
    for j in range(n):
        q = _ce_q(j, y, w, has_w, wy, eps, ceps)
        if q != 0.0:
            loss -= q * (-lk if x[j] == np.inf else -np.inf)
    if want_grad:
        for j in range(n):
            q = _ce_q(j, y, w, has_w, wy, eps, ceps)
            stage[j] = rs * ((a / k if x[j] == np.inf else 0.0) - q)
        if k == 1:  # the reference's top-1 form: the target mass off the top, summed directly
            q_off = 0.0
            comp = 0.0
            for j in range(n):
                if j != top:
                    q_off, comp = _two_sum(q_off, comp, _ce_q(j, y, w, has_w, wy, eps, ceps))
            stage[top] = rs * (q_off + comp)
    return loss


@_strict
def _ce_patched(
    work: Any, out: Any, lo: int, w: Any, pa: float, qb: float, y: int, gy: float, k: int, gk: float
) -> None:  # pragma: no cover - jitted
    """``out[j - lo] = pa * work[j - lo] - qb`` with plain stores, entries ``y`` and ``k``
    (offsets from ``lo``) replaced by ``gy`` and ``gk`` (no class weights)."""
    wide()
    ce_grad_sweep(work, out, w, False, pa, qb)
    n = out.shape[0]
    if lo <= y < lo + n:
        out[y - lo] = gy
    if lo <= k < lo + n:
        out[k - lo] = gk


@_strict
def _ce_out(
    work: Any, out: Any, stage: Any, w: Any, has_w: bool, pa: float, qb: float,
    y: int, gy: float, k: int, gk: float, nt: bool,
) -> None:  # pragma: no cover - jitted
    """A row's gradient straight into ``out``: through ``stage`` in chunks, or (``nt`` and no
    class weights) computed a 64-byte line at a time in registers and streamed, the lines
    holding ``y`` or ``k`` (patched afterwards) with plain stores."""
    wide()
    n = out.shape[0]
    if nt and not has_w:
        lanes = 64 // out.itemsize
        j = _head(out)
        _ce_patched(work[:j], out[:j], 0, w, pa, qb, y, gy, k, gk)
        while j + lanes <= n:
            if j <= y < j + lanes or j <= k < j + lanes:
                _ce_patched(work[j : j + lanes], out[j : j + lanes], j, w, pa, qb, y, gy, k, gk)
            else:
                nt_affine_line(out, j, work, j, pa, qb)
            j += lanes
        _ce_patched(work[j:n], out[j:], j, w, pa, qb, y, gy, k, gk)
        return
    step = stage.shape[0]
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        st = stage[: hi - lo]
        ce_grad_sweep(work[lo:hi], st, w[lo:hi] if has_w else w, has_w, pa, qb)
        if lo <= y < hi:
            st[y - lo] = gy
        if lo <= k < hi:
            st[k - lo] = gk
        _stream(out[lo:hi], st, nt)


@_strict
def _ce_row(
    x: Any, y: int, w: Any, has_w: bool, sumw: float, eps: float, rs: float,
    work: Any, stage: Any, out: Any, direct: bool, want_loss: bool, want_grad: bool, nt: bool, pf: Any,
) -> float:  # pragma: no cover - jitted
    """Loss (before the sample weight) of a valid row; its gradient into ``stage[:n]``, or
    (``direct``) into ``out`` through ``stage`` in chunks."""
    wide()
    n = x.shape[0]
    m, kind, fast = _classify(x)
    if kind >= 0:
        if not direct:
            return _ce_special(x, kind, y, w, has_w, sumw, eps, rs, stage, want_grad)
        return _ce_special(x, kind, y, w, has_w, sumw, eps, rs, out, want_grad)
    ceps = eps / n
    wy = w[y] if has_w else 1.0
    a = (1.0 - eps) * wy + ceps * sumw
    total, rest = _total_rest(x, work, m, 1.0, fast, pf)
    loss = 0.0
    if want_loss:
        shift = np.log1p(rest)
        if wy != 0.0 and eps != 1.0:
            loss = -(1.0 - eps) * wy * logp_at(x, y, m, shift)
        if eps != 0.0:
            loss -= ceps * _logp_weighted_sum(x, w, has_w, m, shift)
    if want_grad:
        gy = rs * (a * work[y] / total - _ce_q(y, y, w, has_w, wy, eps, ceps))
        # p_k - 1 from the mass off the top, not by cancellation, where it matters: p_k > 1/2
        # (rest < 1, which also makes the maximum unique; rest counts every extra tie as 1).
        # Below that, a p_k - q_k keeps its digits, and the extra pass over x is saved.
        ties, k = _top(x, m) if rest < 1.0 else (0, y)
        gk = 0.0
        if ties == 1:
            w_off = _sum_except(w, k) if has_w else n - 1.0
            q_off = ceps * w_off + ((1.0 - eps) * wy if k != y else 0.0)
            gk = rs * (q_off - a * (rest / total))
        else:
            k = y  # no top-1 entry: patch y twice
            gk = gy
        pa, qb = rs * a / total, rs * ceps
        if direct:
            _ce_out(work[:n], out, stage, w, has_w, pa, qb, y, gy, k, gk, nt)
        else:
            st = stage[:n]
            ce_grad_sweep(work[:n], st, w, has_w, pa, qb)
            st[y] = gy
            st[k] = gk
    return loss


@_strict
def _ce_group(
    x: Any, y: Any, w: Any, has_w: bool, sumw: float, eps: float, ignore: int,
    sw: Any, has_sw: bool, rs: Any, rs_mode: int, rs0: float,
    loss: Any, grad: Any, work: Any, stage: Any, r0: int, r1: int,
    want_loss: bool, want_grad: bool, nt: bool,
) -> None:  # pragma: no cover - jitted
    wide()
    n = x.shape[1]
    # Short rows stay gathered even when streamed: the two patched entries per row made writing
    # them row by row slower here (measured), unlike softmax.
    direct = n > stage.shape[0] or n > work.shape[0]  # see _layout
    for r in range(r0, r1):
        st = stage if direct else stage[(r - r0) * n : (r - r0 + 1) * n]
        yr = y[r]
        scale = rs[r] if rs_mode == 2 else (rs0 if rs_mode == 1 else 1.0)
        if yr == ignore:  # an ignored row: no loss, no gradient
            lr = 0.0
            if want_grad:
                target = grad[r] if direct else st
                for j in range(n):
                    target[j] = 0.0
        else:
            row_out = grad[r] if want_grad else grad[0]  # (grad is a 1 x 1 dummy without want_grad)
            pf = x[r + r1 - r0] if r + r1 - r0 < x.shape[0] else x[r, :0]
            lr = _ce_row(
                x[r], yr, w, has_w, sumw, eps, scale, work, st, row_out, direct, want_loss, want_grad, nt, pf
            )
        if want_loss:
            loss[r] = lr * sw[r] if has_sw else lr
    if want_grad and not direct:
        _stream(grad[r0:r1].reshape(-1), stage, nt)


@numba.njit(parallel=True, cache=True, nogil=True)
def _ce_2d(
    x: Any, y: Any, w: Any, has_w: bool, sumw: float, eps: float, ignore: int,
    sw: Any, has_sw: bool, rs: Any, rs_mode: int, rs0: float,
    loss: Any, grad: Any, work: Any, stage: Any, per: int,
    want_loss: bool, want_grad: bool, nt: bool,
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    ngroups = (rows + per - 1) // per
    for g in prange(ngroups):
        wide()
        tid = numba.get_thread_id()
        r0 = g * per
        _ce_group(
            x, y, w, has_w, sumw, eps, ignore, sw, has_sw, rs, rs_mode, rs0, loss, grad,
            work[tid], stage[tid], r0, min(r0 + per, rows), want_loss, want_grad, nt,
        )


@_strict
def _ce_2d_serial(
    x: Any, y: Any, w: Any, has_w: bool, sumw: float, eps: float, ignore: int,
    sw: Any, has_sw: bool, rs: Any, rs_mode: int, rs0: float,
    loss: Any, grad: Any, work: Any, stage: Any, per: int,
    want_loss: bool, want_grad: bool, nt: bool,
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    for r0 in range(0, rows, per):
        _ce_group(
            x, y, w, has_w, sumw, eps, ignore, sw, has_sw, rs, rs_mode, rs0, loss, grad,
            work[0], stage[0], r0, min(r0 + per, rows), want_loss, want_grad, nt,
        )
    if nt:
        sfence()


# ---------------------------------------------------------------------------------------------
# Entry points used by _dispatch: C-contiguous 2-D input of one float dtype, out preallocated

_NT_MIN_BYTES = 1 << 22  # stream outputs past the caches from this size on
# Below this many elements (about a millisecond of work) one thread does it all: waking the pool
# costs more than it saves, most of all on a machine whose cores are busy (a wake-up can then
# take a scheduler tick, milliseconds).
_PARALLEL_MIN = 1 << 20
_local = threading.local()


def _scratch(name: str, rows: int, cols: int, dtype: Any) -> np.ndarray:
    """A C-contiguous ``(rows, cols)`` scratch array, reused across calls (per Python thread).

    Reusing it avoids the page faults of a fresh buffer on every call; one per Python thread
    because the kernels release the GIL.
    """
    bufs = _local.__dict__.setdefault("bufs", {})
    key = (name, np.dtype(dtype).str)
    flat = bufs.get(key)
    if flat is None or flat.size < rows * cols:
        flat = np.empty(rows * cols, dtype)
        bufs[key] = flat
    return flat[: rows * cols].reshape(rows, cols)


def _streaming(out: np.ndarray, x: np.ndarray) -> bool:
    """Whether to write ``out`` with non-temporal stores: when it is large and a new array.

    Streaming stores skip the read-for-ownership of the destination, a third of the memory
    traffic of a large softmax. In place (``out is x``, as linear_cross_entropy overwrites
    its chunk's logits with their gradient) the lines are already in the cache, and the next
    step (a matrix product) wants them there.
    """
    return out.nbytes >= _NT_MIN_BYTES and out.ctypes.data != x.ctypes.data


def _dynamic(run: Any, *args: Any) -> None:
    """``run(*args)`` with prange iterations handed out one by one (not in equal blocks per
    thread up front): on a machine whose cores other processes use too, a thread that gets less
    CPU then takes fewer rows instead of holding up the others."""
    old = numba.set_parallel_chunksize(8)
    try:
        run(*args)
    finally:
        numba.set_parallel_chunksize(old)


def _layout(rows: int, n: int, nthreads: int) -> tuple[int, int, int]:
    """``(rows per group, work length, stage length)`` for rows of length ``n``.

    Short rows are grouped (at least two groups per thread) and their results gathered in a
    stage of ``per * n`` entries (streamed rows of ``_LINE_ROWS`` or more go straight to the
    output instead); long rows (``n >= _SMALL_GROUP``) go one by one, straight to the output
    (through a stage of ``_CHUNK`` entries that stays in L1 where a result needs one).
    """
    work = min(n, GROUP)
    if n >= _SMALL_GROUP or n > work:
        return 1, work, _CHUNK
    per = max(1, min(_SMALL_GROUP // n, -(-rows // (2 * nthreads))))
    return per, work, per * n


def softmax_2d(x: np.ndarray, out: np.ndarray, t: float, log: bool) -> None:
    """softmax (``log`` False) or log_softmax of every row of ``x`` into ``out``."""
    rows, n = x.shape
    nthr = numba.get_num_threads()
    if x.size < _PARALLEL_MIN:
        nthr = 1
    per, wl, sl = _layout(rows, n, nthr)
    work = _scratch("work", nthr, wl, np.float64)
    stage = _scratch("stage", nthr, sl, x.dtype)
    run = _softmax_2d if nthr > 1 else _softmax_2d_serial
    _dynamic(run, x, out, float(t), bool(log), _streaming(out, x), work, stage, per)


def logsumexp_2d(x: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = logsumexp(x[r])`` in float64 (``out``: float64, one entry per row)."""
    nthr = numba.get_num_threads() if x.size >= _PARALLEL_MIN else 1
    work = _scratch("work", nthr, min(x.shape[1], GROUP), np.float64)
    (_logsumexp_2d if nthr > 1 else _logsumexp_2d_serial)(x, out, work)


def softmax_vjp_2d(s: np.ndarray, g: np.ndarray, out: np.ndarray, t: float) -> None:
    """``out = s * (g - sum(g * s)) / t`` row by row."""
    run = _softmax_vjp_2d if s.size >= _PARALLEL_MIN else _softmax_vjp_2d_serial
    nt = out.nbytes >= _NT_MIN_BYTES and not (np.may_share_memory(out, s) or np.may_share_memory(out, g))
    run(s, g, out, float(t), nt)


def log_softmax_vjp_2d(logp: np.ndarray, g: np.ndarray, out: np.ndarray, t: float) -> None:
    """``out = where(logp != -inf, g - exp(logp) * sum(g over the support), 0) / t``."""
    run = _log_softmax_vjp_2d if logp.size >= _PARALLEL_MIN else _log_softmax_vjp_2d_serial
    run(logp, g, out, float(t))


def cross_entropy_2d(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    smoothing: float,
    sw: np.ndarray | None,
    row_scale: np.ndarray | float | None,
    loss: np.ndarray | None,
    grad: np.ndarray | None,
) -> None:
    """Per-row losses (times ``sw``) into ``loss`` and gradients (times ``row_scale``) into ``grad``.

    ``x`` (R, C) C-contiguous logits; ``y`` (R,) int64 class indices in [0, C) or equal to
    ``ignore_index``; ``weight`` (C,) float64 or None; ``sw`` (R,) float64 or None;
    ``row_scale`` (R,) float64, a float, or None; ``loss`` (R,) float64 or None; ``grad``
    (R, C) of ``x``'s dtype, C-contiguous (may be ``x`` itself), or None.
    """
    rows, n = x.shape
    nthr = numba.get_num_threads() if x.size >= _PARALLEL_MIN else 1
    per, wl, sl = _layout(rows, n, nthr)
    work = _scratch("work", nthr, wl, np.float64)
    stage = _scratch("stage", nthr, sl, x.dtype)
    has_w = weight is not None
    w = weight if weight is not None else np.ones(1)
    sumw = float(np.sum(weight)) if weight is not None else float(n)
    if isinstance(row_scale, np.ndarray) and row_scale.ndim == 1:
        rs, mode, rs0 = row_scale, 2, 1.0
    elif row_scale is None:
        rs, mode, rs0 = np.ones(1), 0, 1.0
    else:
        rs, mode, rs0 = np.ones(1), 1, float(row_scale)
    want_loss, want_grad = loss is not None, grad is not None
    run = _ce_2d if nthr > 1 else _ce_2d_serial
    _dynamic(
        run,
        x, y, w, has_w, sumw, float(smoothing), int(ignore_index),
        sw if sw is not None else np.ones(1), sw is not None, rs, mode, rs0,
        loss if loss is not None else np.empty(1), grad if grad is not None else np.empty((1, 1), x.dtype),
        work, stage, per, want_loss, want_grad, grad is not None and _streaming(grad, x),
    )
