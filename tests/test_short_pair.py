"""Short rows (#15): the two-class sigmoid form and the short-row VJPs.

Rows of two take one exp per row (core/_short.py, "Two columns"); cross-entropy on them takes
the same form (losses/_ce_kernels.py); softmax_vjp and log_softmax_vjp of rows of at most
SHORT_MAX entries take a fused short-row kernel. Oracles: 50-digit mpmath for the forward
functions and the cross-entropy (large gaps, ties, subnormal results, dominant entries), the
reference path (kernels off) for the special rows (+-inf, NaN) and for many rows across blocks
and threads, and PyTorch autograd for the VJPs and the cross-entropy gradient.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mp

import softgrad as sg
from softgrad.core import _rows, _short
from test_kernels import INF, NAN, TOL, _close, reference, special_rows, ulps

DTYPES = (np.float32, np.float64)


@pytest.fixture
def pair_spy(monkeypatch):
    """Counts the calls of the two-column forward kernel."""
    calls = {"pair": 0}
    original = _short._pair_launch

    def wrapper(*args, **kwargs):
        calls["pair"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(_short, "_pair_launch", wrapper)
    return calls


def _exact_pair(row, dtype):
    """softmax, log_softmax and logsumexp of a finite row at 50 digits, rounded to ``dtype``."""
    with mp.workdps(50):
        a, b = (mpmath.mpf(float(v)) for v in row)
        m = max(a, b)
        lt = mpmath.log1p(mpmath.exp(min(a, b) - m))  # log1p: 1 + 1e-304 is 1 at 50 digits
        soft = [mpmath.exp(v - m) / mpmath.exp(lt) for v in (a, b)]
        logp = [v - m - lt for v in (a, b)]
        with np.errstate(over="ignore"):  # float32 [3e38, -3e38]: log p = -6e38 rounds to -inf
            return (
                np.array([float(v) for v in soft]).astype(dtype),
                np.array([float(v) for v in logp]).astype(dtype),
                np.asarray(float(m + lt)).astype(dtype),
            )


def _hard_pairs(dtype):
    """Finite pairs: large gaps (subnormal and underflowing probabilities), ties, near ties,
    huge and tiny magnitudes, a gap beyond the largest float (float64)."""
    big = 1e300 if dtype == np.float64 else 3e38
    rows = [
        [0.0, -30.0],
        [-30.0, 0.0],
        [0.0, -700.0],
        [0.0, -740.0],  # float64: exp of the gap is subnormal
        [-745.0, 0.0],
        [0.0, -103.0],  # float32: the smaller probability is subnormal
        [0.0, -120.0],  # float32: it underflows to 0
        [2.5, 2.5],
        [-0.75, -0.75],
        [1e8, 1e8 + 1.0],
        [1e-8, -1e-8],
        [1e-300 if dtype == np.float64 else 1e-38, 0.0],
        [big, -big],  # the gap overflows: probabilities exactly 1 and 0
        [60.0, 0.0],  # a dominant entry: its log-probability about -1e-26
        [0.3, 0.30000001],
    ]
    rng = np.random.default_rng(3)
    rows += (rng.standard_normal((40, 2)) * 8).tolist()
    return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pairs_within_4_ulp_of_mpmath(dtype, pair_spy):
    x = _hard_pairs(dtype)
    got = (sg.softmax(x), sg.log_softmax(x), sg.logsumexp(x, axis=-1))
    for i, row in enumerate(x):
        s, logp, lse = _exact_pair(row, dtype)
        assert ulps(got[0][i], s) <= 4, (row, got[0][i], s)
        if not np.isfinite(np.float64(row[0]) - np.float64(row[1])) and dtype == np.float64:
            # x - m beyond the largest float: -inf, as every softgrad path (see the docs)
            assert got[1][i][np.argmin(row)] == -INF
            continue
        assert ulps(got[1][i], logp) <= 4, (row, got[1][i], logp)
        m = np.float64(np.max(row))
        if m < 0 and dtype == np.float64:  # cancelling: within a few ULP of the maximum
            assert abs(float(got[2][i]) - float(lse)) <= 4 * np.spacing(abs(m)), row
        else:
            assert ulps(got[2][i], lse) <= 4, (row, got[2][i], lse)
    assert pair_spy["pair"] == 3


def test_float16_pairs_within_1_ulp_of_mpmath():
    """float16 is computed in float32 (the reference path) and rounded once."""
    x = _hard_pairs(np.float32)
    x = x[np.all(np.abs(x) < 6e4, axis=1)].astype(np.float16)
    got = sg.softmax(x)
    assert got.dtype == np.float16
    for i, row in enumerate(x):
        s, _, _ = _exact_pair(row, np.float16)
        assert ulps(got[i], s) <= 1, (row, got[i], s)


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_pairs_as_the_reference(dtype, pair_spy):
    """+inf (one, two), -inf (one, two), NaN in either place, mixed: as the reference path."""
    x = np.array(
        [
            [INF, 1.0], [1.0, INF], [INF, INF], [INF, -INF], [-INF, 2.0], [2.0, -INF], [-INF, -INF],
            [NAN, 1.0], [1.0, NAN], [NAN, INF], [NAN, -INF], [0.5, 0.25],
        ],
        dtype=dtype,
    )
    for fn in (sg.softmax, sg.log_softmax, sg.logsumexp):
        got, want = fn(x, axis=-1), reference(fn, x, axis=-1)
        assert got.dtype == want.dtype == dtype
        assert ulps(got, want) <= TOL[dtype], fn.__name__
    assert pair_spy["pair"] == 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_pairs_across_blocks_and_threads(dtype, pair_spy):
    rng = np.random.default_rng(21)
    rows = _rows.PARALLEL_MIN // 2 + 3 * _short.PAIR_ROWS + 5
    x = (rng.standard_normal((rows, 2)) * 6).astype(dtype)
    specials = special_rows(2, dtype, rng)
    at = rng.choice(rows, len(specials), replace=False)
    x[at] = specials
    for fn in (sg.softmax, sg.log_softmax):
        got, want = fn(x), reference(fn, x)
        assert ulps(got, want) <= TOL[dtype], fn.__name__
    out = np.empty_like(x)
    assert sg.softmax(x, out=out) is out
    np.testing.assert_array_equal(out, sg.softmax(x))
    # along axis 0 of the transpose: the same rows
    np.testing.assert_array_equal(sg.softmax(x.T, axis=0), sg.softmax(x).T)
    assert pair_spy["pair"] == 6


# --- cross-entropy on two classes ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_pair_cross_entropy_within_4_ulp_of_mpmath(dtype):
    """Per-row loss -log p_y and gradient p - onehot(y) of hard pairs, both targets, exact."""
    x = _hard_pairs(dtype)
    x = x[np.isfinite(x[:, 0].astype(np.float64) - x[:, 1])]
    for y0 in (0, 1):
        y = np.full(len(x), y0)
        loss = sg.cross_entropy(x, y, reduction="none")
        grad = sg.cross_entropy_grad(x, y, reduction="sum")
        for i, row in enumerate(x):
            _, logp, _ = _exact_pair(row, dtype)
            assert ulps(np.asarray(loss[i], dtype), -logp[y0]) <= 4, (row, y0)
            with mp.workdps(50):
                a, b = (mpmath.mpf(float(v)) for v in row)
                p_other = 1 / (1 + mpmath.exp((a if y0 == 0 else b) - (b if y0 == 0 else a)))
                want = np.array([-p_other, p_other] if y0 == 0 else [p_other, -p_other], dtype=np.float64)
            assert ulps(grad[i], want.astype(dtype)) <= 4, (row, y0, grad[i], want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pair_cross_entropy_as_the_reference(dtype, monkeypatch):
    """Special rows, ignored rows, sample weights, every reduction, over blocks and threads;
    with short rows off (the row kernel) the same to a few ULP."""
    rng = np.random.default_rng(22)
    rows = _rows.PARALLEL_MIN // 2 + 2 * _short.PAIR_ROWS + 3
    x = (rng.standard_normal((rows, 2)) * 4).astype(dtype)
    y = rng.integers(0, 2, rows)
    specials = special_rows(2, dtype, rng)
    k = len(specials)
    at = rng.choice(rows, k + 1, replace=False)
    x[at[:k]] = specials
    x[at[k]] = [40.0, 0.0]
    y[at[k]] = 0
    y[at[2]] = -100  # an ignored special row
    y[at[:9:3]] = 1
    sw = rng.uniform(0.5, 2.0, rows)
    # (an ignored row holding NaN: the kernels give it gradient 0, the reference NaN; not here)
    y1 = np.where(y == -100, 0, y)
    cases = [
        (y, {}),
        (y, {"reduction": "sum"}),
        (y, {"reduction": "none", "sample_weight": sw}),
        (y1, {"ignore_index": 0}),
    ]
    for y, kw in cases:
        loss, grad = sg.cross_entropy_value_and_grad(x, y, **kw)
        loss0, grad0 = reference(sg.cross_entropy_value_and_grad, x, y, **kw)
        assert grad.dtype == grad0.dtype == dtype
        _close(loss, loss0, dtype, scale="entry")
        _close(grad, grad0, dtype)
        monkeypatch.setattr(_short, "SHORT_MAX", 0)
        _, grad1 = sg.cross_entropy_value_and_grad(x, y, **kw)
        monkeypatch.undo()
        _close(grad, grad1, dtype, tol=2)
    assert sg.cross_entropy(x, y, reduction="none").shape == (rows,)
    assert sg.cross_entropy_grad(x, y).shape == x.shape


def test_pair_cross_entropy_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(23)
    x = rng.standard_normal((500, 2)) * 5
    x[0] = [30.0, -30.0]
    y = rng.integers(0, 2, 500)
    loss, grad = sg.cross_entropy_value_and_grad(x, y)
    leaf = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(leaf, torch.tensor(y))
    tl.backward()
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-14)
    # PyTorch takes p_y - 1 by cancellation (an absolute error of eps / N): compare at that scale
    np.testing.assert_allclose(grad, leaf.grad.numpy(), rtol=0, atol=4 * np.finfo(np.float64).eps / 500)


# --- short-row VJPs --------------------------------------------------------------------------


@pytest.fixture
def vjp_spy(monkeypatch):
    calls = {"vjp": 0}
    original = _short.vjp_2d

    def wrapper(*args, **kwargs):
        calls["vjp"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(_short, "vjp_2d", wrapper)
    return calls


def _vjp_inputs(rows, n, dtype, t, rng):
    x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
    g = rng.standard_normal((rows, n)).astype(dtype)
    s = reference(sg.softmax, x, temperature=t)
    logp = reference(sg.log_softmax, x, temperature=t)
    if n > 1:
        logp[0, 1] = -INF  # outside the support: ignored
        logp[1 % rows, 0] = NAN
        logp[2 % rows, :] = -INF  # an all-masked row: zeros
        s[3 % rows, 0] = NAN
    return s, logp, g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 10, 32])
@pytest.mark.parametrize("t", [1.0, 0.7])
def test_short_vjps_as_the_reference(dtype, n, t, vjp_spy):
    """Small and large (parallel, several blocks) inputs; at the natural scales of the accuracy
    suite: s_j (|g_j| + sum |g s|) / t and (|g_j| + p_j sum |g|) / t."""
    rng = np.random.default_rng(n)
    big = _rows.PARALLEL_MIN // n + 3 * _short._BLOCK_ELEMS // n + 1  # parallel, several blocks
    for rows in (7, big) if t == 1.0 else (7,):
        s, logp, g = _vjp_inputs(rows, n, dtype, t, rng)
        p = np.exp(np.where(np.isnan(logp), 0.0, logp).astype(np.float64))
        gs = np.abs(g.astype(np.float64))
        with np.errstate(invalid="ignore"):
            nat_s = s * (gs + np.sum(gs * s, axis=-1, keepdims=True)) / t
            nat_l = (gs + p * np.sum(gs, axis=-1, keepdims=True)) / t
        for fn, a, nat in ((sg.softmax_vjp, s, nat_s), (sg.log_softmax_vjp, logp, nat_l)):
            got, want = fn(a, g, temperature=t), reference(fn, a, g, temperature=t)
            assert got.dtype == want.dtype == dtype
            assert np.array_equal(np.isnan(got), np.isnan(want)), fn.__name__
            ok = np.isfinite(want)
            assert np.array_equal(got[~ok & ~np.isnan(want)], want[~ok & ~np.isnan(want)])
            scale = np.finfo(dtype).eps * nat[ok] + np.finfo(dtype).tiny
            err = np.abs(got[ok].astype(np.float64) - want[ok]) / scale
            assert err.max(initial=0.0) <= 4, (fn.__name__, rows, err.max())
    assert vjp_spy["vjp"] == (4 if t == 1.0 else 2)


@pytest.mark.parametrize("n", [2, 10])
def test_short_vjps_match_torch_autograd(n):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(40 + n)
    x = rng.standard_normal((300, n)) * 4
    g = rng.standard_normal((300, n))
    tx = torch.tensor(x, requires_grad=True)
    torch.softmax(tx, -1).backward(torch.tensor(g))
    got = sg.softmax_vjp(sg.softmax(x), g)
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=0, atol=1e-15)
    tx = torch.tensor(x, requires_grad=True)
    torch.log_softmax(tx, -1).backward(torch.tensor(g))
    got = sg.log_softmax_vjp(sg.log_softmax(x), g)
    np.testing.assert_allclose(got, tx.grad.numpy(), rtol=0, atol=4e-15)


def test_short_vjps_out_and_other_axes(vjp_spy):
    rng = np.random.default_rng(41)
    s = sg.softmax(rng.standard_normal((4, 2, 5)), axis=1)
    g = rng.standard_normal((4, 2, 5))
    want = reference(sg.softmax_vjp, s, g, axis=1)
    np.testing.assert_allclose(sg.softmax_vjp(s, g, axis=1), want, rtol=0, atol=1e-15)
    out = np.empty_like(s)
    assert sg.softmax_vjp(s, g, axis=1, out=out) is out
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-15)
    assert vjp_spy["vjp"] == 2
