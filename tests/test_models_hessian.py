"""The row-sampled dense Hessian preconditioner and the kernels' column sums (#15).

Oracles: central differences of the exact float64 gradient (itself tested against PyTorch
autograd in test_models_objective.py), the exact Hessian-vector product, NumPy's dense linear
algebra, and scikit-learn's LogisticRegression optimum.
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

from softgrad.models import SoftmaxRegression, _objective, _solvers
from softgrad.models._data_kernels import ce_hvp_rows, ce_value_grad
from softgrad.models._objective import ArrayObjective, data_hessian


@pytest.fixture(autouse=True)
def small_problems_take_the_dense_path(monkeypatch):
    """The test problems are tall but small: lift the minimum work, so that they take the
    sampled Hessian like 100000 x 50 x 10 does (one test restores it)."""
    monkeypatch.setattr(_objective, "_SAMPLED_HESSIAN_MIN_WORK", 0)


def tall(n=4000, n_features=5, n_classes=3, seed=0, dtype=np.float64):
    """Many rows per parameter (the sampled Hessian's regime), labels from a softmax model."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, n_features)) + rng.normal(0.0, 2.0, n_features)).astype(dtype)
    W = rng.normal(0.0, 0.7, (n_classes, n_features))
    z = X.astype(np.float64) @ W.T + rng.normal(0.0, 0.5, n_classes)
    y = np.argmax(z + rng.gumbel(size=z.shape), axis=1)
    return X, y


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.7, np.inf])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_sampled_hessian_on_every_row_is_the_hessian(
    fit_intercept, C, weights, sparse, monkeypatch, finite_difference_hessian
):
    """With the sample taken as all rows, the estimate is the exact Hessian of f (penalty and C
    included): it matches central differences of the gradient to the float32 products' rounding."""
    monkeypatch.setattr(_objective, "_MIN_ROWS_PER_PARAM", 1)
    monkeypatch.setattr(_objective, "_SAMPLE_FRACTION", 1.0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 4)) * (rng.random((120, 4)) < 0.6) + 1.5
    if sparse:
        X = sp.csr_matrix(X)
    sw = rng.uniform(0.5, 2.0, 120) if weights else None
    obj = ArrayObjective(X, rng.integers(0, 3, 120), sw, 3, C=C, fit_intercept=fit_intercept)
    w = rng.normal(0.0, 0.5, obj.n_params)
    H = obj.sampled_hessian(w)
    fd = finite_difference_hessian(obj, w)
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-12 * np.abs(H).max())
    np.testing.assert_allclose(H, fd, rtol=0, atol=2e-5 * np.abs(fd).max())


def test_data_hessian_of_a_block_matches_its_hessian_vector_products():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 6))
    sw = rng.uniform(0.1, 3.0, 300)
    obj = ArrayObjective(X, rng.integers(0, 5, 300), sw, 5, C=np.inf, fit_intercept=True)
    w = rng.normal(0.0, 0.4, obj.n_params)
    obj.value_and_grad(w)
    P = obj._probabilities(*obj.unpack(w))
    H = data_hessian(X, sw, P, fit_intercept=True)
    products = np.stack([obj.hvp(w, e) for e in np.eye(obj.n_params)], axis=1)
    np.testing.assert_allclose(H, products, rtol=0, atol=1e-5 * np.abs(products).max())


def test_sampled_hessian_is_offered_only_where_rows_outnumber_parameters(monkeypatch):
    rng = np.random.default_rng(3)
    X_few, y_few = rng.standard_normal((200, 5)), rng.integers(0, 3, 200)
    few = ArrayObjective(X_few, y_few, None, 3, C=1.0, fit_intercept=True)
    with pytest.raises(NotImplementedError):  # 200 rows for 18 parameters
        few.sampled_hessian(np.zeros(few.n_params))
    X, y = tall()
    many = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    w0 = np.zeros(many.n_params)
    assert many.sampled_hessian(w0).shape == (many.n_params, many.n_params)
    for name, value in [
        ("_BUILD_BUDGET", 0.1),  # the build would cost more than the products it saves
        ("_SAMPLED_HESSIAN_MAX_PARAMS", 10),  # the Cholesky factor would
        ("_SAMPLED_HESSIAN_MIN_WORK", 1 << 23),  # the default: 4000 x 18 is too small to pay
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(_objective, name, value)
            with pytest.raises(NotImplementedError):
                many.sampled_hessian(w0)
    assert many.sampled_hessian(w0).shape == (many.n_params, many.n_params)


def test_sample_is_evenly_spaced_and_covers_the_rows():
    X, y = tall(n=10_000)
    obj = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    rows = obj._hessian_sample()
    assert rows[0] == 0 and rows[-1] == 9999 and np.all(np.diff(rows) > 0)
    assert rows.size >= _objective._SAMPLE_ROWS_PER_PARAM * obj.n_params


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [1.0, np.inf])
def test_dense_preconditioner_of_the_exact_hessian_inverts_it(fit_intercept, C):
    """Given the exact Hessian (its columns from the exact product), the preconditioner's solve
    undoes the Hessian-vector product off the directions f ignores, its norm is the Hessian's,
    and it gives no step along those directions."""
    X, y = tall(n=2000)
    obj = ArrayObjective(X, y, None, 3, C=C, fit_intercept=fit_intercept)
    w = np.random.default_rng(4).normal(0.0, 0.3, obj.n_params)
    H = np.stack([obj.hvp(w, e) for e in np.eye(obj.n_params)], axis=1)
    m = _solvers._DenseHessian(obj, H)
    for seed in range(3):
        v = obj.project(np.random.default_rng(seed).standard_normal(obj.n_params))
        Hv = obj.hvp(w, v) * obj.scale
        # to the ridge of 1e-6 of the mean curvature the factorization adds (condition ~1e4)
        np.testing.assert_allclose(m.solve(Hv), v, rtol=0, atol=2e-2 * np.abs(v).max())
        np.testing.assert_allclose(m.inner(v, v), v @ Hv, rtol=1e-5)
        np.testing.assert_allclose(obj.project(m.solve(Hv)), m.solve(Hv), atol=1e-12)


def test_newton_cg_prefers_the_sampled_hessian_and_falls_back_without_it(monkeypatch):
    X, y = tall()
    obj = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    assert isinstance(_solvers._make_preconditioner(obj, np.zeros(obj.n_params)), _solvers._DenseHessian)
    monkeypatch.setattr(_objective, "_MIN_ROWS_PER_PARAM", 10**9)
    assert isinstance(_solvers._make_preconditioner(obj, np.zeros(obj.n_params)), _solvers._Kronecker)


def test_kernel_column_sums_are_the_intercept_gradients():
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((3000, 7)) * 3
    y = rng.integers(0, 7, 3000)
    sw = rng.uniform(0.0, 2.0, 3000)
    P, sums = np.empty_like(Z), np.empty(7)
    ce_value_grad(Z, y, sw, P, sums)
    np.testing.assert_allclose(sums, Z.sum(axis=0), rtol=1e-12, atol=1e-12)
    dZ = rng.standard_normal((3000, 7))
    ce_hvp_rows(P, sw, dZ, sums)
    np.testing.assert_allclose(sums, dZ.sum(axis=0), rtol=1e-12, atol=1e-12)


def objective(model, X, y, C):
    """C * sum_i CE_i + 0.5 ||W||^2 in float64 with SciPy's log_softmax."""
    W = np.asarray(model.coef_, dtype=np.float64)
    logp = log_softmax(X.astype(np.float64) @ W.T + np.asarray(model.intercept_, np.float64), axis=1)
    return C * float(-logp[np.arange(y.size), y].sum()) + 0.5 * float(np.sum(W * W))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("C", [1.0, 1e4])
def test_newton_cg_with_the_sampled_hessian_reaches_sklearn_optimum(dtype, C, monkeypatch):
    X, y = tall(n=6000, n_features=8, n_classes=4, seed=7, dtype=dtype)
    used = []
    make = _solvers._make_preconditioner
    monkeypatch.setattr(_solvers, "_make_preconditioner", lambda o, w: used.append(make(o, w)) or used[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = SoftmaxRegression(C=C, solver="newton-cg").fit(X, y)
    assert used and all(isinstance(m, _solvers._DenseHessian) for m in used)
    with threadpool_limits(1):
        ref = LogisticRegression(C=C, solver="newton-cg", tol=1e-10, max_iter=10_000)
        ref.fit(X.astype(np.float64), y)
    assert model.coef_.dtype == dtype
    slack = 1e-10 if dtype == np.float64 else 1e-7
    assert objective(model, X, y, C) <= objective(ref, X, y, C) * (1 + slack)
    if C == 1.0:  # well determined: the coefficients too (C = 1e4 leaves flat directions)
        scale = np.max(np.abs(ref.coef_))
        tol = 1e-6 if dtype == np.float64 else 1e-3
        np.testing.assert_allclose(model.coef_, ref.coef_, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=0, atol=tol * scale)
