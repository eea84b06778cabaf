"""gradcheck and numerical_jacobian against closed forms and PyTorch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import softgrad as sg


def _f(x):
    return np.sin(x) * x[::-1]


def _jac(x):
    n = x.size
    J = np.diag(np.cos(x) * x[::-1])
    J[np.arange(n), n - 1 - np.arange(n)] += np.sin(x)
    return J


def test_numerical_jacobian_matches_closed_form():
    x = np.array([0.3, -1.2, 2.5, 4.0])
    np.testing.assert_allclose(sg.numerical_jacobian(_f, x), _jac(x), rtol=1e-9, atol=1e-10)


def test_numerical_jacobian_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, 3))

    def f(a):
        return a @ a.T  # (2, 2) output of a (2, 3) input

    expected = torch.autograd.functional.jacobian(f, torch.tensor(x)).numpy()
    got = sg.numerical_jacobian(f, x)
    assert got.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_numerical_jacobian_step_follows_dtype():
    x = np.array([1e6, 1.0], dtype=np.float64)
    # exact for a quadratic: central differences have no truncation error
    np.testing.assert_allclose(sg.numerical_jacobian(lambda a: a * a, x), np.diag(2 * x), rtol=1e-9)
    x32 = np.array([0.5, 2.0], dtype=np.float32)
    J = sg.numerical_jacobian(np.exp, x32)
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, np.diag(np.exp(x32)), rtol=1e-3)


def test_passes_and_fails():
    x = np.array([0.3, -1.2, 2.5, 4.0])
    ok = sg.gradcheck(_f, x, jacobian=_jac)
    assert ok and ok.passed and ok.max_abs_error < 1e-8 and ok.max_rel_error < 1e-8

    def wrong(a):
        J = _jac(a)
        J[2, 1] += 1e-3  # one wrong element
        return J

    bad = sg.gradcheck(_f, x, jacobian=wrong)
    assert not bad and bad.index == (2, 1)
    assert bad.analytic == pytest.approx(_jac(x)[2, 1] + 1e-3)
    assert bad.numeric == pytest.approx(_jac(x)[2, 1], abs=1e-8)
    assert bad.max_abs_error == pytest.approx(1e-3, rel=1e-4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bad.passed = True  # type: ignore[misc]


def test_vjp_and_both():
    x = np.array([0.5, -1.0, 2.0])
    s_vjp = lambda a, g: sg.softmax_vjp(sg.softmax(a), g)  # noqa: E731
    assert sg.gradcheck(sg.softmax, x, vjp=s_vjp)
    assert sg.gradcheck(sg.softmax, x, vjp=s_vjp, jacobian=sg.softmax_jacobian)
    # one of two wrong -> fails, reporting the wrong one
    res = sg.gradcheck(sg.softmax, x, vjp=s_vjp, jacobian=lambda a: 2 * sg.softmax_jacobian(a))
    assert not res


def test_scalar_function_and_float32():
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    y = np.array([0, 3, 1])
    res = sg.gradcheck(lambda a: sg.cross_entropy(a, y), x, jacobian=lambda a: sg.cross_entropy_grad(a, y))
    assert res and res.rtol == 1e-2 and res.eps == pytest.approx(np.finfo(np.float32).eps ** (1 / 3))
    assert len(res.index) == 2  # scalar output: the index is into x's shape


def test_nan_fails():
    x = np.array([1.0, 2.0])
    assert not sg.gradcheck(lambda a: a * a, x, jacobian=lambda a: np.full((2, 2), np.nan))


def test_torch_input():
    torch = pytest.importorskip("torch")
    x = torch.tensor([0.2, -0.4, 1.5], dtype=torch.float64)
    assert sg.gradcheck(sg.softmax, x, jacobian=sg.softmax_jacobian)
    J = sg.numerical_jacobian(sg.softmax, x)
    assert isinstance(J, torch.Tensor)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({}, ValueError, "jacobian= or vjp="),
        ({"jacobian": lambda a: np.zeros((3, 3))}, ValueError, "jacobian"),
        ({"jacobian": 3}, TypeError, "jacobian must be callable"),
        ({"jacobian": _jac, "eps": 0.0}, ValueError, "eps"),
        ({"jacobian": _jac, "eps": "x"}, TypeError, "eps"),
        ({"jacobian": _jac, "rtol": -1.0}, ValueError, "rtol"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sg.gradcheck(_f, np.array([1.0, 2.0]), **kwargs)


def test_numerical_jacobian_bad_f():
    with pytest.raises(TypeError, match="f must be callable"):
        sg.numerical_jacobian(3, np.ones(2))


@pytest.mark.parametrize("backend", ["jax", "dask", "array_api_strict"])
def test_other_backends(backend):
    x = np.array([0.2, -0.4, 1.5])
    if backend == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        xb = jax.numpy.asarray(x)
    elif backend == "dask":
        da = pytest.importorskip("dask.array")
        xb = da.from_array(x, chunks=2)
    else:
        xps = pytest.importorskip("array_api_strict")
        xb = xps.asarray(x)
    J = sg.numerical_jacobian(sg.softmax, xb)
    assert type(J) is type(sg.softmax(xb))
    assert sg.gradcheck(sg.softmax, xb, jacobian=sg.softmax_jacobian)
