"""Short-row kernels: softmax, log_softmax and logsumexp of rows of at most :data:`SHORT_MAX`.

Rows of 2, 10 or 30 classes are too short for the row-at-a-time kernels of :mod:`._kernels`:
their vector loops never fill a register and the per-row work dominates. Here a block of rows
(:data:`_BLOCK_ELEMS` entries) is transposed into scratch of shape ``(n, rows)`` (in the
input's dtype; every step computes in float64), and every step is a loop over the columns,
vectorized across rows:

1. the maximum and sum of every row, and in float64 its minimum (:func:`_load`);
2. ``e = exp(x - m)`` exactly as the row kernels compute it (:func:`_exp_cols`): float32 in
   float64 (``x - m`` exact, :func:`exp_lowp`), float64 with the TwoSum remainder of
   ``x - m`` folded into the exp (the clamped exp where a row's spread reaches 700);
3. ``rest = sum(e) - 1``, compensated (:func:`_rest`): the maximum contributes exactly 1, so
   the rest keeps its relative accuracy for log1p and for the softmax of a dominant entry;
4. the results, rounded once, transposed back on the store (:func:`_store`).

Rows holding NaN or ``+inf``, or only ``-inf`` (found by :func:`row_kind` among the rows
whose sum is not finite), are redone afterwards by :func:`special_row`
(shared with the row kernels), as the reference treats them. Tests compare the results with
the reference, with the row kernels and with mpmath (tests/test_kernels.py).

Rows of two skip the transpose: the sigmoid form (one exp per row, :func:`pair_split`) runs
straight over the interleaved rows, vectorized across them (section "Two columns"); the
two-class cross-entropy in losses/_ce_kernels.py uses it too. ``log1p`` of the rest is the
branch-free :func:`._fastexp.log1p_pos`, which vectorizes (libm's scalar call was most of a
two-class log_softmax). The VJPs of short rows (:func:`vjp_2d`) are one fused pass per row,
without the row kernels' per-row set-up (tests/test_short_pair.py).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange
from numba.extending import overload

from . import _rows, _transpose
from ._fastexp import exp_fast, exp_full, exp_lowp, fma, log1p_pos, wide
from ._rows import _exp_clamped, two_diff
from ._rows import strict as _strict

__all__ = [
    "AUX_ROWS",
    "PAIR_ROWS",
    "SHORT_MAX",
    "applies",
    "block_scratch",
    "logsumexp_2d",
    "pair_probs",
    "pair_split",
    "row_kind",
    "softmax_2d",
    "special_row",
    "strict",
    "vjp_2d",
]

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



GATHER_MAX = 8
"""Rows up to this long are transposed column by column (a gather from the rows on the load, a
scatter into them on the store, AVX-512's vector forms); longer rows row by row. Measured on
65536 rows, float32, one thread: the load 0.64 -> 0.32 ms at 10 entries, 0.34 -> 0.13 ms at 3,
but slower from 16 on; the store 0.45 -> 0.31 ms at 10, slower from 16 on."""


@strict
def _load(x: Any, xt: Any, m: Any, lo: Any, total: Any, single: bool) -> None:  # pragma: no cover
    """Transpose the block ``x`` (rows, n) into ``xt`` (n, rows, ``x``'s dtype), with each
    row's maximum ``m`` and sum ``total`` (float64), and for float64 rows (not ``single``) the
    minimum ``lo``; vectorized across rows.

    ``total`` is finite unless the row holds NaN or an infinity (or, in float64, its sum
    overflows): only such rows need :func:`row_kind`. float32 rows skip the minimum (their exp
    clamps instead): measured 0.20 -> 0.06 ms for these sweeps on 65536 x 10, one thread."""
    wide()
    rows, n = x.shape
    done = _transpose.rows_to_cols(x, xt)
    if n <= GATHER_MAX:
        for j in range(n):
            col = xt[j]
            for r in range(done, rows):
                col[r] = x[r, j]
    else:
        for r in range(done, rows):
            xr = x[r]
            for j in range(n):
                xt[j, r] = xr[j]
    # (a separate pass: fused into the gather above, the loop stays scalar, twice as slow)
    for r in range(rows):
        m[r] = -np.inf
        lo[r] = np.inf
        total[r] = 0.0
    for j in range(n):
        col = xt[j]
        if single:
            for r in range(rows):
                v = np.float64(col[r])
                m[r] = v if v > m[r] else m[r]
                total[r] += v
        else:
            for r in range(rows):
                v = np.float64(col[r])
                m[r] = v if v > m[r] else m[r]
                lo[r] = v if v < lo[r] else lo[r]
                total[r] += v


@strict
def row_kind(x: Any) -> int:  # pragma: no cover - jitted
    """The :func:`special_row` kind of the row ``x``: 0 if it holds NaN, else 1 if it holds
    ``+inf``, 2 if every entry is ``-inf``, and -1 for a regular row."""
    pos = False
    neg = True
    for v in x:
        if v != v:
            return 0
        pos = pos or v == np.inf
        neg = neg and v == -np.inf
    return 1 if pos else (2 if neg else -1)


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
    done = _transpose.cols_to_rows(ot, out)
    if n <= GATHER_MAX:
        for j in range(n):
            col = ot[j]
            for r in range(done, rows):
                out[r, j] = col[r]
        return
    for r in range(done, rows):
        o = out[r]
        for j in range(n):
            o[j] = ot[j, r]


@strict
def _softmax_cols(et: Any, ot: Any, rest: Any, hi: Any, lo: Any, single: bool) -> None:  # pragma: no cover
    """``ot = e / (1 + rest)`` rounded once (float64: the quotient through ``hi + lo``, one FMA).

    Each row's reciprocal (``hi``, and in float64 its remainder ``lo``) is computed once, not
    once per entry inside the column loop."""
    wide()
    n = et.shape[0]
    rows = rest.shape[0]
    for r in range(rows):
        t = 1.0 + rest[r]
        h = 1.0 / t
        hi[r] = h
        lo[r] = 0.0 if single else fma(-h, t, 1.0) / t
    for j in range(n):
        ecol = et[j]
        ocol = ot[j]
        if single:
            for r in range(rows):
                ocol[r] = ecol[r] * hi[r]
        else:
            for r in range(rows):
                b = ecol[r]
                ocol[r] = fma(b, hi[r], b * lo[r])


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
    total = aux[2, :rows]
    rest = aux[3, :rows]
    comp = aux[4, :rows]
    single = x.itemsize == 4
    _load(x, xt, m, lo, total, single)
    fast = True
    if not single:
        for r in range(rows):
            fast = fast and (lo[r] - m[r]) >= -700.0
    _exp_cols(xt, et, m, single, fast)
    _rest(et, rest, comp)
    if op == 0:
        _softmax_cols(et, ot, rest, aux[5, :rows], aux[6, :rows], single)
    else:
        for r in range(rows):
            comp[r] = log1p_pos(rest[r])
        if op == 1:
            _log_softmax_cols(xt, ot, m, comp, single)
        else:
            for r in range(rows):
                lse[r] = m[r] + comp[r]
    if op < 2:
        _store(ot, out)
    for r in range(rows):  # NaN, +inf, all -inf: as the reference (the rest computed junk)
        if np.isfinite(total[r]):
            continue
        kind = row_kind(x[r])
        if kind >= 0:
            if op < 2:  # (out or lse: x may be read-only, and out must not be typed as x)
                special_row(x[r], out[r], kind, op)
            else:
                lse[r] = special_row(x[r], lse[:0], kind, op)


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


PAD = 8
"""Spare entries at the end of every transposed row: with ``per`` rows a power of two (256 at
32 classes), the columns of a block lay 2 KB apart and the transposing load thrashed L1's
sets (measured 0.50 -> 0.20 ms for 4096 x 32 float32). The kernels use the first ``rows``."""


AUX_ROWS = 10
"""Per-row float64 scratch rows of a block (maximum, minimum, NaN count, rest, ...)."""


def _scratch3(name: str, threads: int, n: int, per: int, dtype: Any) -> np.ndarray:
    return _rows.scratch(name, threads * n, per + PAD, dtype).reshape(threads, n, per + PAD)


def block_scratch(threads: int, n: int, per: int, dtype: Any, xdtype: Any) -> tuple[np.ndarray, ...]:
    """Per-thread ``(xt, et, ot, aux)`` for blocks of ``per`` rows of ``n`` entries: ``xt`` in
    the input's dtype ``xdtype`` (float32 stays float32: half the bytes to transpose), ``ot``
    in the output's ``dtype``, ``et`` and ``aux`` in float64."""
    return (
        _scratch3("short_xt", threads, n, per, xdtype),
        _scratch3("short_et", threads, n, per, np.float64),
        _scratch3("short_ot", threads, n, per, dtype),
        _scratch3("short_aux", threads, AUX_ROWS, per, np.float64),
    )


def _launch(x: np.ndarray, out: np.ndarray, op: int, lse: np.ndarray) -> None:
    rows, n = x.shape
    nthr = numba.get_num_threads() if x.size >= _rows.PARALLEL_MIN else 1
    per = max(1, min(rows, _BLOCK_ELEMS // n))
    xt, et, ot, aux = block_scratch(nthr, n, per, out.dtype if op < 2 else x.dtype, x.dtype)
    run = _run if nthr > 1 else _run_serial
    _rows.dynamic(run, x, out, xt, et, ot, aux, op, lse, per)


def softmax_2d(x: np.ndarray, out: np.ndarray, log: bool) -> None:
    """softmax (or log_softmax) of every row of the C-contiguous ``(rows, n <= SHORT_MAX)`` ``x``."""
    if x.shape[1] == 2:
        _pair_launch(x, out, _OP_LOG if log else _OP_SOFTMAX, np.empty(0, np.float64))
        return
    _launch(x, out, _OP_LOG if log else _OP_SOFTMAX, np.empty(0, np.float64))


def logsumexp_2d(x: np.ndarray, lse: np.ndarray) -> None:
    """``lse[r] = logsumexp(x[r])`` in float64 for rows of at most ``SHORT_MAX`` entries."""
    unused = np.empty((0, x.shape[1]), x.dtype)  # the kernels' out, typed writable (x may not be)
    if x.shape[1] == 2:
        _pair_launch(x, unused, _OP_LSE, lse)
        return
    _launch(x, unused, _OP_LSE, lse)


# ---------------------------------------------------------------------------------------------
# Two columns: the sigmoid form. One exp per row, computed straight from the interleaved rows
# (flat indices 2r and 2r + 1, which LLVM vectorizes across rows), no transpose:
#
#     d = x1 - x0,   e = exp(-|d|) in (0, 1],   p_top = 1 / (1 + e),   p_other = e / (1 + e)
#     log p_top = -log1p(e),   log p_other = -|d| - log1p(e),   logsumexp = max + log1p(e)
#
# -|d| is exact: float32 differences are exact in float64, and float64 ones keep their TwoSum
# remainder, folded into the exp and added last to log p_other, as the general kernels do.
# Rows holding NaN or +inf, or only -inf, are redone by special_row afterwards; a row with one
# -inf entry is regular here (e = 0).

PAIR_ROWS = 4096  # rows per parallel block


def pair_split(a: Any, b: Any) -> Any:  # pragma: no cover - jitted only
    """For the row ``[a, b]``: ``(e, s, se, top, bad)`` with ``s + se == -|b - a|`` (exact),
    ``e = exp(s + se)``, ``top`` whether ``b`` is a maximum, ``bad`` a special row."""
    raise NotImplementedError


def _pair_split32(a: Any, b: Any) -> Any:
    wide()
    d = np.float64(b) - np.float64(a)  # exact
    top = d >= 0.0
    s = -d if top else d
    e = exp_lowp(s if s > -200.0 else -200.0)  # below -200: 0 once rounded to float32
    bad = (d != d) or (max(a, b) == np.inf)
    return e, s, 0.0, top, bad


def _pair_split64(a: Any, b: Any) -> Any:
    wide()
    d, derr = two_diff(b, a)
    top = d >= 0.0
    s = -d if top else d
    se = -derr if top else derr
    e = _exp_clamped(s, se)
    bad = (d != d) or (max(a, b) == np.inf)
    return e, s, (se if s > -np.inf else 0.0), top, bad


@overload(pair_split, jit_options={"fastmath": False})
def _pair_split_ol(a: Any, b: Any) -> Any:
    return _rows.by_dtype(a, _pair_split32, _pair_split64)


def pair_probs(e: Any, like: Any) -> Any:  # pragma: no cover - jitted only
    """``(1 / (1 + e), e / (1 + e))`` for ``e`` in [0, 1], to be rounded to ``like``'s type:
    float64 through ``1 + e`` as an exact pair and its reciprocal as ``hi + lo`` (one rounding
    at the end, as the general kernels)."""
    raise NotImplementedError


def _pair_probs32(e: Any, like: Any) -> Any:
    wide()
    inv = 1.0 / (1.0 + e)
    return inv, e * inv


def _pair_probs64(e: Any, like: Any) -> Any:
    wide()
    t = 1.0 + e
    tl = (1.0 - t) + e  # 1 >= e: the addition's exact error
    hi = 1.0 / t
    lo = (fma(-hi, t, 1.0) - hi * tl) / t
    return hi + lo, fma(e, hi, e * lo)


@overload(pair_probs, jit_options={"fastmath": False})
def _pair_probs_ol(e: Any, like: Any) -> Any:
    return _rows.by_dtype(like, _pair_probs32, _pair_probs64)


# One loop per operation, each free of branches, so that LLVM vectorizes it across rows. Each
# returns the number of special rows met (their results are junk until _pair_fix).


@strict
def _pair_softmax(x: Any, out: Any) -> int:  # pragma: no cover - jitted
    wide()
    nbad = 0
    for r in range(x.shape[0] // 2):
        e, _, _, top, bad = pair_split(x[2 * r], x[2 * r + 1])
        nbad += bad
        big, small = pair_probs(e, x[0])
        out[2 * r] = small if top else big
        out[2 * r + 1] = big if top else small
    return nbad


@strict
def _pair_log_softmax(x: Any, out: Any) -> int:  # pragma: no cover - jitted
    wide()
    nbad = 0
    for r in range(x.shape[0] // 2):
        e, s, se, top, bad = pair_split(x[2 * r], x[2 * r + 1])
        nbad += bad
        lg = log1p_pos(e)
        big, small = 0.0 - lg, (s - lg) + se
        out[2 * r] = small if top else big
        out[2 * r + 1] = big if top else small
    return nbad


@strict
def _pair_logsumexp(x: Any, lse: Any) -> int:  # pragma: no cover - jitted
    wide()
    nbad = 0
    for r in range(x.shape[0] // 2):
        a = x[2 * r]
        b = x[2 * r + 1]
        e, _, _, _, bad = pair_split(a, b)
        nbad += bad
        lse[r] = np.float64(max(a, b)) + log1p_pos(e)
    return nbad


@strict
def _pair_block(x: Any, out: Any, lse: Any, op: int) -> int:  # pragma: no cover - jitted
    """Rows of the flat ``x`` (pairs) into ``out`` (flat) or ``lse``; the special rows' count."""
    wide()
    if op == 0:
        return _pair_softmax(x, out)
    if op == 1:
        return _pair_log_softmax(x, out)
    return _pair_logsumexp(x, lse)


@strict
def _pair_fix(x: Any, out: Any, lse: Any, op: int) -> None:  # pragma: no cover - jitted
    """The special rows of a block (NaN, +inf, only -inf), as the reference treats them."""
    wide()
    for r in range(x.shape[0] // 2):
        row = x[2 * r : 2 * r + 2]
        m = max(row[0], row[1])
        nan = row[0] != row[0] or row[1] != row[1]
        kind = 0 if nan else (1 if m == np.inf else (2 if m == -np.inf else -1))
        if kind >= 0:
            if op < 2:  # (two calls, as in _block)
                special_row(row, out[2 * r : 2 * r + 2], kind, op)
            else:
                lse[r] = special_row(row, lse[:0], kind, op)


@strict
def _pair_range(x: Any, out: Any, lse: Any, op: int, r0: int, r1: int) -> None:  # pragma: no cover
    wide()
    xb = x[2 * r0 : 2 * r1]
    ob = out[2 * r0 : 2 * r1] if op < 2 else out
    lb = lse[r0:r1] if op == 2 else lse
    if _pair_block(xb, ob, lb, op):
        _pair_fix(xb, ob, lb, op)


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _pair_run(x: Any, out: Any, lse: Any, op: int, per: int) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0] // 2
    for g in prange((rows + per - 1) // per):
        wide()
        r0 = g * per
        _pair_range(x, out, lse, op, r0, min(r0 + per, rows))


@strict
def _pair_run_serial(x: Any, out: Any, lse: Any, op: int, per: int) -> None:  # pragma: no cover
    wide()
    rows = x.shape[0] // 2
    for r0 in range(0, rows, per):
        _pair_range(x, out, lse, op, r0, min(r0 + per, rows))


def _pair_launch(x: np.ndarray, out: np.ndarray, op: int, lse: np.ndarray) -> None:
    run = _pair_run if x.size >= _rows.PARALLEL_MIN and numba.get_num_threads() > 1 else _pair_run_serial
    _rows.dynamic(run, x.reshape(-1), out.reshape(-1), lse, op, PAIR_ROWS)


# ---------------------------------------------------------------------------------------------
# VJPs of short rows: one fused pass per row (the sum, then the row), no per-row set-up. Rows of
# two take the unrolled form, which LLVM vectorizes across rows like the forward pair kernels.
# Same formulas and roundings as the row kernels (_kernels.vjp_sweep and lvjp_sweep).


def vjp_entry(s: Any, g: Any, dot: Any, inv: Any, t: Any) -> Any:  # pragma: no cover - jitted only
    """``s (g - dot) / t`` rounded once to ``s``'s type (float32 through float64)."""
    raise NotImplementedError


def _vjp_entry32(s: Any, g: Any, dot: Any, inv: Any, t: Any) -> Any:
    wide()
    return np.float32(np.float64(s) * (np.float64(g) - dot) * inv)


def _vjp_entry64(s: Any, g: Any, dot: Any, inv: Any, t: Any) -> Any:
    wide()
    return s * (g - dot) if t == 1.0 else s * (g - dot) / t


@overload(vjp_entry, jit_options={"fastmath": False})
def _vjp_entry_ol(s: Any, g: Any, dot: Any, inv: Any, t: Any) -> Any:
    return _rows.by_dtype(s, _vjp_entry32, _vjp_entry64)


def lvjp_entry(lp: Any, g: Any, total: Any, inv: Any, t: Any) -> Any:  # pragma: no cover - jitted only
    """``(g - exp(lp) total) / t``, 0 where ``lp == -inf``, rounded once to ``lp``'s type."""
    raise NotImplementedError


def _lvjp_entry32(lp: Any, g: Any, total: Any, inv: Any, t: Any) -> Any:
    wide()
    lp64 = np.float64(lp)
    v = np.float32((np.float64(g) - exp_full(lp64) * total) * inv)
    return v if lp64 != -np.inf else np.float32(0.0)


def _lvjp_entry64(lp: Any, g: Any, total: Any, inv: Any, t: Any) -> Any:
    wide()
    v = g - exp_full(lp) * total
    if t != 1.0:
        v = v / t
    return v if lp != -np.inf else 0.0


@overload(lvjp_entry, jit_options={"fastmath": False})
def _lvjp_entry_ol(lp: Any, g: Any, total: Any, inv: Any, t: Any) -> Any:
    return _rows.by_dtype(lp, _lvjp_entry32, _lvjp_entry64)


@strict
def _vjp_rows(s: Any, g: Any, out: Any, n: int, t: float, log: bool) -> None:  # pragma: no cover
    """Rows of ``n`` entries of the flat ``s`` (or ``logp``), ``g`` into the flat ``out``."""
    wide()
    inv = 1.0 / t
    rows = s.shape[0] // n
    if n == 2 and not log:
        for r in range(rows):
            s0, s1, g0, g1 = s[2 * r], s[2 * r + 1], g[2 * r], g[2 * r + 1]
            dot = np.float64(s0) * np.float64(g0) + np.float64(s1) * np.float64(g1)
            out[2 * r] = vjp_entry(s0, g0, dot, inv, t)
            out[2 * r + 1] = vjp_entry(s1, g1, dot, inv, t)
    elif n == 2:
        for r in range(rows):
            l0, l1, g0, g1 = s[2 * r], s[2 * r + 1], g[2 * r], g[2 * r + 1]
            # the sum of g over the support (NaN stays in, as in the reference)
            total = (np.float64(g0) if l0 != -np.inf else 0.0) + (np.float64(g1) if l1 != -np.inf else 0.0)
            out[2 * r] = lvjp_entry(l0, g0, total, inv, t)
            out[2 * r + 1] = lvjp_entry(l1, g1, total, inv, t)
    else:
        for r in range(rows):
            sr = s[r * n : r * n + n]
            gr = g[r * n : r * n + n]
            orow = out[r * n : r * n + n]
            if log:
                total = _support_sum(gr, sr)
                for j in range(n):
                    orow[j] = lvjp_entry(sr[j], gr[j], total, inv, t)
            else:
                dot = _dot(sr, gr)
                for j in range(n):
                    orow[j] = vjp_entry(sr[j], gr[j], dot, inv, t)


# The row's sums as the row kernels take them (_kernels._block_dot and _block_support_sum):
# reassociated, so in vector lanes and a tree, not a chain of n roundings.


@_rows.reassoc
def _dot(a: Any, b: Any) -> float:  # pragma: no cover - jitted
    wide()
    acc = 0.0
    for j in range(a.shape[0]):
        acc += np.float64(a[j]) * np.float64(b[j])
    return acc


@_rows.reassoc
def _support_sum(g: Any, logp: Any) -> float:  # pragma: no cover - jitted
    wide()
    acc = 0.0
    for j in range(g.shape[0]):
        acc += np.float64(g[j]) if logp[j] != -np.inf else 0.0  # NaN stays in, as in the reference
    return acc


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _vjp_run(s: Any, g: Any, out: Any, n: int, t: float, log: bool, per: int) -> None:  # pragma: no cover
    wide()
    rows = s.shape[0] // n
    for b in prange((rows + per - 1) // per):
        wide()
        lo = b * per * n
        hi = min(lo + per * n, rows * n)
        _vjp_rows(s[lo:hi], g[lo:hi], out[lo:hi], n, t, log)


def vjp_2d(s: np.ndarray, g: np.ndarray, out: np.ndarray, t: float, log: bool) -> None:
    """softmax_vjp (or, ``log``, log_softmax_vjp) of C-contiguous ``(rows, n <= SHORT_MAX)`` rows."""
    n = s.shape[1]
    flat = (s.reshape(-1), g.reshape(-1), out.reshape(-1))
    if s.size >= _rows.PARALLEL_MIN and numba.get_num_threads() > 1:
        _rows.dynamic(_vjp_run, *flat, n, float(t), bool(log), max(1, _BLOCK_ELEMS // n))
    else:
        _vjp_rows(*flat, n, float(t), bool(log))
