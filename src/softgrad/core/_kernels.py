"""Fused Numba CPU kernels for the softmax family (float32 and float64, rows along the last axis).

The reference code in :mod:`.softmax` and :mod:`.derivatives` is the specification; these
kernels compute the same thing in as few sweeps over memory as they can. The public functions
validate the arguments, :mod:`._dispatch` lays the data out as C-contiguous ``(rows, n)`` and
calls the entry points at the bottom of this module. How a row is read, exponentiated, summed
and stored is shared with the cross-entropy kernels and described in :mod:`._rows`.

Short rows are processed in groups, so that one stage and one streamed store cover many rows.
Every hot loop runs over ``range(n)`` on sliced arrays: an index that Numba cannot prove
non-negative costs a wraparound check per access, which turns vector loads into gathers.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange
from numba.extending import overload

from . import _rows, _short
from ._fastexp import (
    exp_full,
    fma,
    nt_logp_line,
    nt_scale_line,
    nt_vjp_line,
    sfence,
    wide,
)
from ._rows import (
    BLOCK,
    by_dtype,
    classify,
    exp_sum,
    line_head,
    reassoc,
    split_constant,
    stream,
    strict,
    tempered64,
    total_rest,
    two_diff,
    two_sum,
)
from ._short import special_row as _special_row

__all__ = [
    "log_softmax_vjp_2d",
    "logsumexp_2d",
    "softmax_2d",
    "softmax_vjp_2d",
]

# Streamed rows at least this long are written row by row (full 64-byte lines computed in
# registers, plain stores only for the partial lines where rows meet) instead of gathered first.
_LINE_ROWS = 256


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
    return by_dtype(stage.dtype, _scale_sweep32, _scale_sweep64)


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
            q, qlo = tempered64(x[j], m, t, invt)
            stage[j] = (q - shift) + qlo


@overload(logp_sweep, jit_options={"fastmath": False})
def _logp_sweep_ol(x: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    return by_dtype(x.dtype, _logp_sweep32, _logp_sweep64)



@reassoc
def _block_dot(a: Any, b: Any) -> float:  # pragma: no cover - jitted
    wide()
    acc = 0.0
    for j in range(a.shape[0]):
        acc += np.float64(a[j]) * np.float64(b[j])
    return acc


@reassoc
def _block_support_sum(g: Any, logp: Any) -> float:  # pragma: no cover - jitted
    wide()
    acc = 0.0
    for j in range(g.shape[0]):
        acc += np.float64(g[j]) if logp[j] != -np.inf else 0.0  # NaN stays in, as in the reference
    return acc


@strict
def _dot64(a: Any, b: Any) -> float:  # pragma: no cover - jitted
    wide()
    s = 0.0
    c = 0.0
    n = a.shape[0]
    for k in range(0, n, BLOCK):
        h = min(k + BLOCK, n)
        s, c = two_sum(s, c, _block_dot(a[k:h], b[k:h]))
    return s + c


@strict
def _support_sum(g: Any, logp: Any) -> float:  # pragma: no cover - jitted
    wide()
    s = 0.0
    c = 0.0
    n = g.shape[0]
    for k in range(0, n, BLOCK):
        h = min(k + BLOCK, n)
        s, c = two_sum(s, c, _block_support_sum(g[k:h], logp[k:h]))
    return s + c



@strict
def _log_normalizer(x: Any, work: Any, m: Any, t: float, fast: bool, pf: Any) -> float:  # pragma: no cover
    """``log(sum(exp((x - m) / t)))`` of a regular row, through log1p (``work`` as scratch)."""
    wide()
    n = x.shape[0]
    cap = work.shape[0]
    if n <= cap:
        return np.log1p(total_rest(x, work, m, t, fast, pf)[1])
    c = split_constant(n)
    acc = (0.0, 0.0, 0.0)
    for lo in range(0, n, cap):
        hi = min(lo + cap, n)
        acc = exp_sum(x[lo:hi], work, m, t, fast, c, acc, pf[lo:hi] if pf.shape[0] else pf)
    sh, sl, comp = acc
    return np.log1p((sh - 1.0) + (sl + comp))  # sh - 1 is exact: each maximum counts 1



@strict
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
    j = line_head(out)
    scale_sweep(work[:j], out[:j], total)
    while j + lanes <= n:
        nt_scale_line(out, j, work, j, hi, lo)
        j += lanes
    scale_sweep(work[j:n], out[j:], total)


@strict
def _softmax_row(
    x: Any, out: Any, work: Any, stage: Any, t: float, nt: bool, direct: bool, pf: Any
) -> None:
    """softmax of the row ``x``: into ``stage[:n]``, or (``direct``) into ``out`` through
    ``stage`` in chunks. Rows longer than ``work`` are direct and computed chunk by chunk."""
    wide()
    n = x.shape[0]
    cap = work.shape[0]
    m, kind, fast = classify(x)
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


@strict
def _log_softmax_row(
    x: Any, out: Any, work: Any, stage: Any, t: float, nt: bool, direct: bool, pf: Any
) -> None:
    """log_softmax of the row ``x``; same protocol as :func:`_softmax_row`."""  # pragma: no cover
    wide()
    n = x.shape[0]
    m, kind, fast = classify(x)
    if kind >= 0:
        _special_row(x, out if direct else stage, kind, 1)
        return
    shift = _log_normalizer(x, work, m, t, fast, pf)
    if not direct:
        logp_sweep(x, stage[:n], m, t, shift)
        return
    if nt:
        logp_stream(x, out, stage, m, t, shift)
    else:
        logp_sweep(x, out, m, t, shift)


@strict
def _logsumexp_row(x: Any, work: Any) -> float:  # pragma: no cover - jitted
    wide()
    m, kind, fast = classify(x)
    if kind >= 0:
        return _special_row(x, work, kind, 2)
    return np.float64(m) + _log_normalizer(x, work, m, 1.0, fast, x[:0])


def logp_stream(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:  # pragma: no cover
    """``out[j] = (x[j] - m) / t - shift`` as :func:`logp_sweep`, stored non-temporally."""
    raise NotImplementedError


def _logp_stream32(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    # The aligned middle is computed in registers and streamed, a 64-byte line at a time.
    wide()
    n = x.shape[0]
    m64 = np.float64(m)
    invt = 1.0 / t  # exactly 1 when t == 1: the same roundings as logp_sweep
    j = line_head(out)
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
        stream(out[lo:hi], st, True)


@overload(logp_stream, jit_options={"fastmath": False})
def _logp_stream_ol(x: Any, out: Any, stage: Any, m: Any, t: Any, shift: Any) -> Any:
    return by_dtype(x.dtype, _logp_stream32, _logp_stream64)


# ---------------------------------------------------------------------------------------------
# 2-D drivers: rows of a C-contiguous array, parallel over groups of rows


@strict
def _softmax_group(
    x: Any, out: Any, work: Any, stage: Any, r0: int, r1: int, t: float, log: bool, nt: bool
) -> None:  # pragma: no cover - jitted
    """Rows ``[r0, r1)``. One row (a long one): straight to ``out`` through ``stage`` in chunks.
    Several short rows: gathered in ``stage``, then streamed out at once."""
    wide()
    n = x.shape[1]
    direct = n > stage.shape[0] or n > work.shape[0] or (nt and n >= _LINE_ROWS)  # see layout
    per = r1 - r0
    for r in range(r0, r1):
        st = stage if direct else stage[(r - r0) * n : (r - r0 + 1) * n]
        pf = x[r + per] if r + per < x.shape[0] else x[r, :0]  # the same row of the next group
        if log:
            _log_softmax_row(x[r], out[r], work, st, t, nt, direct, pf)
        else:
            _softmax_row(x[r], out[r], work, st, t, nt, direct, pf)
    if not direct:
        stream(out[r0:r1].reshape(-1), stage, nt)


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


@strict
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


@strict
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
    return by_dtype(s.dtype, _vjp_sweep32, _vjp_sweep64)


@strict
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
    j = line_head(out)
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


@strict
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
    return by_dtype(logp.dtype, _lvjp_sweep32, _lvjp_sweep64)


@numba.njit(parallel=True, cache=True, nogil=True)
def _log_softmax_vjp_2d(logp: Any, g: Any, out: Any, t: float) -> None:  # pragma: no cover
    wide()
    for r in prange(logp.shape[0]):
        wide()
        lvjp_sweep(logp[r], g[r], out[r], _support_sum(g[r], logp[r]), t)


@strict
def _log_softmax_vjp_2d_serial(logp: Any, g: Any, out: Any, t: float) -> None:  # pragma: no cover
    wide()
    for r in range(logp.shape[0]):
        lvjp_sweep(logp[r], g[r], out[r], _support_sum(g[r], logp[r]), t)




# ---------------------------------------------------------------------------------------------
# Entry points used by _dispatch: C-contiguous 2-D input of one float dtype, out preallocated


def softmax_2d(x: np.ndarray, out: np.ndarray, t: float, log: bool) -> None:
    """softmax (``log`` False) or log_softmax of every row of ``x`` into ``out``."""
    rows, n = x.shape
    if _short.applies(n, t):
        _short.softmax_2d(x, out, log)
        return
    nthr = numba.get_num_threads()
    if x.size < _rows.PARALLEL_MIN:
        nthr = 1
    per, wl, sl = _rows.layout(rows, n, nthr)
    work = _rows.scratch("work", nthr, wl, np.float64)
    stage = _rows.scratch("stage", nthr, sl, x.dtype)
    run = _softmax_2d if nthr > 1 else _softmax_2d_serial
    _rows.dynamic(run, x, out, float(t), bool(log), _rows.streaming(out, x), work, stage, per)


def logsumexp_2d(x: np.ndarray, out: np.ndarray) -> None:
    """``out[r] = logsumexp(x[r])`` in float64 (``out``: float64, one entry per row)."""
    if _short.applies(x.shape[1], 1.0):
        _short.logsumexp_2d(x, out)
        return
    nthr = numba.get_num_threads() if x.size >= _rows.PARALLEL_MIN else 1
    work = _rows.scratch("work", nthr, min(x.shape[1], _rows.GROUP), np.float64)
    (_logsumexp_2d if nthr > 1 else _logsumexp_2d_serial)(x, out, work)


def softmax_vjp_2d(s: np.ndarray, g: np.ndarray, out: np.ndarray, t: float) -> None:
    """``out = s * (g - sum(g * s)) / t`` row by row."""
    if s.shape[1] <= _short.SHORT_MAX:
        _short.vjp_2d(s, g, out, t, log=False)
        return
    run = _softmax_vjp_2d if s.size >= _rows.PARALLEL_MIN else _softmax_vjp_2d_serial
    nt = out.nbytes >= _rows.NT_MIN_BYTES and not (np.may_share_memory(out, s) or np.may_share_memory(out, g))
    run(s, g, out, float(t), nt)


def log_softmax_vjp_2d(logp: np.ndarray, g: np.ndarray, out: np.ndarray, t: float) -> None:
    """``out = where(logp != -inf, g - exp(logp) * sum(g over the support), 0) / t``."""
    if logp.shape[1] <= _short.SHORT_MAX:
        _short.vjp_2d(logp, g, out, t, log=True)
        return
    run = _log_softmax_vjp_2d if logp.size >= _rows.PARALLEL_MIN else _log_softmax_vjp_2d_serial
    run(logp, g, out, float(t))

