"""The fused Numba kernels against the reference path, which is their oracle.

Every kernel runs on float32 and float64 and on each shape class (one column, tiny rows,
ordinary rows, rows of 10^6, rows longer than the scratch, non-contiguous input, other axes,
masks, +-inf, NaN, temperature, out=) and is compared with the same call under
``softgrad.config.kernels(False)``. The reference is itself checked against mpmath, PyTorch and
SciPy elsewhere (test_core_accuracy.py, test_core_derivatives.py); the kernels' own accuracy
contract (4 ULP of the exact value) is checked here on adversarial rows with mpmath too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import mpmath
import numpy as np
import pytest
from mpmath import mp

import softgrad as sg
from softgrad.core import _kernels, _rows
from softgrad.losses import _ce_kernels

DTYPES = (np.float32, np.float64)
INF, NAN = np.inf, np.nan
# Largest distance allowed between kernel and reference, in ULP. float32: both round a float64
# computation once, so they differ only next to a tie. float64: each is within a few ULP of the
# exact value (4 is the contract, measured against mpmath below and in test_core_accuracy.py),
# in different directions at worst.
TOL = {np.float32: 1, np.float64: 6}


def reference(fn, *args, **kwargs):
    with sg.config.kernels(False):
        return fn(*args, **kwargs)


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance in floats of ``a``'s dtype between ``a`` and ``b`` (NaN == NaN, inf == inf)."""
    a, b = np.asarray(a), np.asarray(b, dtype=np.asarray(a).dtype)
    assert np.array_equal(np.isnan(a), np.isnan(b)), (a, b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    ints = {4: np.int32, 8: np.int64}[a.dtype.itemsize]

    def ordinal(v):
        i = v.view(ints).astype(np.int64)
        return np.where(i < 0, -(i & np.iinfo(ints).max), i)

    return float(np.max(np.where(same, 0, np.abs(ordinal(a) - ordinal(b)))))


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls that reach each kernel entry point."""
    calls: dict[str, int] = {}
    entry_points = [
        (_kernels, name) for name in ("softmax_2d", "logsumexp_2d", "softmax_vjp_2d", "log_softmax_vjp_2d")
    ]
    for module, name in [*entry_points, (_ce_kernels, "cross_entropy_2d")]:
        original = getattr(module, name)

        def wrapper(*args, _name=name, _orig=original, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _orig(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
    return calls


def special_rows(n: int, dtype, rng) -> np.ndarray:
    """Random rows plus every special kind: +inf (one, two), all -inf, some -inf, NaN, ties, and
    a regular row whose sum overflows (the short kernels look twice at rows with a non-finite sum)."""
    x = (rng.standard_normal((10, n)) * 4).astype(dtype)
    x[1, 0] = INF
    x[2, :] = -INF
    x[3, n // 2] = NAN
    x[4, ::2] = -INF
    x[4, 0] = 1.0
    x[5, :] = 2.5  # all tied
    x[6, :] = x[6, :] * 100  # wide spread: subnormal and underflowing probabilities
    x[7, 0] = 1e4  # one dominant entry
    if n > 1:
        x[1, -1] = INF
        x[8, : n // 2] = -1e30 if dtype == np.float32 else -1e300  # beyond exp's range
    x[9, :] = np.finfo(dtype).max
    x[9, 0] = np.finfo(dtype).max / 2
    return x


SHAPES = [(5, 1), (7, 2), (6, 3), (4, 5), (3, 31), (2, 1000), (1, 70_000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 40_000])
def test_forward_family_matches_reference(dtype, n, spy):
    rng = np.random.default_rng(n)
    x = special_rows(n, dtype, rng)
    for fn in (sg.softmax, sg.log_softmax, sg.logsumexp):
        got, want = fn(x), reference(fn, x)
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        assert ulps(got, want) <= TOL[dtype], (fn.__name__, ulps(got, want))
    assert spy["softmax_2d"] == 2 and spy["logsumexp_2d"] == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [0.3, 2.5])
def test_temperature(dtype, t):
    x = special_rows(40, dtype, np.random.default_rng(1))
    for fn in (sg.softmax, sg.log_softmax):
        assert ulps(fn(x, temperature=t), reference(fn, x, temperature=t)) <= TOL[dtype]


def test_float64_difference_beyond_the_largest_float_with_temperature():
    """[1e308, -1e308] / 3: the difference overflows, its third does not (halves, as the reference)."""
    x = np.array([[1e308, -1e308, 0.0]])
    for fn in (sg.softmax, sg.log_softmax):
        for t in (0.5, 3.0, 1e300):
            got, want = fn(x, temperature=t), reference(fn, x, temperature=t)
            assert ulps(got, want) <= TOL[np.float64], (fn.__name__, t, got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_of_a_million_and_rows_longer_than_the_scratch(dtype, monkeypatch):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 10**6)) * 5).astype(dtype)
    x[1, 123] = 40.0
    for fn in (sg.softmax, sg.log_softmax, sg.logsumexp):
        assert ulps(fn(x), reference(fn, x)) <= TOL[dtype]
    # the chunked path (rows longer than the work buffer) on a small scratch
    monkeypatch.setattr(_rows, "GROUP", 1000)
    y = special_rows(2500, dtype, rng)
    for fn in (sg.softmax, sg.log_softmax, sg.logsumexp):
        assert ulps(fn(y), reference(fn, y)) <= TOL[dtype], fn.__name__


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_output_uses_streaming_stores(dtype):
    """Outputs of 4 MiB and more go through non-temporal stores; unaligned starts included."""
    rng = np.random.default_rng(4)
    big = (rng.standard_normal((1500, 701)) * 3).astype(dtype)[:, 1:]  # odd, unaligned rows
    assert big.nbytes * 2 >= 1 << 22 or dtype == np.float32
    x = np.ascontiguousarray(big) if dtype == np.float64 else np.tile(big, (2, 1))
    for fn in (sg.softmax, sg.log_softmax):
        assert ulps(fn(x), reference(fn, x)) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_long_rows_stream_the_same_bits_as_plain_stores(dtype, temperature, monkeypatch):
    """Long rows (one per group) are scaled in registers and streamed a 64-byte line at a time,
    with plain stores for each row's unaligned head and tail: bit for bit what plain stores give,
    and within the contract of the reference. Also the chunked path (rows longer than the work
    buffer) and a special row."""
    rng = np.random.default_rng(12)
    n = _rows.SMALL_GROUP + 27  # rows of odd length: every row starts at another offset
    x = (rng.standard_normal((70, n)) * 4).astype(dtype)
    x[3, 5] = INF
    x[4, :100] = -INF
    assert x.nbytes >= _rows.NT_MIN_BYTES
    for group in (_rows.GROUP, 5000):
        monkeypatch.setattr(_rows, "GROUP", group)
        for fn in (sg.softmax, sg.log_softmax):
            streamed = fn(x, temperature=temperature)
            with monkeypatch.context() as m:
                m.setattr(_rows, "NT_MIN_BYTES", 1 << 62)
                plain = fn(x, temperature=temperature)
            np.testing.assert_array_equal(streamed, plain)
            assert ulps(streamed, reference(fn, x, temperature=temperature)) <= TOL[dtype], fn.__name__


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [300, 1001, _rows.SMALL_GROUP + 27])
def test_streamed_rows_give_the_same_bits_as_plain_stores(dtype, n, monkeypatch):
    """Rows of a streamed output (4 MiB and more): softmax and log_softmax rows of _LINE_ROWS
    entries and more go straight to it, a 64-byte line at a time, each row at another offset
    (odd lengths); long cross-entropy rows too, their entries at the target and at the top
    patched after the lines (short ones are gathered first); softmax_vjp rows of any length.
    With and without class weights, smoothing, ignored rows and a temperature, all hold the
    same bits as with plain stores."""
    rng = np.random.default_rng(13)
    rows = -(-(_rows.NT_MIN_BYTES + 4096) // (n * np.dtype(dtype).itemsize))
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    x[1, 7] = INF
    x[2] = -INF
    x[3, 0] = NAN
    y = rng.integers(0, n, rows)
    y[4] = -100
    w = rng.random(n) + 0.5

    s = sg.softmax(x)
    g = rng.standard_normal(x.shape).astype(dtype)

    def run():
        out = [sg.softmax(x), sg.log_softmax(x)]
        for kw in ({}, {"weight": w}, {"label_smoothing": 0.1, "reduction": "sum"}):
            out += list(sg.cross_entropy_value_and_grad(x, y, **kw))
        out += [sg.softmax_vjp(s, g), sg.softmax_vjp(s, g, temperature=0.7)]
        return out

    streamed = run()
    monkeypatch.setattr(_rows, "NT_MIN_BYTES", 1 << 62)
    for a, b in zip(streamed, run(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ulps(streamed[0], reference(sg.softmax, x)) <= TOL[dtype]
    grad = streamed[3]
    with sg.config.kernels(False):
        ref = sg.cross_entropy_grad(x, y)
    np.testing.assert_allclose(grad, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_axes_and_non_contiguous_input(dtype, spy):
    rng = np.random.default_rng(5)
    x3 = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    x3[1, :, 2] = -INF
    for axis in (0, 1, 2, -2):
        for fn in (sg.softmax, sg.log_softmax, sg.logsumexp):
            assert ulps(fn(x3, axis=axis), reference(fn, x3, axis=axis)) <= TOL[dtype]
    strided = (rng.standard_normal((6, 20)) * 3).astype(dtype)[:, ::3]
    for fn in (sg.softmax, sg.log_softmax):
        assert ulps(fn(strided), reference(fn, strided)) <= TOL[dtype]
        assert ulps(fn(strided.T, axis=0), reference(fn, strided.T, axis=0)) <= TOL[dtype]
    assert spy["softmax_2d"] >= 12


@pytest.mark.parametrize("dtype", DTYPES)
def test_masks(dtype):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((5, 8)) * 3).astype(dtype)
    x[0, 1] = NAN  # masked NaN and +inf do not count
    x[1, 2] = INF
    where = rng.random((5, 8)) > 0.3
    where[0, 1] = where[1, 2] = False
    where[2] = False  # an all-masked row
    for fn in (sg.softmax, sg.log_softmax, sg.logsumexp):
        assert ulps(fn(x, where=where), reference(fn, x, where=where)) <= TOL[dtype]
    row_mask = np.array([True, False] * 4)  # broadcast
    assert ulps(sg.softmax(x, where=row_mask), reference(sg.softmax, x, where=row_mask)) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_argument(dtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((4, 6)) * 2).astype(dtype)
    for fn in (sg.softmax, sg.log_softmax):
        out = np.full_like(x, 7.0)
        got = fn(x, out=out)
        assert got is out and ulps(out, reference(fn, x)) <= TOL[dtype]
        # non-contiguous out, other axis
        out_t = np.full((6, 4), 7.0, dtype=dtype).T
        assert fn(x, out=out_t) is out_t and ulps(out_t, reference(fn, x)) <= TOL[dtype]
        out0 = np.empty_like(x)
        assert fn(x, axis=0, out=out0) is out0 and ulps(out0, reference(fn, x, axis=0)) <= TOL[dtype]
        # in place
        y = x.copy()
        assert fn(y, out=y) is y and ulps(y, reference(fn, x)) <= TOL[dtype]
    lse = np.empty(4, dtype=dtype)
    assert sg.logsumexp(x, out=lse) is lse and ulps(lse, reference(sg.logsumexp, x)) <= TOL[dtype]
    lse_k = np.empty((4, 1), dtype=dtype)
    assert sg.logsumexp(x, keepdims=True, out=lse_k) is lse_k
    assert ulps(lse_k, reference(sg.logsumexp, x, keepdims=True)) <= TOL[dtype]
    assert isinstance(sg.logsumexp(x[0]), np.floating)  # 0-d: a NumPy scalar, as the reference


@pytest.mark.parametrize("bad", [np.empty((4, 6), np.float16), np.empty((6, 4)), [0.0] * 24])
def test_bad_out_raises_as_the_reference(bad):
    x = np.ones((4, 6), dtype=np.float32)
    with pytest.raises((TypeError, ValueError)) as fast:
        sg.softmax(x, out=bad)
    with pytest.raises(type(fast.value)):
        reference(sg.softmax, x, out=bad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [1.0, 0.7])
def test_vjps_match_reference(dtype, t, spy):
    rng = np.random.default_rng(8)
    for shape in SHAPES[:-1]:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        s = reference(sg.softmax, x, temperature=t)
        logp = reference(sg.log_softmax, x, temperature=t)
        if shape[1] > 2:
            logp[0, 1] = -INF  # outside the support: ignored
            logp[1 % shape[0], 0] = NAN
        # natural scales: s_j (|g_j| + sum |g s|) / t and (|g_j| + p_j sum |g|) / t
        p = np.exp(np.where(np.isnan(logp), 0.0, logp).astype(np.float64))
        gs = np.abs(g.astype(np.float64))
        nat_s = s * (gs + np.sum(gs * s, axis=-1, keepdims=True)) / t
        nat_l = (gs + p * np.sum(gs, axis=-1, keepdims=True)) / t
        for fn, a, nat in ((sg.softmax_vjp, s, nat_s), (sg.log_softmax_vjp, logp, nat_l)):
            got, want = fn(a, g, temperature=t), reference(fn, a, g, temperature=t)
            assert got.dtype == dtype
            assert np.array_equal(np.isnan(got), np.isnan(want))
            ok = ~np.isnan(want)
            diff = np.abs(got[ok].astype(np.float64) - want[ok])
            err = diff / (np.finfo(dtype).eps * nat[ok] + np.finfo(dtype).tiny)
            assert err.max(initial=0.0) <= 4, (fn.__name__, shape, err.max())
    assert spy["softmax_vjp_2d"] > 0 and spy["log_softmax_vjp_2d"] > 0
    x3 = rng.standard_normal((3, 4, 5)).astype(dtype)
    g3 = rng.standard_normal((3, 4, 5)).astype(dtype)
    s3 = sg.softmax(x3, axis=1)
    want3 = reference(sg.softmax_vjp, s3, g3, axis=1)
    np.testing.assert_allclose(sg.softmax_vjp(s3, g3, axis=1), want3, rtol=0, atol=8 * np.finfo(dtype).eps)
    out = np.empty_like(s3)
    assert sg.softmax_vjp(s3, g3, axis=1, out=out) is out


def test_vjps_with_mixed_dtypes_take_the_reference(spy):
    s = sg.softmax(np.ones((2, 3), np.float32))
    g = np.ones((2, 3))
    assert sg.softmax_vjp(s, g).dtype == np.float64
    assert "softmax_vjp_2d" not in spy


def test_dispatch_only_for_numpy_float32_float64(spy):
    sg.softmax(np.ones((2, 3), np.float16))
    sg.softmax(np.arange(6).reshape(2, 3))
    sg.softmax([1.0, 2.0])  # a list: the reference
    torch = pytest.importorskip("torch")
    sg.softmax(torch.ones(2, 3))
    assert "softmax_2d" not in spy
    sg.softmax(np.ones((2, 3), np.float32))
    assert spy["softmax_2d"] == 1


def test_switch_off_with_config_and_environment(spy):
    x = np.ones((2, 3))
    with sg.config.kernels(False):
        sg.softmax(x)
        sg.cross_entropy(x, np.array([0, 1]))
    assert spy == {}
    code = (
        "import numpy as np, softgrad as sg\n"
        "from softgrad.core import _dispatch\n"
        "assert not sg.config.kernels_enabled()\n"
        "assert not _dispatch.applies(np.ones((2, 3)))\n"
    )
    env = dict(os.environ, SOFTGRAD_DISABLE_KERNELS="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_empty_input_takes_the_reference(spy):
    assert sg.softmax(np.ones((0, 3))).shape == (0, 3)
    assert "softmax_2d" not in spy


def test_concurrent_calls_from_python_threads():
    """The kernels release the GIL; each Python thread has its own scratch."""
    rng = np.random.default_rng(10)
    xs = [(rng.standard_normal((64, 3000)) * 3).astype(np.float32) for _ in range(4)]
    want = [reference(sg.softmax, x) for x in xs]
    got: list = [None] * 4

    def work(i):
        for _ in range(3):
            got[i] = sg.softmax(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for g, w in zip(got, want, strict=True):
        assert ulps(g, w) <= TOL[np.float32]


# --- accuracy of the fast path against mpmath -----------------------------------------------


def _exact_family(row, dtype):
    with mp.workdps(50):
        xs = [mpmath.mpf(float(v)) for v in row]
        m = max(xs)
        k = xs.index(m)
        es = [mpmath.exp(v - m) for v in xs]
        rest = mpmath.fsum(es[:k] + es[k + 1 :])
        lt = mpmath.log1p(rest)
        soft = [e / (1 + rest) for e in es]
        logp = [(v - m) - lt for v in xs]
        return (
            np.array([float(v) for v in soft]).astype(dtype),
            np.array([float(v) for v in logp]).astype(dtype),
            np.array(float(m + lt)).astype(dtype),
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_within_4_ulp_of_mpmath_on_adversarial_rows(dtype, spy):
    rows = [
        [0.0, -30.0],  # log1p(e^-30)
        [0.0, -100.0, -5.0],  # softmax below the float32 normal range
        [3.0, 3.0, 3.0, -700.0],
        [1e8, 1e8 + 1.0, 1e8 - 3.0],
        [-0.75, -0.75],
        [20.0] + [0.0] * 999,  # one dominant entry
        [1e-8, 0.0, -1e-8],
        list(np.linspace(-40.0, 0.0, 257)),
    ]
    for row in rows:
        x = np.array(row, dtype=dtype)
        s, logp, lse = _exact_family(x, dtype)  # references rounded via float64: +-1 ULP slack
        assert ulps(sg.softmax(x), s) <= 4, row[:3]
        assert ulps(sg.log_softmax(x), logp) <= 4, row[:3]
        if not (dtype == np.float64 and row[0] < 0):  # cancelling float64 logsumexp: see accuracy suite
            assert ulps(sg.logsumexp(x), lse) <= 4, row[:3]
    assert spy["softmax_2d"] == 2 * len(rows)


# --- cross-entropy ------------------------------------------------------------------------------


def _ce_cases(dtype, rng):
    for rows, c in [(6, 1), (9, 2), (9, 7), (9, 300), (3, 20_000)]:
        x = (rng.standard_normal((rows, c)) * 4).astype(dtype)
        y = rng.integers(0, c, rows)
        if rows >= 9:
            x[0, y[0]] = 40.0  # confident and right: p_y - 1 from the mass off the top
            x[1, :] = -INF
            x[2, 0] = INF
            x[3, 0] = NAN
            x[4, -1] = INF
            x[4, 0] = INF
            y[5] = -100  # ignored
            x[6, :] = 3.0  # ties
            x[7, (y[7] + 1) % c] = 40.0  # confident and wrong
        yield x, y


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_reference(dtype, spy):
    rng = np.random.default_rng(11)
    n_cases = 0
    for x, y in _ce_cases(dtype, rng):
        c = x.shape[1]
        weights = [None, rng.uniform(0.2, 2.0, c)]
        for w in weights:
            for eps in (0.0, 0.1):
                sw_rows = rng.uniform(0.5, 2, len(y))
                for red, sw in (("mean", None), ("sum", None), ("none", None), ("mean", sw_rows)):
                    kw = dict(weight=w, label_smoothing=eps, reduction=red, sample_weight=sw)
                    loss, grad = sg.cross_entropy_value_and_grad(x, y, **kw)
                    loss0, grad0 = reference(sg.cross_entropy_value_and_grad, x, y, **kw)
                    assert grad.dtype == grad0.dtype == dtype
                    assert np.shape(loss) == np.shape(loss0)
                    _close(loss, loss0, dtype, scale="entry")
                    _close(grad, grad0, dtype)
                    n_cases += 1
    assert spy["cross_entropy_2d"] == n_cases


def _close(got, want, dtype, tol=8, scale="row"):
    """Equal NaN/inf pattern; finite entries within ``tol`` eps of a natural scale.

    ``scale``: "row" measures each entry against the largest of its row (last axis), the scale
    of a gradient row whose entries cancel (a p_j - q_j, s_j (g_j - s.g)); "all" against the
    largest entry of the array; "entry" against the entry itself (losses).
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), (got, want)
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf])
    finite = np.where(np.isfinite(want), want, 0.0)
    if scale == "entry" or finite.ndim == 0:
        ref = np.abs(finite)
    elif scale == "row":
        ref = np.broadcast_to(np.max(np.abs(finite), axis=-1, keepdims=True), finite.shape)
    else:
        ref = np.full(finite.shape, np.max(np.abs(finite)))
    ok = np.isfinite(want)
    err = np.abs(got[ok] - want[ok]) / (np.maximum(ref[ok], np.finfo(dtype).tiny) * np.finfo(dtype).eps)
    assert err.max(initial=0.0) <= tol, err.max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_other_entry_points_and_ignore_index_inside_classes(dtype, spy):
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((3, 8, 5)) * 3).astype(dtype)
    y = rng.integers(0, 8, (3, 5))
    y[0, 0] = 2
    for fn in (sg.cross_entropy, sg.cross_entropy_grad):
        for kw in ({"axis": 1}, {"axis": 1, "ignore_index": 2, "label_smoothing": 0.2}):
            _close(fn(x, y, **kw), reference(fn, x, y, **kw), dtype)
    assert spy["cross_entropy_2d"] == 4


def test_cross_entropy_confident_gradient_keeps_its_digits():
    """float32 [20, 0, 0, 0] target 0: entry 0 is -3e^-20/(1 + 3e^-20), not 0 (cancellation)."""
    g = sg.cross_entropy_grad(np.float32([20.0, 0.0, 0.0, 0.0]), 0)
    with mp.workdps(30):
        e = 3 * mpmath.exp(-20)
        want = np.float32(float(-e / (1 + e)))
    assert ulps(g[0], want) <= 2


def test_cross_entropy_probability_targets_take_the_reference(spy):
    x = np.random.default_rng(13).standard_normal((4, 3))
    t = sg.softmax(np.ones((4, 3)))
    sg.cross_entropy(x, t)
    assert "cross_entropy_2d" not in spy


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_cross_entropy_chunks_match_reference(dtype, spy):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((37, 16)).astype(dtype)
    W = (rng.standard_normal((50, 16)) * 0.5).astype(dtype)
    b = rng.standard_normal(50).astype(dtype)
    y = rng.integers(0, 50, 37)
    y[3] = -100
    kw = dict(label_smoothing=0.05, chunk_size=10, return_grad=True)
    loss, grads = sg.linear_cross_entropy(x, W, y, b, **kw)
    loss0, grads0 = reference(sg.linear_cross_entropy, x, W, y, b, **kw)
    tol = 64 if dtype == np.float32 else 8  # the float32 products run in float32 BLAS
    _close(loss, loss0, dtype, tol, scale="entry")
    for a, a0 in zip(grads, grads0, strict=True):
        _close(a, a0, dtype, tol, scale="all")  # products of gradients that cancel: norm-wise
    assert spy["cross_entropy_2d"] == 4  # one call per chunk


# --- the benchmark command ----------------------------------------------------------------------


def test_bench_quick_smoke(tmp_path, capsys):
    """``softgrad bench --quick`` runs, prints its table and goals, and writes the same as JSON."""
    import json

    from softgrad.interfaces.cli import main

    path = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--repeat", "1", "--only", "softmax,cross_entropy", "--json", str(path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "np.copyto" in printed and "issue #5 goals" in printed
    report = json.loads(path.read_text())
    names = {(r["function"], r["implementation"]) for r in report["results"]}
    assert {("copy", "np.copyto"), ("softmax", "softgrad"), ("cross_entropy", "softgrad")} <= names
    assert ("softmax", "scipy.special") in names and ("softmax", "numpy max-shift out=") in names
    assert all(r["ms"] > 0 for r in report["results"])
    assert report["goals"] and "first_softmax_float32_s" in report["first_call"]


def test_bench_round_robin_gives_every_implementation_every_round(tmp_path, monkeypatch):
    """The per-shape implementations take turns (np.copyto in each function's rounds), and the
    linear_cross_entropy subprocesses alternate over rounds that share the timed calls."""
    import json

    from softgrad.interfaces import bench
    from softgrad.interfaces.cli import main

    order: list[str] = []
    fake = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    times = bench._round_robin_ms(fake, 3, lambda msg: None, "f")
    assert order == ["a", "b"] * 4 and [len(v) for v in times.values()] == [3, 3]  # warm-up + 3 rounds

    children: list[str] = []
    real_run = bench.subprocess.run

    def spy(cmd, **kw):
        if cmd[3:4] == [str(bench._CHILDREN / "linear.py")]:  # the child module, run by path
            children.append(cmd[4])  # the implementation
        return real_run(cmd, **kw)

    monkeypatch.setattr(bench.subprocess, "run", spy)
    path = tmp_path / "bench.json"
    code = main(["bench", "--quick", "--repeat", "2", "--only", "linear_cross_entropy", "--json", str(path)])
    assert code == 0
    impls = ["softgrad", "softgrad"] + (["torch"] if bench._optional("torch") is not None else [])
    assert children[: 2 * len(impls)] == impls * 2  # two rounds, taking turns
    report = json.loads(path.read_text())
    lin = [r for r in report["results"] if r["function"] == "linear_cross_entropy"]
    assert len(lin) == len(impls) and all(len(r["times_ms"]) == 2 and r["peak_mb"] >= 0 for r in lin)


def test_bench_bad_options(capsys):
    from softgrad.interfaces.cli import main

    assert main(["bench", "--quick", "--only", "nonsense"]) == 2
    assert "unknown function 'nonsense'" in capsys.readouterr().err
    assert main(["bench", "--quick", "--repeat", "0"]) == 2


def test_cached_kernels_go_stale_when_any_kernel_file_changes():
    """Numba stamps a cached function with its own file only; the kernels call the row machinery
    of _rows.py and the intrinsics of _fastexp.py, _transpose.py and _ffi_native.py, so every
    kernel's stamp covers every kernel file (an edit to any of them must recompile them all)."""
    import hashlib
    from pathlib import Path

    from softgrad.core import _fastexp

    digest = hashlib.sha256()
    for path in _fastexp._KERNEL_SOURCES:
        with open(path, "rb") as f:
            digest.update(f.read())
    for kernel in (_kernels._softmax_2d, _rows.classify, _ce_kernels._ce_2d, _ce_kernels._ce_row):
        locator = kernel._cache._impl.locator
        assert isinstance(locator, _fastexp._KernelSourcesLocator)
        assert locator.get_source_stamp() == digest.hexdigest()
    package = Path(sg.__file__).parent
    jitted = {  # every file that compiles code with Numba, found by reading the sources
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "numba" in path.read_text()
        and any(mark in path.read_text() for mark in ("@strict", "njit", "intrinsic("))
    }
    assert {str(Path(p).relative_to(package)) for p in _fastexp._KERNEL_SOURCES} == jitted
    assert jitted == {
        "core/_fastexp.py", "core/_rows.py", "core/_kernels.py", "core/_short.py", "core/_transpose.py",
        "losses/_ce_kernels.py", "models/_data_kernels.py", "losses/_jax_ffi.py", "losses/_ffi_native.py",
    }


# --- short rows (#15): blocks of rows transposed, vectorized across rows ------------------------


@pytest.fixture
def short_spy(monkeypatch):
    from softgrad.core import _short

    calls: dict[str, int] = {}
    for name in ("softmax_2d", "logsumexp_2d"):
        original = getattr(_short, name)

        def wrapper(*args, _name=name, _orig=original, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _orig(*args, **kwargs)

        monkeypatch.setattr(_short, name, wrapper)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 8, 9, 10, 17, 32])
def test_short_rows_take_the_short_kernel_and_match_the_reference(dtype, n, short_spy, monkeypatch):
    """Many rows (several blocks, both threads) with every special kind scattered among them."""
    from softgrad.core import _short

    rng = np.random.default_rng(100 + n)
    rows = max(3 * _short._BLOCK_ELEMS // n, _rows.PARALLEL_MIN // n + 7)
    x = (rng.standard_normal((rows, n)) * 6).astype(dtype)
    specials = special_rows(n, dtype, rng)
    at = rng.choice(rows, size=specials.shape[0], replace=False)
    x[at] = specials
    for fn in (sg.softmax, sg.log_softmax):
        got, want = fn(x), reference(fn, x)
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        assert ulps(got, want) <= TOL[dtype], (fn.__name__, ulps(got, want))
    # logsumexp near 0 cancels (m + log1p(rest), m < 0): there the reference and the kernels
    # differ by thousands of ULP in float64 (see test_core_accuracy.py); compare with the row
    # kernel, which computes the same m and log1p(rest) (checked against mpmath above), at the
    # scale of the two terms (the short kernels' log1p is not libm's: each within about 1 ULP).
    got = sg.logsumexp(x)
    monkeypatch.setattr(_short, "applies", lambda n, t: False)
    rows_kernel = sg.logsumexp(x)
    assert got.dtype == rows_kernel.dtype == dtype
    assert np.array_equal(np.isnan(got), np.isnan(rows_kernel))
    ok = np.isfinite(rows_kernel)
    assert np.array_equal(got[~ok & ~np.isnan(got)], rows_kernel[~ok & ~np.isnan(got)])
    m = np.max(x, axis=-1).astype(np.float64)[ok]
    scale = np.abs(m) + np.abs(rows_kernel[ok] - m)
    err = np.abs(got[ok].astype(np.float64) - rows_kernel[ok]) / (np.finfo(dtype).eps * scale)
    assert err.max(initial=0.0) <= 2, err.max()
    assert short_spy == {"softmax_2d": 2, "logsumexp_2d": 1}


def test_long_rows_and_temperatures_keep_the_row_kernels(short_spy):
    from softgrad.core import _short

    x = np.random.default_rng(0).standard_normal((50, _short.SHORT_MAX + 1))
    sg.softmax(x)
    sg.softmax(x[:, :8], temperature=0.5)
    assert short_spy == {}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 10, 32])
def test_short_rows_within_4_ulp_of_mpmath(dtype, n):
    """Random short rows (ties, small spreads, dominant entries) against 50-digit mpmath."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((40, n)) * 8).astype(dtype)
    x[::5] *= 1e-4
    x[1::5, 0] = x[1::5, -1]  # ties
    x[2::5, 0] = 60.0  # one dominant entry: log_softmax of it about -1e-26
    for i in range(x.shape[0]):
        s, logp, lse = _exact_family(x[i], dtype)
        got = (sg.softmax(x), sg.log_softmax(x), sg.logsumexp(x, axis=-1))
        assert ulps(got[0][i], s) <= 4 and ulps(got[1][i], logp) <= 4
        if dtype == np.float32 or x[i].max() >= 0:  # cancelling float64 lse: accuracy suite
            assert ulps(got[2][i], lse) <= 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [2, 5, 10, 32])
def test_short_rows_cross_entropy_over_many_blocks(dtype, n, monkeypatch):
    """The short-row cross-entropy (no class weights, no smoothing) over several blocks and both
    threads, with specials and ignored rows scattered, against the reference; and the same
    call with short rows off (the row kernel) for the top-1 gradient's digits."""
    from softgrad.core import _short

    rng = np.random.default_rng(7 + n)
    rows = _rows.PARALLEL_MIN // n + 11
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    y = rng.integers(0, n, rows)
    at = rng.choice(rows, size=9, replace=False)
    x[at[0], y[at[0]]] = 40.0  # confident and right: p_y - 1 = -rest / total
    x[at[1], :] = -INF
    x[at[2], 0] = INF
    x[at[3], 0] = NAN
    x[at[4], :] = 3.0
    y[at[5]] = -100
    x[at[6], 0] = NAN  # ignored and special: gradient 0, loss 0
    y[at[6]] = -100
    x[at[7], 0] = INF
    y[at[7]] = -100
    x[at[8], :] = np.finfo(dtype).max  # regular, but its sum overflows
    sw = rng.uniform(0.5, 2.0, rows)
    # (ignore_index 1 is a class: rows of class 1 leave the loss)
    y_class_ignored = np.where(y == -100, 1, y)
    for kw in ({"reduction": "sum"}, {"reduction": "none", "sample_weight": sw}, {"ignore_index": 1}):
        y = y_class_ignored if "ignore_index" in kw else y
        loss, grad = sg.cross_entropy_value_and_grad(x, y, **kw)
        loss0, grad0 = reference(sg.cross_entropy_value_and_grad, x, y, **kw)
        _close(loss, loss0, dtype, scale="entry")
        _close(grad, grad0, dtype)
        monkeypatch.setattr(_short, "SHORT_MAX", 0)
        loss1, grad1 = sg.cross_entropy_value_and_grad(x, y, **kw)
        monkeypatch.undo()
        assert ulps(grad[at[0]], grad1[at[0]]) <= TOL[dtype]
        ignored = y == kw.get("ignore_index", -100)
        assert not np.any(grad[ignored]) and np.all(np.isfinite(grad[ignored]))
        if kw.get("reduction") == "none":
            # both within 1.3 ULP of the exact loss (below), through different log1p's
            assert ulps(loss, loss1) <= 3
            some = rng.choice(np.setdiff1d(np.arange(rows), at), size=64, replace=False)
            plain = sg.cross_entropy_value_and_grad(x, y, reduction="none")[0][some]  # short kernel
            exact = [_exact_family(x[r], np.float64)[1][y[r]] for r in some]
            assert ulps(plain, -np.array(exact).astype(dtype)) <= 2


# --- read-only input ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 10, 100])
@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_inputs_give_the_same_results(n, dtype):
    """``np.asarray`` of a JAX array, ``np.broadcast_to`` and read-only memory maps are
    read-only: the short-row and pair kernels failed to compile for them (a Numba TypingError
    from softmax of a read-only (300, 10) array)."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=(300, n)).astype(dtype)
    x[5, 0] = NAN  # special rows take the scalar routine with its own output argument
    x[6, 1] = INF
    y = np.arange(300) % n
    v = rng.normal(size=(300, n)).astype(dtype)
    frozen_x, frozen_v = x.copy(), v.copy()
    frozen_x.flags.writeable = False
    frozen_v.flags.writeable = False
    calls = [
        lambda a, b: sg.softmax(a),
        lambda a, b: sg.log_softmax(a),
        lambda a, b: sg.logsumexp(a, axis=-1),
        lambda a, b: sg.cross_entropy_value_and_grad(a, y, reduction="none")[1],
        lambda a, b: sg.cross_entropy_hvp(a, y, b),
        lambda a, b: sg.softmax_vjp(a, b),
        lambda a, b: sg.log_softmax_vjp(a, b),
    ]
    for call in calls:
        np.testing.assert_array_equal(call(frozen_x, frozen_v), call(x, v))


# --- the compensated sum of row losses ------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1000, 65539])
def test_compensated_sum_matches_fsum(size):
    """Eight interleaved Neumaier lanes, merged compensated: within 1 ULP of the exactly
    rounded sum (math.fsum) over 16 decades; non-finite entries give the plain sum's value."""
    import math

    rng = np.random.default_rng(size)
    v = rng.random(size) * 10.0 ** rng.integers(-8, 8, size)
    got, want = _rows.compensated_sum(v), math.fsum(v)
    assert abs(got - want) <= np.spacing(want)
    cancelling = np.concatenate([v, -v[::-1], [1e-3]])  # the exact sum is 1e-3
    assert abs(_rows.compensated_sum(cancelling) - 1e-3) <= 1e-3 * 1e-12
    if size:
        assert _rows.compensated_sum(np.append(v, np.inf)) == np.inf
        assert np.isnan(_rows.compensated_sum(np.append(v, [np.inf, np.nan])))
