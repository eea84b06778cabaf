"""linear_cross_entropy against the unfused computation, PyTorch autograd, and its memory bound."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import softgrad as sg

B, N, T = 11, 4, 7


def _data(seed=0, dtype=np.float64, probs=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, N)).astype(dtype)
    W = rng.normal(size=(T, N)).astype(dtype)
    b = rng.normal(size=T).astype(dtype)
    if probs:
        t = rng.random((B, T))
        y = (t / t.sum(1, keepdims=True)).astype(dtype)
    else:
        y = rng.integers(0, T, size=B)
        y[::4] = 3  # with ignore_index=3 some rows are ignored
    return x, W, b, y


def _unfused(x, W, b, y, **kw):
    z = x @ W.T + (0 if b is None else b)
    loss, g = sg.cross_entropy_value_and_grad(z, y, **kw)
    return loss, (g @ W, g.T @ x, g.sum(axis=0))


OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": np.linspace(0.5, 2.0, T), "label_smoothing": 0.2},
    {"ignore_index": 3, "weight": np.linspace(0.5, 2.0, T)},
    {"sample_weight": np.linspace(0.1, 2.0, B), "reduction": "mean", "ignore_index": 3},
    {"sample_weight": np.linspace(0.1, 2.0, B), "reduction": "none", "label_smoothing": 0.1},
]


@pytest.mark.parametrize("chunk_size", [1, 3, B, 100, None])
@pytest.mark.parametrize("opts", range(len(OPTIONS)))
@pytest.mark.parametrize("probs", [False, True])
def test_equals_unfused(chunk_size, opts, probs):
    kw = dict(OPTIONS[opts])
    if probs:
        kw.pop("ignore_index", None)
    x, W, b, y = _data(opts, probs=probs)
    loss, grads = sg.linear_cross_entropy(x, W, y, b, chunk_size=chunk_size, return_grad=True, **kw)
    loss_u, grads_u = _unfused(x, W, b, y, **kw)
    np.testing.assert_allclose(loss, loss_u, rtol=1e-13, atol=1e-15)
    for g, gu in zip(grads, grads_u, strict=True):
        np.testing.assert_allclose(g, gu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sg.linear_cross_entropy(x, W, y, b, chunk_size=chunk_size, **kw), loss_u,
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("with_b", [True, False])
def test_matches_torch_autograd(with_b):
    torch = pytest.importorskip("torch")
    x, W, b, y = _data(3)
    b = b if with_b else np.zeros(T)
    w = np.linspace(0.5, 2.0, T)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    lt = torch.nn.functional.cross_entropy(xt @ Wt.T + bt, torch.tensor(y), weight=torch.tensor(w),
                                           label_smoothing=0.15, ignore_index=3)
    lt.backward()
    loss, (dx, dW, db) = sg.linear_cross_entropy(
        x, W, y, b if with_b else None, weight=w, label_smoothing=0.15, ignore_index=3, chunk_size=4,
        return_grad=True,
    )
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-13)
    for g, gt in ((dx, xt), (dW, Wt), (db, bt)):
        np.testing.assert_allclose(g, gt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_float32_close_to_float64():
    x, W, b, y = _data(4)
    loss64, g64 = sg.linear_cross_entropy(x, W, y, b, return_grad=True, chunk_size=5)
    loss32, g32 = sg.linear_cross_entropy(*(a.astype(np.float32) for a in (x, W)), y, b.astype(np.float32),
                                          return_grad=True, chunk_size=5)
    assert np.asarray(loss32).dtype == np.float32 and all(g.dtype == np.float32 for g in g32)
    np.testing.assert_allclose(loss32, loss64, rtol=1e-6)
    for a, e in zip(g32, g64, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_single_sample():
    x, W, b, y = _data(5)
    loss, (dx, dW, db) = sg.linear_cross_entropy(x[0], W, y[0], b, return_grad=True)
    loss_u, (dx_u, dW_u, db_u) = _unfused(x[:1], W, b, y[:1])
    assert dx.shape == (N,)
    np.testing.assert_allclose(loss, loss_u, rtol=1e-14)
    np.testing.assert_allclose(dx, dx_u[0], rtol=1e-13)
    np.testing.assert_allclose(dW, dW_u, rtol=1e-13)
    np.testing.assert_allclose(db, db_u, rtol=1e-13)


def test_peak_memory_is_one_chunk_of_logits(monkeypatch):
    """tracemalloc: the extra memory is O(chunk_size * T), far below the (B, T) logits."""
    import sys

    block = 8192  # elements per cache block of float64 temporaries (smaller than the default)
    monkeypatch.setattr(sys.modules["softgrad.losses.cross_entropy"], "_BLOCK_ELEMENTS", block)
    rng = np.random.default_rng(0)
    b_, n_, t_ = 512, 8, 2000
    x = rng.normal(size=(b_, n_)).astype(np.float32)
    W = (0.1 * rng.normal(size=(t_, n_))).astype(np.float32)
    bias = np.zeros(t_, dtype=np.float32)
    y = rng.integers(0, t_, size=b_)
    chunk = 16
    sg.linear_cross_entropy(x[:8], W, y[:8], bias, chunk_size=4, return_grad=True)  # warm up imports
    tracemalloc.start()
    try:
        loss, grads = sg.linear_cross_entropy(x, W, y, bias, chunk_size=chunk, return_grad=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = sum(g.nbytes for g in grads)
    # one chunk of float32 logits (overwritten by its gradient), about 16 float64 temporaries of
    # one cache block, per-row vectors, and a little slack for Python objects
    bound = outputs + chunk * t_ * 4 + 16 * block * 8 + 64 * b_ + 64 * 1024
    full_logits = b_ * t_ * 4
    assert peak < bound, (peak, bound)
    assert peak - outputs < full_logits / 2, (peak - outputs, full_logits)
    loss_u, grads_u = _unfused(x, W, bias, y)
    np.testing.assert_allclose(loss, loss_u, rtol=1e-6)
    np.testing.assert_allclose(grads[1], grads_u[1], rtol=1e-4, atol=1e-7)


def _numpy(a):
    if hasattr(a, "detach"):
        return a.detach().numpy()
    if hasattr(a, "compute"):
        return np.asarray(a.compute())
    return np.asarray(a)


@pytest.mark.parametrize("backend", ["torch", "jax", "dask", "array_api_strict"])
def test_backends(backend, to_backend):
    x, W, b, y = _data(6)
    sw = np.linspace(0.5, 1.5, B)
    kw = dict(label_smoothing=0.1, sample_weight=sw, chunk_size=4, return_grad=True)
    loss_e, grads_e = sg.linear_cross_entropy(x, W, y, b, **kw)
    conv = to_backend(backend, 4)
    args = [conv(a) for a in (x, W, y, b)]
    kw_b = dict(kw, sample_weight=conv(sw))
    if backend == "jax":
        def run(xx, WW, yy, bb, ss):
            return sg.linear_cross_entropy(xx, WW, yy, bb, **dict(kw_b, sample_weight=ss))

        loss, grads = pytest.importorskip("jax").jit(run)(*args, kw_b["sample_weight"])
    else:
        loss, grads = sg.linear_cross_entropy(*args, **kw_b)
    np.testing.assert_allclose(_numpy(loss), loss_e, rtol=1e-13)
    for g, e in zip(grads, grads_e, strict=True):
        np.testing.assert_allclose(_numpy(g), e, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
        (dict(chunk_size=-3), ValueError, "chunk_size"),
        (dict(chunk_size=2.5), TypeError, "chunk_size"),
        (dict(chunk_size=True), TypeError, "chunk_size"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(label_smoothing=2.0), ValueError, "label_smoothing"),
        (dict(weight=np.ones(3)), ValueError, "weight must have shape"),
        (dict(return_grad="yes"), TypeError, "return_grad"),
    ],
)
def test_bad_options(kwargs, exc, match):
    x, W, b, y = _data(0)
    with pytest.raises(exc, match=match):
        sg.linear_cross_entropy(x, W, y, b, **kwargs)


def test_bad_shapes():
    x, W, b, y = _data(0)
    with pytest.raises(ValueError, match="x must have shape"):
        sg.linear_cross_entropy(x[:, :2], W, y, b)
    with pytest.raises(ValueError, match="b must have shape"):
        sg.linear_cross_entropy(x, W, y, b[:2])
    with pytest.raises(ValueError, match="target"):
        sg.linear_cross_entropy(x, W, y[:3], b)
    with pytest.raises(ValueError, match="target holds class index 9"):
        sg.linear_cross_entropy(x, W, np.full(B, 9), b)
    with pytest.raises(TypeError, match="integer"):
        sg.linear_cross_entropy(x, W, y.astype(float), b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunk_products_through_one_blas_match_numpy(dtype):
    """The chunk loop's three products (``x W^T``, ``g W``, ``dW += g^T x``) through SciPy's
    gemm, in place, for C-ordered, Fortran-ordered and strided operands and single rows."""
    from softgrad.losses._linear_chunks import _matmul_into

    rng = np.random.default_rng(5)
    x, W = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((4, 5)).astype(dtype)
    g = rng.standard_normal((7, 4)).astype(dtype)
    tol = {"rtol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12}
    for a, b in [(x, W.T), (g, W), (np.asfortranarray(x), W.T), (x[:, ::2], W[:, ::2].T), (x[:1], W.T)]:
        out = np.full((a.shape[0], b.shape[1]), np.nan, dtype)
        assert _matmul_into(out, a, b) is out
        np.testing.assert_allclose(out, a @ b, **tol)
    dW = rng.standard_normal((4, 5)).astype(dtype)
    want = dW + g.T @ x
    address = dW.ctypes.data
    assert _matmul_into(dW, g.T, x, accumulate=True) is dW and dW.ctypes.data == address
    np.testing.assert_allclose(dW, want, **tol)
