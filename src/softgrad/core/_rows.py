"""The row machinery shared by the fused Numba kernels (float32 and float64, rows along the last axis).

The softmax family (:mod:`._kernels`) and cross-entropy (:mod:`softgrad.losses._ce_kernels`)
both work a row at a time with the pieces here: threads and per-thread scratch buffers
(:func:`scratch`, :func:`layout`, :func:`dynamic`), row classification (:func:`classify`),
the fused exp-and-sum sweep (:func:`exp_sum`, :func:`total_rest`) and streaming stores
(:func:`stream`, :func:`streaming`). Nothing here knows which function a row belongs to.

A row of softmax (``x`` of length ``n``; ``work`` and ``stage`` are per-thread scratch rows):

1. **Stats**, the one read of ``x`` from memory: the maximum ``m``, the minimum, and whether the
   row holds a NaN, by integer reductions over the bits (an order-preserving map of floats to
   integers), which LLVM vectorizes without any fast-math flag. Rows holding NaN or ``±inf``
   go to a scalar routine with the reference semantics (:func:`._kernels._special_row`).
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
   maxima when one entry dominates (:func:`total_rest`).
4. **Store**: ``e / total`` rounded once, gathered in ``stage`` and written out with
   non-temporal stores when the output is large (no read-for-ownership of the destination:
   that is what lets a fused kernel approach ``np.copyto`` speed).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import overload

from ._fastexp import exp_core, exp_fast, exp_lowp, f2i, fma, i2f, nt_line, prefetch, wide

__all__ = [
    "BLOCK",
    "GROUP",
    "NT_MIN_BYTES",
    "PARALLEL_MIN",
    "SMALL_GROUP",
    "by_dtype",
    "classify",
    "compensated_sum",
    "dynamic",
    "exp_sum",
    "layout",
    "line_head",
    "reassoc",
    "row_stats",
    "scratch",
    "split_constant",
    "stream",
    "streaming",
    "strict",
    "tempered64",
    "total_rest",
    "two_diff",
    "two_sum",
]



# Elements of ``work`` per thread: a row longer than this is processed chunk by chunk
# (recomputing exp in the store sweep instead of reading a spilled buffer).
GROUP = 1 << 20
SMALL_GROUP = 1 << 14  # short rows are grouped up to this many elements (stage stays in L2)
_CHUNK = 2048  # stage of a long row: scaled results pass through it on their way out (L1)
BLOCK = 256  # summation block for the small parts (reassociated inside, compensated across)

# The row-level functions never allocate (scratch comes from the caller), so they are compiled
# without Numba's reference counting (``_nrt=False``): every array slice would otherwise cost an
# atomic increment and decrement, which dominated rows of ten entries.
_NO_NRT: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False}
strict = numba.njit(**_NO_NRT)
reassoc = numba.njit(fastmath={"reassoc"}, **_NO_NRT)


# ---------------------------------------------------------------------------------------------
# dtype-generic building blocks (an overload picks the float32 or the float64 body)


def by_dtype(dtype: Any, f32: Any, f64: Any) -> Any:
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
    return by_dtype(x.dtype, _stats32, _stats64)


@strict
def two_diff(a: Any, b: Any) -> Any:  # pragma: no cover - jitted
    """``a - b == s + err`` exactly (Knuth's TwoSum), for finite ``a - b``."""
    wide()
    s = a - b
    bb = s - a
    err = (a - (s - bb)) + (-b - bb)
    return s, err


@strict
def tempered64(v: Any, m: Any, t: float, invt: float) -> Any:  # pragma: no cover - jitted
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


@strict
def _exp_clamped(s: float, err: float) -> float:  # pragma: no cover - jitted
    """``exp(s + err)`` in float64 for any ``s <= 0``: ``-inf`` and huge spreads included."""
    wide()
    ok = s > -1400.0
    return exp_core(s if ok else -1400.0, err if ok else 0.0)


@strict
def _e32(v: Any, m64: float, t: float, invt: float) -> float:  # pragma: no cover - jitted
    """exp((v - m) / t) for a float32 entry, in float64 (x - m is exact there)."""
    wide()
    d = np.float64(v) - m64
    if t != 1.0:
        d = d * invt
    return exp_lowp(d if d > -200.0 else -200.0)


@strict
def _e64(v: Any, m: Any, t: float, invt: float, fast: bool) -> float:  # pragma: no cover - jitted
    """exp((v - m) / t) for a float64 entry, with the TwoSum (and division) remainders folded in."""
    wide()
    if t != 1.0:
        q, qlo = tempered64(v, m, t, invt)
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
    return by_dtype(x.dtype, _exp_block32, _exp_block64)


@strict
def exp_sum(
    x: Any, work: Any, m: Any, t: float, fast: bool, c: float, acc: Any, pf: Any
) -> Any:  # pragma: no cover - jitted
    """``work[:len(x)] = exp((x - m) / t)``; adds their sum to ``acc = (H, L, comp)``.

    ``H`` is the exact sum of the leading parts, ``L + comp`` the compensated sum of the rest
    (blocks of ``BLOCK``): ``H + (L + comp)`` is the sum to about one rounding whatever the
    length, and ``(H - 1) + (L + comp)`` the "rest" of a normalizer, exact enough for log1p.

    ``pf`` (as long as ``x``, or empty): the row this thread reads next, fetched into the cache
    line by line while this one computes, so that its first sweep does not wait for memory.
    """
    wide()
    sh, sl, comp = acc
    n = x.shape[0]
    lanes = 64 // x.itemsize
    for b in range(0, n, BLOCK):
        e = min(b + BLOCK, n)
        h, low = exp_block(x[b:e], work[b:e], m, t, fast, c)
        sh += h
        sl, comp = two_sum(sl, comp, low)
        if pf.shape[0] >= e:
            for k in range(b, e, lanes):
                prefetch(pf, k)
    return sh, sl, comp



# ---------------------------------------------------------------------------------------------
# Sums in float64


@strict
def two_sum(s: float, c: float, t: float) -> Any:  # pragma: no cover - jitted
    """Neumaier: add ``t`` to the compensated sum ``(s, c)``."""
    wide()
    u = s + t
    if abs(s) >= abs(t):
        c += (s - u) + t
    else:
        c += (t - u) + s
    return u, c


_SUM_LANES = 8


@numba.njit(cache=True, nogil=True)  # (its lanes are arrays: NRT)
def compensated_sum(v: Any) -> float:  # pragma: no cover - jitted
    """``sum(v)``, compensated (Neumaier) in :data:`_SUM_LANES` interleaved lanes so that the
    loop vectorizes (one serial chain cost 0.12 ms for 65536 entries); a non-finite total is
    the plain sum's (no compensation of ``inf - inf``)."""
    wide()
    s = np.zeros(_SUM_LANES)
    c = np.zeros(_SUM_LANES)
    plain = np.zeros(_SUM_LANES)
    size = v.shape[0]
    body = size - size % _SUM_LANES
    for i in range(0, body, _SUM_LANES):
        for k in range(_SUM_LANES):
            t = v[i + k]
            a = s[k]
            u = a + t
            big = abs(a) >= abs(t)
            hi = a if big else t
            lo = t if big else a
            c[k] += (hi - u) + lo
            s[k] = u
            plain[k] += t
    total, comp, whole = 0.0, 0.0, 0.0
    for k in range(_SUM_LANES):
        total, comp = two_sum(total, comp, s[k])
        total, comp = two_sum(total, comp, c[k])
        whole += plain[k]
    for i in range(body, size):
        total, comp = two_sum(total, comp, v[i])
        whole += v[i]
    return total + comp if np.isfinite(whole) else whole


@strict
def _split(e: float, c: float) -> Any:  # pragma: no cover - jitted
    """``e == hi + lo`` with ``hi`` on the grid of ``ulp(c)``: ``(e + c) - c`` rounds ``e`` to it."""
    wide()
    hi = (e + c) - c
    return hi, e - hi


@strict
def split_constant(n: int) -> float:  # pragma: no cover - jitted
    """``1.5 * 2**p`` with ``2**p >= 2 * (n + 1)``: a grid for exact sums of n numbers <= 1."""
    wide()
    _, p = math.frexp(2.0 * (n + 1))  # 2 (n + 1) = f * 2**p, f in [0.5, 1)
    return math.ldexp(1.5, p)



# ---------------------------------------------------------------------------------------------
# One row


@strict
def line_head(out: Any) -> int:  # pragma: no cover - jitted
    """Entries of ``out`` before its first 64-byte boundary (all of them if it has none)."""
    return min(((64 - (out.ctypes.data & 63)) & 63) // out.itemsize, out.shape[0])


@strict
def stream(out: Any, buf: Any, nt: bool) -> None:  # pragma: no cover - jitted
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
    head = line_head(out)
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



@strict
def classify(x: Any) -> Any:  # pragma: no cover - jitted
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



@reassoc
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


@strict
def total_rest(x: Any, work: Any, m: Any, t: float, fast: bool, pf: Any) -> Any:  # pragma: no cover
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



# ---------------------------------------------------------------------------------------------
# What every entry point needs: threads, per-thread scratch, the layout of rows, streaming

NT_MIN_BYTES = 1 << 22  # stream outputs past the caches from this size on
# Below this many elements one thread does it all: waking the pool costs more than it saves,
# most of all on a machine whose cores are busy (a wake-up can then take a scheduler tick,
# milliseconds). Measured on an idle 2-core machine, two threads already halve softmax from 2^16
# entries (0.51 -> 0.23 ms for 10 classes), and cross-entropy value+gradient on 65536 x 10
# takes 2.2 ms instead of 4.8; 2^18 (about 0.6-1.3 ms of serial work) keeps a margin for the
# wake-up on a busy machine.
PARALLEL_MIN = 1 << 18
_local = threading.local()


def scratch(name: str, rows: int, cols: int, dtype: Any) -> np.ndarray:
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


def streaming(out: np.ndarray, x: np.ndarray) -> bool:
    """Whether to write ``out`` with non-temporal stores: when it is large and a new array.

    Streaming stores skip the read-for-ownership of the destination, a third of the memory
    traffic of a large softmax. In place (``out is x``, as linear_cross_entropy overwrites
    its chunk's logits with their gradient) the lines are already in the cache, and the next
    step (a matrix product) wants them there.
    """
    return out.nbytes >= NT_MIN_BYTES and out.ctypes.data != x.ctypes.data


def dynamic(run: Any, *args: Any) -> None:
    """``run(*args)`` with prange iterations handed out one by one (not in equal blocks per
    thread up front): on a machine whose cores other processes use too, a thread that gets less
    CPU then takes fewer rows instead of holding up the others."""
    old = numba.set_parallel_chunksize(8)
    try:
        run(*args)
    finally:
        numba.set_parallel_chunksize(old)


def layout(rows: int, n: int, nthreads: int) -> tuple[int, int, int]:
    """``(rows per group, work length, stage length)`` for rows of length ``n``.

    Short rows are grouped (at least two groups per thread) and their results gathered in a
    stage of ``per * n`` entries (streamed rows of ``_kernels._LINE_ROWS`` or more go straight to the
    output instead); long rows (``n >= SMALL_GROUP``) go one by one, straight to the output
    (through a stage of ``_CHUNK`` entries that stays in L1 where a result needs one).
    """
    work = min(n, GROUP)
    if n >= SMALL_GROUP or n > work:
        return 1, work, _CHUNK
    per = max(1, min(SMALL_GROUP // n, -(-rows // (2 * nthreads))))
    return per, work, per * n

