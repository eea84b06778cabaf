r"""Fused Numba CPU kernel of cross-entropy with class-index targets (float32 and float64 logits).

The reference in :mod:`.cross_entropy` is the specification; this kernel computes each row's
loss and gradient from one shift of the row, reading the logits once (twice where the top
entry needs its own sum). It uses the row machinery of the softmax kernels
(:mod:`softgrad.core._rows`: threads, scratch, classification, the exp-and-sum sweep,
streaming stores).

The weighted target of a valid row with class index ``y`` (written once here, in
:func:`_target_row` and :func:`_q`; the reference's copy is ``_row_targets`` and ``_label_weight``
in :mod:`.cross_entropy`):

.. math:: q_j = (1 - \varepsilon)\, w_y\, [j = y] + \frac{\varepsilon}{C} w_j, \qquad
          a = \sum_j q_j = (1 - \varepsilon)\, w_y + \frac{\varepsilon}{C} \sum_j w_j

The row's loss is :math:`-\sum_{q_j \ne 0} q_j \log p_j` and its gradient
``row_scale * (a p_j - q_j)``; at a unique maximum ``k`` the gradient is
``row_scale * (q_off - a * rest / total)`` with :math:`q_{off} = \sum_{j \ne k} q_j`
(``_block`` in :mod:`.cross_entropy`).

The options that are the same for every row of a call travel as one record,
:class:`Constants` (a Numba named tuple), not as a dozen positional arguments.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np
from numba import prange, types
from numba.extending import overload

from ..core import _rows, _short
from ..core._fastexp import log1p_pos, nt_affine_line, sfence, wide
from ..core._rows import (
    by_dtype,
    classify,
    line_head,
    reassoc,
    stream,
    strict,
    total_rest,
    two_diff,
    two_sum,
)

__all__ = ["Constants", "cross_entropy_2d", "fits"]


class Constants(NamedTuple):
    """What every row of one :func:`cross_entropy_2d` call shares, as one Numba record."""

    eps: float  # label smoothing
    sum_w: float  # sum of the class weights (C without them)
    ignore: int  # ignore_index
    row_scale_mode: int  # 0: every row scaled by 1, 1: all by row_scale_all, 2: row r by row_scale[r]
    row_scale_all: float
    has_w: bool  # class weights given
    has_sample_weight: bool
    want_loss: bool
    want_grad: bool
    nt: bool  # stream the gradient out with non-temporal stores


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
    return by_dtype(x.dtype, _logp_at32, _logp_at64)


@strict
def _logp_weighted_term(x: Any, j: int, w: Any, has_w: bool, m: Any, shift: float) -> float:
    """``w_j * log p_j``, 0 where ``w_j == 0`` (no mass: ``0 * log 0 = 0``)."""  # pragma: no cover
    wide()
    wj = w[j] if has_w else 1.0
    return wj * logp_at(x, j, m, shift) if wj != 0.0 else 0.0


@reassoc
def _logp_weighted_sum(x: Any, w: Any, has_w: bool, m: Any, shift: float) -> float:  # pragma: no cover
    # Terms of one sign (log p <= 0, w >= 0 in practice): the order of the sum hardly matters.
    wide()
    acc = 0.0
    for j in range(x.shape[0]):
        acc += _logp_weighted_term(x, j, w, has_w, m, shift)
    return acc


@reassoc
def _sum_except(w: Any, k: int) -> float:  # pragma: no cover - jitted
    """``sum(w) - w[k]`` without the cancellation: the sum of the other entries."""
    wide()
    acc = 0.0
    for j in range(w.shape[0]):
        acc += w[j] if j != k else 0.0
    return acc


@strict
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


def ce_grad_sweep(
    work: Any, stage: Any, w: Any, has_w: Any, p_scale: Any, q_scale: Any
) -> Any:  # pragma: no cover - jitted only
    """``stage[j] = p_scale * e_j - q_scale * w_j`` rounded once (the gradient off ``y`` and the top)."""
    raise NotImplementedError


def _ce_grad_sweep(work: Any, stage: Any, w: Any, has_w: Any, p_scale: Any, q_scale: Any) -> Any:
    wide()
    if has_w:
        for j in range(work.shape[0]):
            stage[j] = p_scale * work[j] - q_scale * w[j]
    else:
        for j in range(work.shape[0]):
            stage[j] = p_scale * work[j] - q_scale


@overload(ce_grad_sweep, jit_options={"fastmath": False})
def _ce_grad_sweep_ol(work: Any, stage: Any, w: Any, has_w: Any, p_scale: Any, q_scale: Any) -> Any:
    if stage.dtype in (types.float32, types.float64):
        return _ce_grad_sweep
    return None




# ---------------------------------------------------------------------------------------------
# The weighted-target rule (the reference's: _row_targets and _label_weight in cross_entropy.py)


@strict
def _target_row(y: int, w: Any, c: Any, n: int) -> Any:  # pragma: no cover - jitted
    """``(w_y, eps / C, a)`` of a valid row with class index ``y`` (module docstring)."""
    wide()
    ceps = c.eps / n
    wy = w[y] if c.has_w else 1.0
    return wy, ceps, (1.0 - c.eps) * wy + ceps * c.sum_w


@strict
def _q(j: int, y: int, w: Any, has_w: bool, wy: float, eps: float, ceps: float) -> float:
    """The target weight ``q_j`` of a valid row."""  # pragma: no cover - jitted
    wide()
    wj = w[j] if has_w else 1.0
    q = ceps * wj
    if j == y:
        q += (1.0 - eps) * wy
    return q


@strict
def _q_off(k: int, y: int, w: Any, has_w: bool, wy: float, eps: float, ceps: float, n: int) -> float:
    """``sum_{j != k} q_j``, without the cancellation of ``a - q_k``."""  # pragma: no cover - jitted
    wide()
    w_off = _sum_except(w, k) if has_w else n - 1.0
    return ceps * w_off + ((1.0 - eps) * wy if k != y else 0.0)


# ---------------------------------------------------------------------------------------------
# One row


@strict
def _ce_special(
    x: Any, kind: int, y: int, w: Any, c: Any, row_scale: float, stage: Any
) -> float:  # pragma: no cover - jitted
    """Loss (before the sample weight) and gradient of a valid row holding NaN (kind 0), +inf
    (kind 1) or only -inf (kind 2), as the reference computes them."""
    wide()
    n = x.shape[0]
    has_w, eps = c.has_w, c.eps
    wy, ceps, a = _target_row(y, w, c, n)
    if kind != 1:  # NaN row: NaN loss and gradient; empty row: log p = -inf, gradient 0
        lp = np.nan if kind == 0 else -np.inf
        loss = 0.0
        for j in range(n):
            q = _q(j, y, w, has_w, wy, eps, ceps)
            if q != 0.0:
                loss -= q * lp
        if c.want_grad:
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
        q = _q(j, y, w, has_w, wy, eps, ceps)
        if q != 0.0:
            loss -= q * (-lk if x[j] == np.inf else -np.inf)
    if c.want_grad:
        for j in range(n):
            q = _q(j, y, w, has_w, wy, eps, ceps)
            stage[j] = row_scale * ((a / k if x[j] == np.inf else 0.0) - q)
        if k == 1:  # the reference's top-1 form: the target mass off the top, summed directly
            q_off = 0.0
            comp = 0.0
            for j in range(n):
                if j != top:
                    q_off, comp = two_sum(q_off, comp, _q(j, y, w, has_w, wy, eps, ceps))
            stage[top] = row_scale * (q_off + comp)
    return loss


@strict
def _ce_patched(
    work: Any, out: Any, lo: int, w: Any, p_scale: float, q_scale: float, y: int, gy: float, k: int, gk: float
) -> None:  # pragma: no cover - jitted
    """``out[j - lo] = p_scale * work[j - lo] - q_scale`` with plain stores, entries ``y`` and
    ``k`` (offsets from ``lo``) replaced by ``gy`` and ``gk`` (no class weights)."""
    wide()
    ce_grad_sweep(work, out, w, False, p_scale, q_scale)
    n = out.shape[0]
    if lo <= y < lo + n:
        out[y - lo] = gy
    if lo <= k < lo + n:
        out[k - lo] = gk


@strict
def _ce_out(
    work: Any, out: Any, stage: Any, w: Any, has_w: bool, p_scale: float, q_scale: float,
    y: int, gy: float, k: int, gk: float, nt: bool,
) -> None:  # pragma: no cover - jitted
    """A row's gradient straight into ``out``: through ``stage`` in chunks, or (``nt`` and no
    class weights) computed a 64-byte line at a time in registers and streamed, the lines
    holding ``y`` or ``k`` (patched afterwards) with plain stores."""
    wide()
    n = out.shape[0]
    if nt and not has_w:
        lanes = 64 // out.itemsize
        j = line_head(out)
        _ce_patched(work[:j], out[:j], 0, w, p_scale, q_scale, y, gy, k, gk)
        while j + lanes <= n:
            if j <= y < j + lanes or j <= k < j + lanes:
                _ce_patched(work[j : j + lanes], out[j : j + lanes], j, w, p_scale, q_scale, y, gy, k, gk)
            else:
                nt_affine_line(out, j, work, j, p_scale, q_scale)
            j += lanes
        _ce_patched(work[j:n], out[j:], j, w, p_scale, q_scale, y, gy, k, gk)
        return
    step = stage.shape[0]
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        st = stage[: hi - lo]
        ce_grad_sweep(work[lo:hi], st, w[lo:hi] if has_w else w, has_w, p_scale, q_scale)
        if lo <= y < hi:
            st[y - lo] = gy
        if lo <= k < hi:
            st[k - lo] = gk
        stream(out[lo:hi], st, nt)


@strict
def _ce_row(
    x: Any, y: int, w: Any, c: Any, row_scale: float, work: Any, stage: Any, out: Any, direct: bool, pf: Any
) -> float:  # pragma: no cover - jitted
    """Loss (before the sample weight) of a valid row; its gradient into ``stage[:n]``, or
    (``direct``) into ``out`` through ``stage`` in chunks."""
    wide()
    n = x.shape[0]
    m, kind, fast = classify(x)
    if kind >= 0:
        return _ce_special(x, kind, y, w, c, row_scale, out if direct else stage)
    has_w, eps = c.has_w, c.eps
    wy, ceps, a = _target_row(y, w, c, n)
    total, rest = total_rest(x, work, m, 1.0, fast, pf)
    loss = 0.0
    if c.want_loss:
        shift = np.log1p(rest)
        if wy != 0.0 and eps != 1.0:
            loss = -(1.0 - eps) * wy * logp_at(x, y, m, shift)
        if eps != 0.0:
            loss -= ceps * _logp_weighted_sum(x, w, has_w, m, shift)
    if c.want_grad:
        gy = row_scale * (a * work[y] / total - _q(y, y, w, has_w, wy, eps, ceps))
        # p_k - 1 from the mass off the top, not by cancellation, where it matters: p_k > 1/2
        # (rest < 1, which also makes the maximum unique; rest counts every extra tie as 1).
        # Below that, a p_k - q_k keeps its digits, and the extra pass over x is saved.
        ties, k = _top(x, m) if rest < 1.0 else (0, y)
        gk = 0.0
        if ties == 1:
            gk = row_scale * (_q_off(k, y, w, has_w, wy, eps, ceps, n) - a * (rest / total))
        else:
            k = y  # no top-1 entry: patch y twice
            gk = gy
        p_scale, q_scale = row_scale * a / total, row_scale * ceps
        if direct:
            _ce_out(work[:n], out, stage, w, has_w, p_scale, q_scale, y, gy, k, gk, c.nt)
        else:
            st = stage[:n]
            ce_grad_sweep(work[:n], st, w, has_w, p_scale, q_scale)
            st[y] = gy
            st[k] = gk
    return loss


# ---------------------------------------------------------------------------------------------
# 2-D drivers: rows of a C-contiguous array, parallel over groups of rows


@strict
def _ce_group(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, work: Any, stage: Any,
    r0: int, r1: int, c: Any,
) -> None:  # pragma: no cover - jitted
    wide()
    n = x.shape[1]
    # Short rows stay gathered even when streamed: the two patched entries per row made writing
    # them row by row slower here (measured), unlike softmax.
    direct = n > stage.shape[0] or n > work.shape[0]  # see _rows.layout
    for r in range(r0, r1):
        st = stage if direct else stage[(r - r0) * n : (r - r0 + 1) * n]
        yr = y[r]
        mode = c.row_scale_mode
        scale = row_scale[r] if mode == 2 else (c.row_scale_all if mode == 1 else 1.0)
        if yr == c.ignore:  # an ignored row: no loss, no gradient
            lr = 0.0
            if c.want_grad:
                target = grad[r] if direct else st
                for j in range(n):
                    target[j] = 0.0
        else:
            row_out = grad[r] if c.want_grad else grad[0]  # (grad is a 1 x 1 dummy without want_grad)
            pf = x[r + r1 - r0] if r + r1 - r0 < x.shape[0] else x[r, :0]
            lr = _ce_row(x[r], yr, w, c, scale, work, st, row_out, direct, pf)
        if c.want_loss:
            loss[r] = lr * sample_weight[r] if c.has_sample_weight else lr
    if c.want_grad and not direct:
        stream(grad[r0:r1].reshape(-1), stage, c.nt)


@numba.njit(parallel=True, cache=True, nogil=True)
def _ce_2d(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, work: Any, stage: Any,
    per: int, c: Any,
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    ngroups = (rows + per - 1) // per
    for g in prange(ngroups):
        wide()
        tid = numba.get_thread_id()
        r0 = g * per
        r1 = min(r0 + per, rows)
        _ce_group(x, y, w, sample_weight, row_scale, loss, grad, work[tid], stage[tid], r0, r1, c)


@strict
def _ce_2d_serial(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, work: Any, stage: Any,
    per: int, c: Any,
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    for r0 in range(0, rows, per):
        r1 = min(r0 + per, rows)
        _ce_group(x, y, w, sample_weight, row_scale, loss, grad, work[0], stage[0], r0, r1, c)
    if c.nt:
        sfence()


# ---------------------------------------------------------------------------------------------
# Short rows (#15): a block of rows transposed, exp and sums vectorized across rows (core/_short)


@_short.strict
def _ce_short_targets(xt: Any, et: Any, yb: Any, xy: Any, ey: Any) -> None:  # pragma: no cover
    """``xy[r] = xt[y_r, r]`` and ``ey[r] = et[y_r, r]``, vectorized across rows (a gather;
    ``y_r`` clipped into the block, ignored rows read junk that :func:`_ce_short_rows` drops).
    Measured 0.2 ms for 65536 rows of 10, where a per-row read took about 0.6 ms and selects
    over the columns 1.1 ms."""
    wide()
    n = xt.shape[0]
    rows = xy.shape[0]
    for r in range(rows):
        k = yb[r]
        k = 0 if k < 0 else (n - 1 if k >= n else k)
        xy[r] = xt[k, r]
        ey[r] = et[k, r]


@_short.strict
def _ce_short_grad_cols(et: Any, ot: Any, yb: Any, p_scale: Any, gy: Any) -> None:  # pragma: no cover
    """``ot = p_scale * e`` column by column, ``gy`` at the target (rounded once to ``ot``'s dtype)."""
    wide()
    n = et.shape[0]
    rows = p_scale.shape[0]
    for j in range(n):
        ecol = et[j]
        ocol = ot[j]
        for r in range(rows):
            ocol[r] = gy[r] if yb[r] == j else p_scale[r] * ecol[r]


@_short.strict
def _ce_short_rows(
    xy: Any, ey: Any, yb: Any, m: Any, shift: Any, rest: Any, scale: Any, single: bool, c: Any,
    lr: Any, gy: Any, p_scale: Any,
) -> None:  # pragma: no cover - jitted
    """Per row, vectorized: the loss ``lr = log1p(rest) - (x_y - m)`` (``shift`` holds the
    log1p), the target's gradient ``gy`` (``-rest / total`` scaled where the target is the
    unique top entry, as :func:`_ce_row`) and the other entries' factor ``p_scale``; 0 for
    ignored rows."""
    wide()
    rows = xy.shape[0]
    for r in range(rows):
        keep = yb[r] != c.ignore
        if single:
            logp = (xy[r] - m[r]) - shift[r]
        else:
            sd, err = two_diff(xy[r], m[r])
            logp = (sd - shift[r]) + (err if sd > -np.inf else 0.0)
        rr = rest[r]
        total = 1.0 + rr
        s = scale[r]
        top = ey[r] == 1.0 and rr < 1.0  # the target is the unique maximum
        g = -s * (rr / total) if top else s * (ey[r] / total - 1.0)
        lr[r] = -logp if keep else 0.0
        gy[r] = g if keep else 0.0
        p_scale[r] = s / total if keep else 0.0


@_short.strict
def _ce_short_block(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any,
    xt: Any, et: Any, ot: Any, aux: Any, r0: int, c: Any,
) -> None:  # pragma: no cover - jitted
    """Rows ``r0 .. r0 + len(x)`` without class weights or label smoothing: the loss
    ``log1p(rest) - (x_y - m)`` and the gradient ``s (p - onehot(y))``, with ``p_y - 1`` as
    ``-rest / total`` where the target is the (unique) top entry, as :func:`_ce_row`.

    Every step is a loop over columns or rows, vectorized across rows (also ``log1p`` and the
    target's entries); only special rows (NaN, infinities) are redone one by one."""
    wide()
    rows, n = x.shape
    m = aux[0, :rows]
    shift = aux[1, :rows]  # the minimum first (float64), then log1p(rest)
    total = aux[2, :rows]  # the row's sum: not finite where the row may be special
    rest = aux[3, :rows]
    p_scale = aux[4, :rows]  # the Neumaier compensation first
    xy = aux[5, :rows]  # the target's logit
    ey = aux[6, :rows]
    gy = aux[7, :rows]  # the target's gradient
    scale = aux[8, :rows]
    lr = aux[9, :rows]  # the row's loss
    yb = y[r0 : r0 + rows]
    single = x.itemsize == 4
    _short._load(x, xt, m, shift, total, single)
    fast = True
    special = False
    for r in range(rows):
        special = special or not np.isfinite(total[r])
    if not single:
        for r in range(rows):
            fast = fast and (shift[r] - m[r]) >= -700.0
    _short._exp_cols(xt, et, m, single, fast)
    _short._rest(et, rest, p_scale)
    for r in range(rows):
        shift[r] = log1p_pos(rest[r])
    mode = c.row_scale_mode
    if mode == 2:
        for r in range(rows):
            scale[r] = row_scale[r0 + r]
    else:
        for r in range(rows):
            scale[r] = c.row_scale_all if mode == 1 else 1.0
    _ce_short_targets(xt, et, yb, xy, ey)
    _ce_short_rows(xy, ey, yb, m, shift, rest, scale, single, c, lr, gy, p_scale)
    if c.want_grad:
        _ce_short_grad_cols(et, ot, yb, p_scale, gy)
        _short._store(ot, grad)
    if c.want_loss:
        if c.has_sample_weight:
            for r in range(rows):
                loss[r0 + r] = lr[r] * sample_weight[r0 + r]
        else:
            for r in range(rows):
                loss[r0 + r] = lr[r]
    if special:  # NaN, +inf, all -inf: as the reference (the sweeps above computed junk)
        for r in range(rows):
            if np.isfinite(total[r]):
                continue
            kind = _short.row_kind(x[r])
            if kind < 0:
                continue
            yr = yb[r]
            if yr == c.ignore:
                if c.want_grad:
                    for j in range(n):
                        grad[r, j] = 0.0
                continue
            lrs = _ce_special(x[r], kind, yr, w, c, scale[r], grad[r] if c.want_grad else grad[0])
            if c.want_loss:
                loss[r0 + r] = lrs * sample_weight[r0 + r] if c.has_sample_weight else lrs


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _ce_short_2d(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any,
    xt: Any, et: Any, ot: Any, aux: Any, per: int, c: Any,
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    for g in prange((rows + per - 1) // per):
        wide()
        tid = numba.get_thread_id()
        r0 = g * per
        r1 = min(r0 + per, rows)
        gb = grad[r0:r1] if c.want_grad else grad
        _ce_short_block(
            x[r0:r1], y, w, sample_weight, row_scale, loss, gb, xt[tid], et[tid], ot[tid], aux[tid], r0, c
        )


@_short.strict
def _ce_short_2d_serial(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any,
    xt: Any, et: Any, ot: Any, aux: Any, per: int, c: Any,
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0]
    for r0 in range(0, rows, per):
        r1 = min(r0 + per, rows)
        gb = grad[r0:r1] if c.want_grad else grad
        _ce_short_block(
            x[r0:r1], y, w, sample_weight, row_scale, loss, gb, xt[0], et[0], ot[0], aux[0], r0, c
        )


def _short_run(x: np.ndarray, nthr: int, args: tuple[Any, ...], c: Constants) -> None:
    rows, n = x.shape
    per = max(1, min(rows, _short._BLOCK_ELEMS // n))
    xt, et, ot, aux = _short.block_scratch(nthr, n, per, x.dtype, x.dtype)
    run = _ce_short_2d if nthr > 1 else _ce_short_2d_serial
    _rows.dynamic(run, x, *args, xt, et, ot, aux, per, c)


# ---------------------------------------------------------------------------------------------
# Two classes (#15): the sigmoid form of core/_short, straight from the interleaved rows. With
# p_o the probability of the class that is not the target, the gradient row is exactly
# scale * (p_o at the other class, -p_o at the target): p_y - 1 = -p_o, without cancellation.


# Inlined in Numba's IR: as an LLVM call it exceeds the inliner's budget, and the loop over
# rows that calls it then stays scalar (measured 5x slower).
@numba.njit(error_model="numpy", inline="always", **_rows._NO_NRT)
def _ce_pair_row(a: Any, b: Any, y: Any, scale: float) -> Any:  # pragma: no cover - jitted
    """``(-log p_y, gradient at 0, gradient at 1, special)`` of the valid row ``[a, b]``."""
    wide()
    e, s, se, top, bad = _short.pair_split(a, b)
    big, small = _short.pair_probs(e, a)
    lg = log1p_pos(e)
    y_top = (y == 1) == top
    logp = (0.0 - lg) if y_top else ((s - lg) + se)
    g = scale * (small if y_top else big)
    return -logp, (-g if y == 0 else g), (g if y == 0 else -g), bad


@_short.strict
def _ce_pair_block(
    x: Any, y: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, r0: int, c: Any
) -> int:  # pragma: no cover - jitted
    """Rows ``r0 ..`` of the flat pairs ``x`` (and ``grad``, when wanted); the special rows' count."""
    wide()
    rows = x.shape[0] // 2
    per_row = c.row_scale_mode == 2
    scale_all = c.row_scale_all if c.row_scale_mode == 1 else 1.0
    nbad = 0
    for r in range(rows):
        yr = y[r0 + r]
        scale = row_scale[r0 + r] if per_row else scale_all
        lr, g0, g1, bad = _ce_pair_row(x[2 * r], x[2 * r + 1], yr, scale)
        keep = yr != c.ignore
        nbad += bad and keep
        if c.want_loss:
            lr = lr if keep else 0.0
            loss[r0 + r] = lr * sample_weight[r0 + r] if c.has_sample_weight else lr
        if c.want_grad:
            grad[2 * r] = g0 if keep else 0.0
            grad[2 * r + 1] = g1 if keep else 0.0
    return nbad


@_short.strict
def _ce_pair_fix(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, r0: int, c: Any
) -> None:  # pragma: no cover - jitted
    """The special rows (NaN, +inf, only -inf) of a block, as :func:`_ce_special` computes them."""
    wide()
    mode = c.row_scale_mode
    for r in range(x.shape[0] // 2):
        row = x[2 * r : 2 * r + 2]
        m = max(row[0], row[1])
        nan = row[0] != row[0] or row[1] != row[1]
        kind = 0 if nan else (1 if m == np.inf else (2 if m == -np.inf else -1))
        yr = y[r0 + r]
        if kind < 0 or yr == c.ignore:
            continue
        scale = row_scale[r0 + r] if mode == 2 else (c.row_scale_all if mode == 1 else 1.0)
        g = grad[2 * r : 2 * r + 2] if c.want_grad else grad[:0]
        lr = _ce_special(row, kind, yr, w, c, scale, g)
        if c.want_loss:
            loss[r0 + r] = lr * sample_weight[r0 + r] if c.has_sample_weight else lr


@_short.strict
def _ce_pair_range(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, r0: int, r1: int, c: Any
) -> None:  # pragma: no cover - jitted
    wide()
    xb = x[2 * r0 : 2 * r1]
    gb = grad[2 * r0 : 2 * r1] if c.want_grad else grad
    if _ce_pair_block(xb, y, sample_weight, row_scale, loss, gb, r0, c):
        _ce_pair_fix(xb, y, w, sample_weight, row_scale, loss, gb, r0, c)


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _ce_pair_2d(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, per: int, c: Any
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0] // 2
    for b in prange((rows + per - 1) // per):
        wide()
        r0 = b * per
        _ce_pair_range(x, y, w, sample_weight, row_scale, loss, grad, r0, min(r0 + per, rows), c)


@_short.strict
def _ce_pair_2d_serial(
    x: Any, y: Any, w: Any, sample_weight: Any, row_scale: Any, loss: Any, grad: Any, per: int, c: Any
) -> None:  # pragma: no cover - jitted
    wide()
    rows = x.shape[0] // 2
    for r0 in range(0, rows, per):
        _ce_pair_range(x, y, w, sample_weight, row_scale, loss, grad, r0, min(r0 + per, rows), c)


def _pair_run(x: np.ndarray, nthr: int, args: tuple[Any, ...], c: Constants) -> None:
    y, w, weights, scales, loss, grad = args
    run = _ce_pair_2d if nthr > 1 else _ce_pair_2d_serial
    flat_grad = grad.reshape(-1)
    _rows.dynamic(run, x.reshape(-1), y, w, weights, scales, loss, flat_grad, _short.PAIR_ROWS, c)


# ---------------------------------------------------------------------------------------------
# Entry point: validated rows from cross_entropy.py


def fits(x: np.ndarray) -> bool:
    """Whether rows of ``x`` fit the per-thread scratch (``_rows.GROUP`` classes at most)."""
    return x.shape[-1] <= _rows.GROUP


def cross_entropy_2d(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    smoothing: float,
    sample_weight: np.ndarray | None,
    row_scale: np.ndarray | None,
    want_loss: bool,
    want_grad: bool,
    grad_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-row losses (times ``sample_weight``) and gradients (times ``row_scale``) of validated rows.

    ``x`` (R, C) NumPy float32/float64 logits that :func:`fits`; ``target`` (R,) integer class indices in
    [0, C) or equal to ``ignore_index``; ``weight`` (C,) or None; ``sample_weight`` (R,) or
    None; ``row_scale`` (R,), 0-d or None. Returns ``(loss_rows, grad)`` as the reference's
    ``_reference_rows``: float64 losses, the gradient in ``x``'s dtype, written into
    ``grad_out`` when given (C-contiguous, ``x``'s shape and dtype; it may be ``x`` itself).
    """
    x = np.ascontiguousarray(x)
    rows, n = x.shape
    nthr = numba.get_num_threads() if x.size >= _rows.PARALLEL_MIN else 1
    per, wl, sl = _rows.layout(rows, n, nthr)
    work = _rows.scratch("work", nthr, wl, np.float64)
    stage = _rows.scratch("stage", nthr, sl, x.dtype)
    w = np.ones(1) if weight is None else np.ascontiguousarray(weight, dtype=np.float64)
    weights = np.ones(1) if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)
    if row_scale is None:
        scales, mode, scale_all = np.ones(1), 0, 1.0
    elif row_scale.ndim == 0:
        scales, mode, scale_all = np.ones(1), 1, float(row_scale)
    else:
        scales, mode, scale_all = np.ascontiguousarray(row_scale, dtype=np.float64), 2, 1.0
    loss = np.empty(rows if want_loss else 1, dtype=np.float64)
    grad = np.empty((1, 1), x.dtype)
    if want_grad:
        grad = grad_out if grad_out is not None else np.empty_like(x)
    c = Constants(
        eps=float(smoothing),
        sum_w=float(np.sum(w)) if weight is not None else float(n),
        ignore=int(ignore_index),
        row_scale_mode=mode,
        row_scale_all=scale_all,
        has_w=weight is not None,
        has_sample_weight=sample_weight is not None,
        want_loss=bool(want_loss),
        want_grad=bool(want_grad),
        nt=bool(want_grad) and _rows.streaming(grad, x),
    )
    y = np.ascontiguousarray(target, dtype=np.int64)
    if weight is not None and smoothing == 0.0 and not np.all(w):
        # a row whose class weighs 0 has no target mass: outside the loss like an ignored row
        # (gradient 0 also at NaN logits, as the reference's a == 0)
        massless = (w[np.clip(y, 0, n - 1)] == 0) & (y >= 0) & (y < n)
        y = np.where(massless, np.int64(ignore_index), y)
    if n == 2 and weight is None and smoothing == 0.0:
        _pair_run(x, nthr, (y, w, weights, scales, loss, grad), c)
        return (loss if want_loss else None), (grad if want_grad else None)
    if n <= _short.SHORT_MAX and weight is None and smoothing == 0.0:
        _short_run(x, nthr, (y, w, weights, scales, loss, grad), c._replace(nt=False))
        return (loss if want_loss else None), (grad if want_grad else None)
    run = _ce_2d if nthr > 1 else _ce_2d_serial
    _rows.dynamic(run, x, y, w, weights, scales, loss, grad, work, stage, per, c)
    return (loss if want_loss else None), (grad if want_grad else None)
