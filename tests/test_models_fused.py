"""The estimator's fused data term and its Kronecker-factored Newton preconditioner (#15).

Oracles: the reference path of softgrad.losses (cross_entropy_value_and_grad, cross_entropy_hvp,
themselves tested against PyTorch and mpmath), the exact Hessian-vector product (tested against
PyTorch autograd in test_models_objective.py), and NumPy's dense linear algebra.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from softgrad.losses.cross_entropy import cross_entropy_hvp, cross_entropy_value_and_grad
from softgrad.models import _data_kernels, _solvers
from softgrad.models._data_kernels import ce_hvp_rows, ce_value_grad
from softgrad.models._objective import ArrayObjective, data_value_and_grad


def logits(rng, n, t, dtype, spread=3.0):
    Z = rng.standard_normal((n, t)) * spread
    Z[::7] *= 100.0  # confident rows: the loss is ~exp(-100s), kept by log1p
    Z[1::11, 0] = -800.0  # below float64's exp range
    return Z.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("t", [2, 3, 10, 33])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_fused_rows_match_the_losses_reference(dtype, t, weights, parallel, monkeypatch):
    monkeypatch.setattr(_data_kernels, "_PARALLEL_ENTRIES", 0 if parallel else 1 << 62)
    rng = np.random.default_rng(t)
    n = 2000
    Z = logits(rng, n, t, dtype)
    y = rng.integers(0, t, n)
    sw = rng.uniform(0.0, 2.0, n) if weights else None
    Z64 = Z.astype(np.float64)
    ref_loss, ref_G = cross_entropy_value_and_grad(Z64, y, reduction="sum", sample_weight=sw)
    dZ = rng.standard_normal((n, t)).astype(dtype)
    ref_H = cross_entropy_hvp(Z64, y, dZ.astype(np.float64), reduction="sum", sample_weight=sw)

    G, P = Z.copy(), np.empty_like(Z)
    loss, bad = ce_value_grad(G, y, sw, P)
    ce_hvp_rows(P, sw, dZ)
    assert bad == 0 and G.dtype == P.dtype == dZ.dtype == dtype
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    top = 1 + np.max(sw if weights else 1.0)
    np.testing.assert_allclose(G, np.asarray(ref_G), rtol=0, atol=4 * eps * top)
    scale = np.abs(np.asarray(ref_H)).max()
    np.testing.assert_allclose(dZ, np.asarray(ref_H), rtol=0, atol=20 * eps * max(scale, 1.0))
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=t * eps)


def test_fused_sums_do_not_depend_on_the_threads(monkeypatch):
    rng = np.random.default_rng(0)
    Z = logits(rng, 5000, 10, np.float64)
    y = rng.integers(0, 10, 5000)
    results = []
    for threshold in (0, 1 << 62):
        monkeypatch.setattr(_data_kernels, "_PARALLEL_ENTRIES", threshold)
        G, P = Z.copy(), np.empty_like(Z)
        results.append((ce_value_grad(G, y, None, P)[0], G))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_fused_pass_reports_non_finite_rows():
    Z = np.array([[0.0, 1.0], [np.inf, 0.0], [np.nan, 0.0], [-np.inf, -np.inf]])
    for row in range(4):
        _, bad = ce_value_grad(Z[row : row + 1].copy(), np.array([0]), None, np.empty((1, 2)))
        assert (bad > 0) == (row > 0), row


def test_objective_falls_back_to_the_reference_where_logits_overflow():
    """float32 logits that overflow to inf: the losses' path, which treats them as the losses do."""
    X = np.array([[3e38, 1.0], [1.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    y = np.array([0, 1, 1])
    obj = ArrayObjective(X, y, None, 2, C=1.0, fit_intercept=True)
    w = np.array([10.0, 0.0, -10.0, 0.0, 0.0, 0.0])
    W, b = obj.unpack(w)
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the case under test
        ref = data_value_and_grad(X, y, None, W, b)
        got = obj.data_value_and_grad(W, b)
    assert got[0] == ref[0] or (np.isnan(got[0]) and np.isnan(ref[0]))
    np.testing.assert_array_equal(got[1], ref[1])


def test_float32_objective_keeps_float32_buffers():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4)).astype(np.float32)
    obj = ArrayObjective(X, rng.integers(0, 3, 50), None, 3, C=1.0, fit_intercept=True)
    w = rng.standard_normal(obj.n_params)
    obj.hvp(w, w)
    assert {b.dtype for b in obj._buffers.values()} == {np.dtype(np.float32)}


def test_sparse_rows_take_the_fused_path_too():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 8)) * (rng.random((60, 8)) < 0.3)
    y = rng.integers(0, 3, 60)
    dense = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    sparse = ArrayObjective(sp.csr_matrix(X), y, None, 3, C=1.0, fit_intercept=True)
    w, v = rng.standard_normal(dense.n_params), rng.standard_normal(dense.n_params)
    np.testing.assert_allclose(
        sparse.value_and_grad(w)[1], dense.value_and_grad(w)[1], rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(sparse.hvp(w, v), dense.hvp(w, v), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.3, np.inf])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_kronecker_preconditioner_inverts_the_hessian_where_curvature_is_uniform(
    fit_intercept, C, weights, sparse
):
    """At W = 0, b = 0 every row has the same p (uniform), so sum_i s_i A_i (x) x_i x_i^T is
    exactly A (x) sum_i s_i x_i x_i^T: the Kronecker model is the Hessian, and its inverse applied
    to H v gives v back (v off the directions f ignores)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 5)) + np.array([10.0, 0.0, -3.0, 0.0, 1.0])  # uncentred features
    if sparse:
        X = sp.csr_matrix(X)
    sw = rng.uniform(0.5, 2.0, 80) if weights else None
    obj = ArrayObjective(X, rng.integers(0, 4, 80), sw, 4, C=C, fit_intercept=fit_intercept)
    w = np.zeros(obj.n_params)
    m = _solvers._make_preconditioner(obj, w)
    assert isinstance(m, _solvers._Kronecker)
    for seed in range(3):
        v = obj.project(np.random.default_rng(seed).standard_normal(obj.n_params))
        Hv = obj.hvp(w, v) * obj.scale
        np.testing.assert_allclose(m.solve(Hv), v, rtol=1e-9, atol=1e-9)
        # the trust region's norm is the same model: p.M p = p.H p here
        np.testing.assert_allclose(m.inner(v, v), v @ Hv, rtol=1e-9)


def test_kronecker_preconditioner_is_symmetric_positive_definite_off_the_null_space():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((100, 6))
    obj = ArrayObjective(X, rng.integers(0, 3, 100), None, 3, C=1.0, fit_intercept=True)
    w = rng.standard_normal(obj.n_params)
    m = _solvers._make_preconditioner(obj, w)
    basis = np.stack([m.solve(obj.project(e)) for e in np.eye(obj.n_params)])
    np.testing.assert_allclose(basis, basis.T, rtol=1e-10, atol=1e-12)
    v = obj.project(rng.standard_normal(obj.n_params))
    assert v @ m.solve(v) > 0 and m.inner(v, v) > 0


def test_newton_cg_falls_back_to_the_diagonal_preconditioner_for_many_features(monkeypatch):
    from softgrad.models import _objective

    monkeypatch.setattr(_objective, "_KRONECKER_MAX_FEATURES", 3)
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((30, 5)), rng.integers(0, 3, 30)
    obj = ArrayObjective(X, y, None, 3, C=1.0, fit_intercept=True)
    assert isinstance(_solvers._make_preconditioner(obj, np.zeros(obj.n_params)), _solvers._Preconditioner)
    result = _solvers.newton_cg(obj, np.zeros(obj.n_params), tol=1e-10, max_iter=100)
    assert result.converged
