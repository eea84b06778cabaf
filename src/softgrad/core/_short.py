"""Short-row kernels: softmax, log_softmax and logsumexp of rows of at most :data:`SHORT_MAX`.

Rows of 2, 10 or 30 classes are too short for the row-at-a-time kernels of :mod:`._kernels`:
their vector loops never fill a register and the per-row work dominates. Here a block of rows
(:data:`_BLOCK_ELEMS` entries) is transposed into float64 scratch of shape ``(n, rows)``, and
every step is a loop over the columns, vectorized across rows:

1. the maximum, minimum and NaN count of every row (:func:`_load`);
2. ``e = exp(x - m)`` exactly as the row kernels compute it (:func:`_exp_cols`): float32 in
   float64 (``x - m`` exact, :func:`exp_lowp`), float64 with the TwoSum remainder of
   ``x - m`` folded into the exp (the clamped exp where a row's spread reaches 700);
3. ``rest = sum(e) - 1``, compensated (:func:`_rest`): the maximum contributes exactly 1, so
   the rest keeps its relative accuracy for log1p and for the softmax of a dominant entry;
4. the results, rounded once, transposed back on the store (:func:`_store`).

Rows holding NaN or ``+inf``, or only ``-inf``, are redone afterwards by :func:`special_row`
(shared with the row kernels), as the reference treats them. Tests compare the results with
the reference, with the row kernels and with mpmath (tests/test_kernels.py).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from . import _rows
from ._fastexp import exp_fast, exp_lowp, fma, wide
from ._rows import _exp_clamped, two_diff
from ._rows import strict as _strict

__all__ = ["SHORT_MAX", "applies", "block_scratch", "logsumexp_2d", "softmax_2d", "special_row", "strict"]

# Rows up to this long take the short-row kernels (measured: the row kernels win from about 48).
SHORT_MAX = 32
_BLOCK_ELEMS = 8192  # entries per block: its transposed copies (64 KB each) stay in L2

_OP_SOFTMAX, _OP_LOG, _OP_LSE = 0, 1, 2

# As _rows.strict, with NumPy's error model: a special row's junk (1 / 0 before it is
# overwritten) must not raise, and the division check would keep the loops scalar.
strict = numba.njit(error_model="numpy", **_rows._NO_NRT)


def applies(n: int, t: float) -> bool:
    """Rows of at most :data:`SHORT_MAX` entries without a temperature."""
    return n <= SHORT_MAX and t == 1.0


@_strict
def special_row(x: Any, out: Any, kind: int, op: int) -> float:  # pragma: no cover - jitted
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



@strict
def _load(x: Any, xt: Any, m: Any, lo: Any, nan: Any) -> None:  # pragma: no cover - jitted
    """Transpose the block ``x`` (rows, n) into ``xt`` (n, rows) in float64, with each row's
    maximum ``m``, minimum ``lo`` and NaN count ``nan``, vectorized across rows."""
    wide()
    rows, n = x.shape
    for r in range(rows):
        xr = x[r]
        for j in range(n):
            xt[j, r] = np.float64(xr[j])
    for r in range(rows):
        m[r] = -np.inf
        lo[r] = np.inf
        nan[r] = 0.0
    for j in range(n):
        col = xt[j]
        for r in range(rows):
            v = col[r]
            m[r] = v if v > m[r] else m[r]
            lo[r] = v if v < lo[r] else lo[r]
            nan[r] += 1.0 if v != v else 0.0


@strict
def _exp_cols(xt: Any, et: Any, m: Any, single: bool, fast: bool) -> None:  # pragma: no cover
    """``et = exp(xt - m)`` column by column, vectorized across rows.

    float32 rows (``single``): ``x - m`` is exact in float64 and :func:`exp_lowp` is accurate
    to 2**-33. float64: ``x - m`` as an exact pair, its remainder folded into the exp; the
    clamped exp where a row's spread reaches 700 (``-inf`` entries, subnormal results)."""
    wide()
    n = xt.shape[0]
    rows = m.shape[0]
    for j in range(n):
        col = xt[j]
        ecol = et[j]
        if single:
            for r in range(rows):
                d = col[r] - m[r]
                ecol[r] = exp_lowp(d if d > -200.0 else -200.0)
        elif fast:
            for r in range(rows):
                s, err = two_diff(col[r], m[r])
                ecol[r] = exp_fast(s, err)
        else:
            for r in range(rows):
                s, err = two_diff(col[r], m[r])
                ecol[r] = _exp_clamped(s, err)


@strict
def _rest(et: Any, rest: Any, comp: Any) -> None:  # pragma: no cover - jitted
    """Per row ``rest = sum(e) - 1``, compensated (Neumaier), vectorized across rows.

    The maximum contributes exactly 1, so ``rest`` keeps its relative accuracy however small
    it is (log1p needs that, and so does the softmax of a dominant entry)."""
    wide()
    n = et.shape[0]
    rows = rest.shape[0]
    for r in range(rows):
        rest[r] = -1.0
        comp[r] = 0.0
    for j in range(n):
        ecol = et[j]
        for r in range(rows):
            e = ecol[r]
            s0 = rest[r]
            u = s0 + e
            comp[r] += ((s0 - u) + e) if abs(s0) >= abs(e) else ((e - u) + s0)
            rest[r] = u
    for r in range(rows):
        rest[r] = rest[r] + comp[r]


@strict
def _store(ot: Any, out: Any) -> None:  # pragma: no cover - jitted
    """``out[r, j] = ot[j, r]``: the block back in row order."""
    wide()
    rows, n = out.shape
    for r in range(rows):
        o = out[r]
        for j in range(n):
            o[j] = ot[j, r]


@strict
def _softmax_cols(et: Any, ot: Any, rest: Any, single: bool) -> None:  # pragma: no cover - jitted
    """``ot = e / (1 + rest)`` rounded once (float64: the quotient through hi + lo, one FMA)."""
    wide()
    n = et.shape[0]
    rows = rest.shape[0]
    for j in range(n):
        ecol = et[j]
        ocol = ot[j]
        if single:
            for r in range(rows):
                ocol[r] = ecol[r] * (1.0 / (1.0 + rest[r]))
        else:
            for r in range(rows):
                t = 1.0 + rest[r]
                hi = 1.0 / t
                lo = fma(-hi, t, 1.0) / t
                b = ecol[r]
                ocol[r] = fma(b, hi, b * lo)


@strict
def _log_softmax_cols(xt: Any, ot: Any, m: Any, shift: Any, single: bool) -> None:  # pragma: no cover
    """``ot = (x - m) - shift`` (float64: the TwoSum remainder of ``x - m`` added last)."""
    wide()
    n = xt.shape[0]
    rows = m.shape[0]
    for j in range(n):
        xcol = xt[j]
        ocol = ot[j]
        if single:
            for r in range(rows):
                ocol[r] = (xcol[r] - m[r]) - shift[r]
        else:
            for r in range(rows):
                s, err = two_diff(xcol[r], m[r])
                ocol[r] = (s - shift[r]) + (err if s > -np.inf else 0.0)


@strict
def _block(
    x: Any, out: Any, xt: Any, et: Any, ot: Any, aux: Any, op: int, lse: Any
) -> None:  # pragma: no cover - jitted
    """One block of rows ``x`` (2-D, C-contiguous) into ``out`` (or ``lse`` for logsumexp)."""
    wide()
    rows = x.shape[0]
    m = aux[0, :rows]
    lo = aux[1, :rows]
    nan = aux[2, :rows]
    rest = aux[3, :rows]
    comp = aux[4, :rows]
    _load(x, xt, m, lo, nan)
    single = x.itemsize == 4
    fast = True
    for r in range(rows):
        fast = fast and (lo[r] - m[r]) >= -700.0
    _exp_cols(xt, et, m, single, fast)
    _rest(et, rest, comp)
    if op == 0:
        _softmax_cols(et, ot, rest, single)
    else:
        for r in range(rows):
            comp[r] = np.log1p(rest[r])
        if op == 1:
            _log_softmax_cols(xt, ot, m, comp, single)
        else:
            for r in range(rows):
                lse[r] = m[r] + comp[r]
    if op < 2:
        _store(ot, out)
    for r in range(rows):  # NaN, +inf, all -inf: as the reference (the rest computed junk)
        kind = 0 if nan[r] > 0.0 else (1 if m[r] == np.inf else (2 if m[r] == -np.inf else -1))
        if kind >= 0:
            v = special_row(x[r], out[r] if op < 2 else x[r, :0], kind, op)
            if op == 2:
                lse[r] = v


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _run(
    x: Any, out: Any, xt: Any, et: Any, ot: Any, aux: Any, op: int, lse: Any, per: int
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    nblocks = (rows + per - 1) // per
    for g in prange(nblocks):
        wide()
        tid = numba.get_thread_id()
        r0 = g * per
        r1 = min(r0 + per, rows)
        o = out[r0:r1] if op < 2 else out
        _block(x[r0:r1], o, xt[tid], et[tid], ot[tid], aux[tid], op, lse[r0:r1] if op == 2 else lse)


@strict
def _run_serial(
    x: Any, out: Any, xt: Any, et: Any, ot: Any, aux: Any, op: int, lse: Any, per: int
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    for r0 in range(0, rows, per):
        r1 = min(r0 + per, rows)
        o = out[r0:r1] if op < 2 else out
        _block(x[r0:r1], o, xt[0], et[0], ot[0], aux[0], op, lse[r0:r1] if op == 2 else lse)


def _scratch3(name: str, threads: int, n: int, per: int, dtype: Any) -> np.ndarray:
    return _rows.scratch(name, threads * n, per, dtype).reshape(threads, n, per)


def block_scratch(threads: int, n: int, per: int, dtype: Any) -> tuple[np.ndarray, ...]:
    """Per-thread ``(xt, et, ot, aux)`` for blocks of ``per`` rows of ``n`` entries."""
    return (
        _scratch3("short_xt", threads, n, per, np.float64),
        _scratch3("short_et", threads, n, per, np.float64),
        _scratch3("short_ot", threads, n, per, dtype),
        _scratch3("short_aux", threads, 5, per, np.float64),
    )


def _launch(x: np.ndarray, out: np.ndarray, op: int, lse: np.ndarray) -> None:
    rows, n = x.shape
    nthr = numba.get_num_threads() if x.size >= _rows.PARALLEL_MIN else 1
    per = max(1, min(rows, _BLOCK_ELEMS // n))
    xt, et, ot, aux = block_scratch(nthr, n, per, out.dtype if op < 2 else x.dtype)
    run = _run if nthr > 1 else _run_serial
    _rows.dynamic(run, x, out, xt, et, ot, aux, op, lse, per)


def softmax_2d(x: np.ndarray, out: np.ndarray, log: bool) -> None:
    """softmax (or log_softmax) of every row of the C-contiguous ``(rows, n <= SHORT_MAX)`` ``x``."""
    _launch(x, out, _OP_LOG if log else _OP_SOFTMAX, np.empty(0, np.float64))


def logsumexp_2d(x: np.ndarray, lse: np.ndarray) -> None:
    """``lse[r] = logsumexp(x[r])`` in float64 for rows of at most ``SHORT_MAX`` entries."""
    _launch(x, x[:0], _OP_LSE, lse)
