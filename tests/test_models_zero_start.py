"""The solvers' starting point W = 0 (#15): every row has the logits b there, so the objective
computes its value and gradient from per-class sums, its Hessian exactly (a Kronecker product),
and Newton's first step needs no Hessian-vector product. The kernels add the intercepts as they
read the logits.

Oracles: the reference data term of softgrad.losses (data_value_and_grad, data_hvp; tested
against PyTorch and mpmath), central differences of the gradient, scikit-learn's optimum.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import log_softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from softgrad.losses.cross_entropy import cross_entropy_hvp, cross_entropy_value_and_grad
from softgrad.models import SoftmaxRegression, _objective, _solvers
from softgrad.models._data_kernels import ce_hvp_rows, ce_value_grad, class_sums
from softgrad.models._objective import ArrayObjective, data_hvp, data_value_and_grad


@pytest.fixture
def tall_regime(monkeypatch):
    """Small test problems take the tall data's path (dense Hessian), like 100000 x 50 x 10."""
    monkeypatch.setattr(_objective, "_SAMPLED_HESSIAN_MIN_WORK", 0)


def problem(n=300, n_features=4, n_classes=3, *, weights=False, sparse=False, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, n_features)) * (rng.random((n, n_features)) < 0.7) + 1.5).astype(dtype)
    y = rng.integers(0, n_classes, n)
    sw = rng.uniform(0.2, 2.0, n) if weights else None
    return (sp.csr_matrix(X) if sparse else X), y, sw


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("intercepts", ["zero", "random"])
def test_value_and_gradient_at_zero_match_the_reference(fit_intercept, weights, sparse, dtype, intercepts):
    X, y, sw = problem(weights=weights, sparse=sparse, dtype=dtype)
    obj = ArrayObjective(X, y, sw, 3, C=1.0, fit_intercept=fit_intercept)
    rng = np.random.default_rng(3)
    w = np.zeros(obj.n_params)
    if fit_intercept and intercepts == "random":
        w[-3:] = rng.normal(0.0, 2.0, 3)
    W, b = obj.unpack(w)
    loss, gW, gb = obj.data_value_and_grad(W, b)
    ref_loss, ref_gW, ref_gb = data_value_and_grad(X, y, sw, W, b)
    eps = np.finfo(dtype).eps
    assert gW.dtype == dtype
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13 if dtype == np.float64 else 1e-6)
    atol = 50 * eps * float(np.abs(np.asarray(ref_gW)).max())
    np.testing.assert_allclose(gW, ref_gW, rtol=0, atol=atol)
    if fit_intercept:
        np.testing.assert_allclose(gb, ref_gb, rtol=0, atol=50 * eps * X.shape[0])
    # the probabilities it left are those of this point: a Hessian-vector product there agrees
    dW = rng.standard_normal(W.shape).astype(dtype)
    db = rng.standard_normal(3).astype(dtype) if fit_intercept else None
    got = obj.data_hvp(W, b, dW, db)
    ref = data_hvp(X, y, sw, W, b, dW, db)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=100 * eps * float(np.abs(ref[0]).max()))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.7, np.inf])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_exact_hessian_at_zero_is_the_hessian(
    fit_intercept, C, weights, sparse, tall_regime, finite_difference_hessian
):
    X, y, sw = problem(n=400, weights=weights, sparse=sparse)
    obj = ArrayObjective(X, y, sw, 3, C=C, fit_intercept=fit_intercept)
    w = np.zeros(obj.n_params)
    if fit_intercept:
        w[-3:] = [0.4, -0.3, 1.1]
    H = obj.exact_hessian(w)
    fd = finite_difference_hessian(obj, w)
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-13 * np.abs(H).max())
    np.testing.assert_allclose(H, fd, rtol=0, atol=1e-7 * np.abs(fd).max())
    # and against the exact Hessian-vector products, column by column
    cols = np.stack([obj.hvp(w, e) for e in np.eye(obj.n_params)], axis=1)
    np.testing.assert_allclose(H, cols, rtol=0, atol=1e-10 * np.abs(cols).max())


def test_exact_hessian_is_offered_only_where_the_rows_share_their_curvature(tall_regime, monkeypatch):
    X, y, _ = problem(n=400)
    obj = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    w = np.zeros(obj.n_params)
    obj.exact_hessian(w)  # W = 0: offered
    w[0] = 1e-3
    with pytest.raises(NotImplementedError):
        obj.exact_hessian(w)
    w[0], w[-1] = 0.0, np.inf
    with pytest.raises(NotImplementedError):
        obj.exact_hessian(w)
    monkeypatch.setattr(_objective, "_MIN_ROWS_PER_PARAM", 10**9)  # not the tall regime
    with pytest.raises(NotImplementedError):
        obj.exact_hessian(np.zeros(obj.n_params))


def objective(model, X, y, C):
    W = np.asarray(model.coef_, dtype=np.float64)
    logp = log_softmax(X.astype(np.float64) @ W.T + np.asarray(model.intercept_, np.float64), axis=1)
    return C * float(-logp[np.arange(y.size), y].sum()) + 0.5 * float(np.sum(W * W))


@pytest.mark.parametrize("weights", [False, True])
def test_newton_first_step_is_exact_without_a_hessian_vector_product(weights, tall_regime, monkeypatch):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5000, 6)) + rng.normal(0.0, 2.0, 6)
    W0 = rng.normal(0.0, 0.8, (4, 6))
    y = np.argmax(X @ W0.T - W0 @ X.mean(axis=0) + rng.gumbel(size=(5000, 4)), axis=1)
    assert np.unique(y).size == 4
    sw = rng.uniform(0.5, 2.0, 5000) if weights else None
    at_zero: list[int] = []
    hvp = ArrayObjective.hvp

    def counting_hvp(self, w, v):
        at_zero.append(int(not np.any(w[: self.n_classes * self.n_features])))
        return hvp(self, w, v)

    monkeypatch.setattr(ArrayObjective, "hvp", counting_hvp)
    kinds = []
    make = _solvers._make_preconditioner
    monkeypatch.setattr(_solvers, "_make_preconditioner", lambda o, w: kinds.append(make(o, w)) or kinds[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = SoftmaxRegression(C=1.0, tol=1e-8).fit(X, y, sample_weight=sw)
    assert kinds[0].exact and not any(m.exact for m in kinds[1:])
    assert at_zero and sum(at_zero) == 0  # no product at the starting point
    with threadpool_limits(1):
        ref = LogisticRegression(C=1.0, solver="newton-cg", tol=1e-10, max_iter=10_000)
        ref.fit(X, y, sample_weight=sw)
    # the same optimum (scikit-learn's sum is weighted alike)
    obj = ArrayObjective(X, y, sw, np.unique(y).size, C=1.0, fit_intercept=True)
    mine = obj.value_and_grad(obj.pack(model.coef_, model.intercept_))[0]
    theirs = obj.value_and_grad(obj.pack(ref.coef_, ref.intercept_))[0]
    assert mine <= theirs * (1 + 1e-10)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=0, atol=1e-5 * np.abs(ref.coef_).max())
    if not weights:
        assert objective(model, X, y, 1.0) <= objective(ref, X, y, 1.0) * (1 + 1e-10)


def test_exact_step_stays_in_the_trust_region(tall_regime):
    X, y, _ = problem(n=400)
    obj = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    w = np.zeros(obj.n_params)
    g = obj.value_and_grad(w)[1] * obj.scale  # the solver works on scale * f
    m = _solvers._DenseHessian(obj, obj.exact_hessian(w), exact=True)
    full, predicted, boundary = _solvers._exact_newton_step(g, m, np.inf)
    assert not boundary
    H = obj.exact_hessian(w) * obj.scale
    np.testing.assert_allclose(H @ full, -g, rtol=0, atol=1e-5 * np.abs(g).max())  # Newton's step
    # (to the ridge of 1e-6 of its mean diagonal that _DenseHessian adds)
    np.testing.assert_allclose(predicted, -(g @ full + 0.5 * full @ H @ full), rtol=1e-4)
    radius = 0.3 * m.norm(full)
    cut, _, boundary = _solvers._exact_newton_step(g, m, radius)
    assert boundary
    np.testing.assert_allclose(m.norm(cut), radius, rtol=1e-12)
    np.testing.assert_allclose(cut, 0.3 * full, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weights", [False, True])
def test_kernels_add_the_intercepts_as_they_read(dtype, weights):
    rng = np.random.default_rng(9)
    n, t = 1500, 6
    Z = (rng.standard_normal((n, t)) * 3).astype(dtype)
    b = rng.normal(0.0, 5.0, t).astype(dtype)
    y = rng.integers(0, t, n)
    sw = rng.uniform(0.0, 2.0, n) if weights else None
    logits = Z.astype(np.float64) + b.astype(np.float64)
    ref_loss, ref_G = cross_entropy_value_and_grad(logits, y, reduction="sum", sample_weight=sw)
    G, P, sums = Z.copy(), np.empty_like(Z), np.empty(t)
    loss, bad = ce_value_grad(G, y, sw, P, sums, b)
    eps = np.finfo(dtype).eps
    assert bad == 0
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(G, np.asarray(ref_G), rtol=0, atol=4 * eps * 3)
    dZ = rng.standard_normal((n, t)).astype(dtype)
    db = rng.standard_normal(t).astype(dtype)
    ref_H = np.asarray(
        cross_entropy_hvp(
            logits, y, dZ.astype(np.float64) + db.astype(np.float64), reduction="sum", sample_weight=sw
        )
    )
    ce_hvp_rows(P, sw, dZ, sums, db)
    np.testing.assert_allclose(dZ, ref_H, rtol=0, atol=20 * eps * max(np.abs(ref_H).max(), 1.0))
    np.testing.assert_allclose(sums, ref_H.sum(axis=0), rtol=0, atol=1e-3 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weights", [False, True])
def test_class_sums_match_numpy(dtype, weights):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((700, 9)).astype(dtype)
    y = rng.integers(0, 4, 700)
    sw = rng.uniform(0.0, 3.0, 700) if weights else None
    ref = np.zeros((5, 9))  # class 4 has no rows: its sum is 0
    np.add.at(ref, y, X.astype(np.float64) * (1.0 if sw is None else sw[:, None]))
    np.testing.assert_allclose(class_sums(X, y, sw, 5), ref, rtol=1e-12, atol=1e-12)


def test_step_logits_from_the_cg_products_match_a_fresh_gradient(monkeypatch):
    """A Newton step's end point gets its logits from the products CG began with (no GEMM);
    value and gradient there match a fresh objective's, and a point off the step does not use
    them."""
    rng = np.random.default_rng(12)
    X = rng.standard_normal((900, 7)) + 0.5
    y = rng.integers(0, 4, 900)
    obj = ArrayObjective(X, y, None, 4, C=0.8, fit_intercept=True)
    fresh = ArrayObjective(X, y, None, 4, C=0.8, fit_intercept=True)
    w = rng.normal(0.0, 0.3, obj.n_params)
    obj.value_and_grad(w)
    gemms = []
    products = ArrayObjective._products_into

    def counting(self, name, W):
        gemms.append(name)
        return products(self, name, W)

    monkeypatch.setattr(ArrayObjective, "_products_into", counting)
    obj.step_begin(w)
    p = np.zeros(obj.n_params)
    for alpha in (0.7, -0.2, 1.3):  # as _steihaug forms its step
        d = rng.standard_normal(obj.n_params)
        obj.hvp(w, d)
        p = p + alpha * d
        obj.step_add(alpha)
    gemms.clear()
    f, g = obj.value_and_grad(w + p)
    assert "z" not in gemms  # the logits came from the step's products
    f_ref, g_ref = fresh.value_and_grad(w + p)
    np.testing.assert_allclose(f, f_ref, rtol=1e-13)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-11 * np.abs(g_ref).max())
    # a Hessian-vector product there uses the new point's probabilities
    v = rng.standard_normal(obj.n_params)
    np.testing.assert_allclose(obj.hvp(w + p, v), fresh.hvp(w + p, v), rtol=0, atol=1e-10)
    # a point that is not the start plus the summed step: computed afresh
    obj.step_begin(w + p)
    obj.hvp(w + p, v)
    obj.step_add(0.5)
    gemms.clear()
    f2, _ = obj.value_and_grad(w + p + 0.25 * v)
    assert "z" in gemms
    np.testing.assert_allclose(f2, fresh.value_and_grad(w + p + 0.25 * v)[0], rtol=1e-13)
