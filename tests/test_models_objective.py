"""The softmax-regression objective, its gradient and Hessian-vector product.

Oracles: PyTorch autograd (float64) and central finite differences. Also the contract the Dask
implementation relies on: the data term of a set of rows is the sum over blocks of rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from softgrad.models._objective import ArrayObjective, data_hvp, data_value_and_grad


def problem(seed=0, n=40, n_features=5, n_classes=4, weights=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = rng.integers(0, n_classes, n)
    sw = rng.uniform(0.2, 2.0, n) if weights else None
    return X, y, sw


def torch_objective(X, y, sw, C, fit_intercept, n_classes):
    torch = pytest.importorskip("torch")
    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    swt = torch.ones(len(y), dtype=torch.float64) if sw is None else torch.as_tensor(sw, dtype=torch.float64)
    k = n_classes * X.shape[1]

    def f(w):
        W = w[:k].reshape(n_classes, X.shape[1])
        z = Xt @ W.T + (w[k:] if fit_intercept else 0.0)
        data = (swt * torch.nn.functional.cross_entropy(z, yt, reduction="none")).sum()
        return data if np.isinf(C) else C * data + 0.5 * (W**2).sum()

    return torch, f


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.7, np.inf])
@pytest.mark.parametrize("weights", [True, False])
def test_value_grad_hvp_match_torch_autograd(C, fit_intercept, weights):
    X, y, sw = problem(weights=weights)
    obj = ArrayObjective(X, y, sw, 4, C=C, fit_intercept=fit_intercept)
    torch, f = torch_objective(X, y, sw, C, fit_intercept, 4)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(obj.n_params)
    v = rng.standard_normal(obj.n_params)
    wt = torch.tensor(w, requires_grad=True)
    ft = f(wt)
    (gt,) = torch.autograd.grad(ft, wt)
    _, hvt = torch.autograd.functional.hvp(f, torch.tensor(w), torch.tensor(v))
    value, grad = obj.value_and_grad(w)
    np.testing.assert_allclose(value, ft.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, gt.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(obj.hvp(w, v), hvt.numpy(), rtol=1e-11, atol=1e-11)


def test_gradient_and_hvp_match_central_differences():
    X, y, sw = problem(seed=3)
    obj = ArrayObjective(X, y, sw, 4, C=2.0, fit_intercept=True)
    rng = np.random.default_rng(4)
    w, v = rng.standard_normal(obj.n_params), rng.standard_normal(obj.n_params)
    h = 1e-5
    (fp, gp), (fm, gm) = obj.value_and_grad(w + h * v), obj.value_and_grad(w - h * v)
    _, g = obj.value_and_grad(w)
    np.testing.assert_allclose(g @ v, (fp - fm) / (2 * h), rtol=1e-8)
    np.testing.assert_allclose(obj.hvp(w, v), (gp - gm) / (2 * h), rtol=1e-6, atol=1e-6)


def test_float32_data_computes_in_float32_close_to_float64():
    X, y, sw = problem(seed=5)
    o64 = ArrayObjective(X, y, sw, 4, C=1.0, fit_intercept=True)
    o32 = ArrayObjective(X.astype(np.float32), y, sw.astype(np.float32), 4, C=1.0, fit_intercept=True)
    w = np.random.default_rng(6).standard_normal(o64.n_params)
    W, b = o32.unpack(w)
    assert W.dtype == np.float32 and b.dtype == np.float32
    _, gW, gb = data_value_and_grad(o32.X, y, o32.row_weight, W, b)
    assert gW.dtype == np.float32 and gb.dtype == np.float32
    f32, g32 = o32.value_and_grad(w)
    f64, g64 = o64.value_and_grad(w)
    assert g32.dtype == np.float64  # what the solvers get
    np.testing.assert_allclose(f32, f64, rtol=1e-6)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * np.max(np.abs(g64)))


def test_sparse_rows_equal_dense_rows():
    X, y, sw = problem(seed=7)
    X[np.abs(X) < 0.8] = 0.0
    dense = ArrayObjective(X, y, sw, 4, C=1.0, fit_intercept=True)
    sparse = ArrayObjective(sp.csr_matrix(X), y, sw, 4, C=1.0, fit_intercept=True)
    rng = np.random.default_rng(8)
    w, v = rng.standard_normal(dense.n_params), rng.standard_normal(dense.n_params)
    for a, b in zip(dense.value_and_grad(w), sparse.value_and_grad(w), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense.hvp(w, v), sparse.hvp(w, v), rtol=1e-12, atol=1e-12)


def test_data_term_is_a_sum_over_blocks_of_rows():
    """What a blockwise (Dask) objective does: map the data term over blocks and add."""
    X, y, sw = problem(seed=9, n=60)
    rng = np.random.default_rng(10)
    W, b = rng.standard_normal((4, 5)), rng.standard_normal(4)
    dW, db = rng.standard_normal((4, 5)), rng.standard_normal(4)
    whole = data_value_and_grad(X, y, sw, W, b)
    blocks = [slice(0, 17), slice(17, 40), slice(40, 60)]
    parts = [data_value_and_grad(X[s], y[s], sw[s], W, b) for s in blocks]
    np.testing.assert_allclose(sum(p[0] for p in parts), whole[0], rtol=1e-13)
    np.testing.assert_allclose(sum(p[1] for p in parts), whole[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum(p[2] for p in parts), whole[2], rtol=1e-12, atol=1e-12)
    h_whole = data_hvp(X, y, sw, W, b, dW, db)
    h_parts = [data_hvp(X[s], y[s], sw[s], W, b, dW, db) for s in blocks]
    np.testing.assert_allclose(sum(p[0] for p in h_parts), h_whole[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sum(p[1] for p in h_parts), h_whole[1], rtol=1e-12, atol=1e-12)


def test_packing_and_scale():
    X, y, sw = problem()
    obj = ArrayObjective(X, y, sw, 4, C=0.5, fit_intercept=True)
    assert obj.n_params == 4 * 5 + 4
    w = np.arange(obj.n_params, dtype=np.float64)
    W, b = obj.unpack(w)
    np.testing.assert_array_equal(W, w[:20].reshape(4, 5))  # row-major W, then b
    np.testing.assert_array_equal(obj.pack(W, b), w)
    assert obj.scale == pytest.approx(1.0 / (0.5 * sw.sum()))
    assert ArrayObjective(X, y, None, 4, C=np.inf, fit_intercept=False).n_params == 20
    assert ArrayObjective(X, y, None, 4, C=np.inf, fit_intercept=False).scale == pytest.approx(1 / 40)


def test_logits_cache_does_not_go_stale():
    X, y, sw = problem()
    obj = ArrayObjective(X, y, sw, 4, C=1.0, fit_intercept=True)
    fresh = ArrayObjective(X, y, sw, 4, C=1.0, fit_intercept=True)
    rng = np.random.default_rng(2)
    w1, w2, v = (rng.standard_normal(obj.n_params) for _ in range(3))
    obj.value_and_grad(w1)
    np.testing.assert_array_equal(obj.hvp(w2, v), fresh.hvp(w2, v))
    w3 = w1.copy()
    w3[-1] += 1.0  # only an intercept changes
    np.testing.assert_array_equal(obj.value_and_grad(w3)[1], fresh.value_and_grad(w3)[1])
