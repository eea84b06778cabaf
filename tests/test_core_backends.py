"""The same tests on every installed array library (the ``backend`` fixture in conftest.py).

Each result must come back as the input's array type (a torch tensor for torch, a Dask array
that has not been computed for Dask) and dtype, with the values of an oracle: SciPy in float64
for the forward functions, the closed forms evaluated in NumPy float64 for the derivatives.
The special rows of the README's table give the same, documented results everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import softgrad as sg

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

EPS = {"bfloat16": 2.0**-7, "float16": 2.0**-10, "float32": 2.0**-23, "float64": 2.0**-52}


@contextmanager
def no_compute(backend: Any) -> Iterator[None]:
    """Fail if Dask computes anything inside the block: generic code must stay lazy."""
    if backend.name != "dask":
        yield
        return
    from dask.callbacks import Callback

    class _Forbid(Callback):  # type: ignore[misc]
        def _start(self, dsk: Any) -> None:
            raise AssertionError("softgrad forced a Dask computation")

    with _Forbid():
        yield


def _close(got: np.ndarray, want: np.ndarray, dtype: str, ulps: float = 4) -> None:
    eps = EPS[dtype]
    np.testing.assert_allclose(got, want, rtol=ulps * eps, atol=ulps * eps, equal_nan=True)


def _run(backend: Any, compute: Any, *arrays: Any, dtype: str | None = None) -> list[np.ndarray]:
    """``compute(*arrays)`` (a tuple of results) without forcing Dask, checked, as NumPy.

    JAX compiles op by op when called eagerly, which is slow for many dtypes and shapes, so
    for JAX the whole ``compute`` runs under one ``jax.jit`` (the way JAX code calls it);
    ``test_jax_eager`` covers the eager path.
    """
    if backend.name == "jax":
        import jax

        compute = jax.jit(compute)
    with no_compute(backend):
        results = compute(*arrays)
    for r in results:
        backend.check_type(r)
        assert dtype is None or backend.dtype_name(r) == dtype, (dtype, r.dtype)
    if backend.name == "dask":  # one computation for all results: they share their graphs
        import dask

        results = dask.compute(*results)
    return [backend.to_numpy(r) for r in results]


# --- values, types and dtypes ------------------------------------------------------------------


def test_forward_functions_keep_type_and_dtype(backend):
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal((3, 5, 4)) * 3

    def compute(x: Any) -> tuple[Any, ...]:
        return (
            sg.softmax(x, 1, temperature=0.5),
            sg.log_softmax(x, 1),
            sg.logsumexp(x, 1),
            sg.softmax(x),
            sg.log_softmax(x, temperature=3.0),
            sg.logsumexp(x, keepdims=True),
        )

    for dtype in backend.float_dtypes:
        x = backend.asarray(x64, dtype)
        xd = backend.to_numpy(x).astype(np.float64)  # the values the backend actually holds
        want = (
            special.softmax(xd / 0.5, axis=1),
            special.log_softmax(xd, axis=1),
            special.logsumexp(xd, axis=1),
            special.softmax(xd, axis=-1),
            special.log_softmax(xd / 3.0, axis=-1),
            special.logsumexp(xd, axis=-1, keepdims=True),
        )
        got = _run(backend, compute, x, dtype=dtype)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            _close(g.astype(np.float64), w, dtype)


def test_derivatives_keep_type_and_dtype(backend):
    rng = np.random.default_rng(1)
    x64 = rng.standard_normal((2, 3, 4)) * 2
    g64 = rng.standard_normal((2, 3, 4))
    t = 0.8

    def compute(x: Any, g: Any, s: Any, logp: Any) -> tuple[Any, ...]:
        return (
            sg.softmax_jacobian(x, 1, temperature=t),
            sg.log_softmax_jacobian(x, 1, temperature=t),
            sg.softmax_hessian(x, 1, temperature=t),
            sg.softmax_vjp(s, g, 1, temperature=t),
            sg.softmax_jvp(s, g, 1, temperature=t),
            sg.log_softmax_vjp(logp, g, 1, temperature=t),
            sg.log_softmax_jvp(logp, g, 1, temperature=t),
        )

    for dtype in backend.float_dtypes:
        x, g = backend.asarray(x64, dtype), backend.asarray(g64, dtype)
        xd = backend.to_numpy(x).astype(np.float64)
        gl = np.moveaxis(backend.to_numpy(g).astype(np.float64), 1, -1)
        s = _closed_softmax(np.moveaxis(xd, 1, -1) / t)  # the oracle, softmax axis last
        sb = backend.asarray(np.moveaxis(s, -1, 1), dtype)
        logpb = backend.asarray(np.moveaxis(np.log(s), -1, 1), dtype)
        # the vector products see the rounded s and logp: the oracle uses those
        sd = np.moveaxis(backend.to_numpy(sb).astype(np.float64), 1, -1)
        pd = np.exp(np.moveaxis(backend.to_numpy(logpb).astype(np.float64), 1, -1))
        a = np.eye(3) - s[..., None, :]
        want = [
            s[..., :, None] * a / t,
            a / t,
            s[..., :, None, None]
            * (a[..., :, :, None] * a[..., :, None, :] - s[..., None, :, None] * a[..., None, :, :])
            / t**2,
            sd * (gl - np.sum(gl * sd, -1, keepdims=True)) / t,
            sd * (gl - np.sum(gl * sd, -1, keepdims=True)) / t,
            (gl - pd * np.sum(gl, -1, keepdims=True)) / t,
            (gl - np.sum(gl * pd, -1, keepdims=True)) / t,
        ]
        got = _run(backend, compute, x, g, sb, logpb, dtype=dtype)
        for i, (gi, wi) in enumerate(zip(got, want, strict=True)):
            if i >= 3:  # vector products keep x's layout
                gi = np.moveaxis(gi, 1, -1)
            assert gi.shape == wi.shape, (i, gi.shape)
            _close(gi.astype(np.float64), wi, dtype, ulps=8 if i < 3 else 32)  # sums of N terms


def _closed_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_integers_promote_to_the_default_float(backend):
    x = backend.asarray(np.array([[1, 2, 3], [0, 0, 0]]))
    (result,) = _run(backend, lambda z: (sg.softmax(z),), x)
    default = "float32" if backend.name == "torch" else "float64"  # torch's default dtype
    assert result.dtype.name == default
    np.testing.assert_allclose(result[0], [0.09003057, 0.24472847, 0.66524096], atol=5e-8)
    np.testing.assert_allclose(result[1], [1 / 3] * 3, rtol=1e-7)


def test_where_on_every_backend(backend):
    x = backend.asarray(np.array([[1.0, 2.0, 3.0], [np.nan, 0.5, 0.5]]))
    mask = np.array([[True, False, True], [False, True, True]])
    e = math.exp(2.0)
    for where in (mask, backend.asarray(mask)):
        s, logp, lse = _run(
            backend,
            lambda z, w: (sg.softmax(z, where=w), sg.log_softmax(z, where=w), sg.logsumexp(z, where=w)),
            x,
            where,
        )
        np.testing.assert_allclose(s, [[1 / (1 + e), 0.0, e / (1 + e)], [0.0, 0.5, 0.5]], rtol=1e-15)
        assert np.array_equal(np.isinf(logp), ~mask)
        np.testing.assert_allclose(lse, [3 + math.log1p(math.exp(-2)), 0.5 + math.log(2)], rtol=1e-15)
    row_mask = backend.asarray(np.array([True, False, True]))  # broadcast over the rows
    (s,) = _run(backend, lambda z, w: (sg.softmax(z, where=w),), x, row_mask)
    assert np.isnan(s[1, 0]) and np.isnan(s[1, 2])  # an unmasked NaN still poisons its row


# --- the special rows of the README table, identically everywhere ------------------------------

INF, NAN = math.inf, math.nan
E1 = math.e


def _special() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rows, a ``where`` mask, and the documented results (README "Numerics contract")."""
    x = np.array(
        [
            [INF, 1.0, INF],  # k = 2 entries at +inf share the mass
            [INF, -INF, 0.0],
            [-INF, -INF, -INF],  # all -inf: empty
            [1.0, -INF, 2.0],  # a -inf entry
            [5.0, 6.0, 7.0],  # fully masked below
            [NAN, 1.0, 2.0],  # NaN poisons its row
            [NAN, 2.0, 2.0],  # ... unless masked
            [INF, NAN, 1.0],
        ]
    )
    where = np.ones_like(x, dtype=bool)
    where[4] = False
    where[6, 0] = False
    half, log_half = 0.5, -math.log(2.0)
    p = 1.0 / (1.0 + E1)  # softmax([1, 2]) = [p, 1 - p]
    expected = {
        "softmax": np.array(
            [
                [half, 0, half],
                [1, 0, 0],
                [0, 0, 0],
                [p, 0, 1 - p],
                [0, 0, 0],
                [NAN] * 3,
                [0, half, half],
                [NAN] * 3,
            ]
        ),
        "log_softmax": np.array(
            [
                [log_half, -INF, log_half],
                [0, -INF, -INF],
                [-INF] * 3,
                [-math.log1p(E1), -INF, -math.log1p(1 / E1)],
                [-INF] * 3,
                [NAN] * 3,
                [-INF, log_half, log_half],
                [NAN] * 3,
            ]
        ),
        "logsumexp": np.array([INF, INF, -INF, 2 + math.log1p(1 / E1), -INF, NAN, 2 - log_half, NAN]),
    }
    return x, where, expected


@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
def test_special_rows_give_documented_results(backend, fn):
    x, where, expected = _special()
    for dtype in backend.float_dtypes:
        (got,) = _run(
            backend,
            lambda z, w: (getattr(sg, fn)(z, where=w),),
            backend.asarray(x, dtype),
            backend.asarray(where),
        )
        assert got.shape == expected[fn].shape
        np.testing.assert_allclose(got, expected[fn], rtol=4 * EPS[dtype], atol=0, equal_nan=True)
        # exactly the same zeros, infinities and NaNs
        for test in (np.isnan, np.isposinf, np.isneginf):
            assert np.array_equal(test(got), test(expected[fn])), (dtype, test.__name__, got)
        assert np.array_equal(got == 0, expected[fn] == 0), (dtype, got)


def test_derivatives_at_special_rows_hold_no_unforced_nan(backend):
    """Empty rows give zero gradients; +inf rows give the closed form at their probabilities."""
    x = np.array([[INF, 1.0, INF], [-INF, -INF, -INF], [1.0, -INF, 2.0], [INF, -INF, 0.0], [NAN, 1, 2]])
    g = np.array([[1.0, -2.0, 0.5]] * 5)
    s = np.array([[0.5, 0, 0.5], [0, 0, 0], [1 / (1 + E1), 0, E1 / (1 + E1)], [1, 0, 0], [NAN] * 3])
    support = s != 0  # where log_softmax is -inf the log-probability is constant: zero rows
    jac = s[:, :, None] * (np.eye(3) - s[:, None, :])
    log_jac = np.where(support[:, :, None], np.eye(3) - s[:, None, :], 0.0)
    log_jac[4] = NAN
    vjp = s * (g - np.sum(g * s, -1, keepdims=True))
    gm = np.where(support, g, 0.0)
    log_vjp = np.where(support, gm - s * np.sum(gm, -1, keepdims=True), 0.0)
    log_vjp[4] = NAN
    a = np.eye(3) - s[:, None, :]
    hess = s[:, :, None, None] * (a[:, :, :, None] * a[:, :, None, :] - s[:, None, :, None] * a[:, None])
    for dtype in backend.float_dtypes:
        xb, gb = backend.asarray(x, dtype), backend.asarray(g, dtype)

        def compute(z: Any, gz: Any) -> tuple[Any, ...]:
            s_, logp_ = sg.softmax(z), sg.log_softmax(z)
            return (
                sg.softmax_jacobian(z),
                sg.log_softmax_jacobian(z),
                sg.softmax_hessian(z),
                sg.softmax_vjp(s_, gz),
                sg.softmax_jvp(s_, gz),
                sg.log_softmax_vjp(logp_, gz),
            )

        got_all = _run(backend, compute, xb, gb, dtype=dtype)
        names = ["softmax_jacobian", "log_softmax_jacobian", "softmax_hessian", "softmax_vjp"]
        names += ["softmax_jvp", "log_softmax_vjp"]
        wants = [jac, log_jac, hess, vjp, vjp, log_vjp]
        results = {n: (gv, wv) for n, gv, wv in zip(names, got_all, wants, strict=True)}
        for name, (got, want) in results.items():
            assert np.array_equal(np.isnan(got), np.isnan(want)), (name, dtype, got)
            np.testing.assert_allclose(got, want, rtol=8 * EPS[dtype], atol=8 * EPS[dtype], equal_nan=True)
            empty = got[1]
            assert np.all(empty == 0), (name, "an empty row has zero derivatives")


# --- backend-specific promises -----------------------------------------------------------------


def test_jax_jit():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    x = jax.numpy.asarray(np.array([[1.0, 2.0, 3.0], [1000.0, 2000.0, 3000.0]]))
    s = jax.jit(sg.softmax)(x)
    assert isinstance(s, jax.Array)
    np.testing.assert_allclose(np.asarray(s[0]), [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    assert np.array_equal(np.asarray(s[1]), [0.0, 0.0, 1.0])
    f = jax.jit(lambda z: sg.log_softmax(z, 0, temperature=2.0, where=z > 1.5))
    np.testing.assert_allclose(
        np.asarray(f(x)), np.asarray(jax.nn.log_softmax(x / 2.0, axis=0, where=x > 1.5))
    )
    lse = jax.jit(sg.logsumexp)(x)
    np.testing.assert_allclose(np.asarray(lse), np.asarray(jax.nn.logsumexp(x, axis=-1)), rtol=1e-15)
    vjp = jax.jit(lambda s_, g_: sg.softmax_vjp(s_, g_))(s, x)
    assert isinstance(vjp, jax.Array)
    assert jax.jit(sg.softmax_hessian)(x).shape == (2, 3, 3, 3)
    x32 = x.astype(jax.numpy.float32)  # float32 computes in float64 inside jit too
    assert jax.jit(sg.softmax)(x32).dtype == jax.numpy.float32


def test_jax_eager():
    """Called outside jit, JAX arrays come back as JAX arrays of the input's dtype."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    for dtype in ("float32", "float64"):
        x = jax.numpy.asarray([[0.0, -1000.0, 3.0]], dtype=dtype)
        s, logp = sg.softmax(x), sg.log_softmax(x)
        assert isinstance(s, jax.Array) and s.dtype == dtype and logp.dtype == dtype
        assert logp[0, 1] == np.asarray(-1003.0 - math.log1p(math.exp(-3.0))).astype(dtype)
        assert isinstance(sg.softmax_vjp(s, x), jax.Array)


def test_dask_stays_lazy_and_chunked():
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.random.default_rng(3).standard_normal((6, 8)), chunks=(2, 3))
    backend = type("B", (), {"name": "dask"})()
    with no_compute(backend):
        results = [
            sg.softmax(x),
            sg.log_softmax(x, axis=0, temperature=3.0),
            sg.logsumexp(x, keepdims=True),
            sg.softmax_vjp(sg.softmax(x), x),
            sg.log_softmax_jacobian(x),
        ]
    for r in results:
        assert isinstance(r, da.Array)
    special = pytest.importorskip("scipy.special")
    xn = x.compute()
    np.testing.assert_allclose(results[0].compute(), special.softmax(xn, axis=-1), rtol=1e-15)
    np.testing.assert_allclose(
        results[1].compute(), special.log_softmax(xn / 3.0, axis=0), rtol=1e-14, atol=1e-15
    )


def test_torch_tensors_and_autograd_through_logsumexp():
    """A torch tensor comes back; and torch's autograd through logsumexp gives softmax."""
    torch = pytest.importorskip("torch")
    x = torch.tensor([[0.5, -1.0, 2.0], [3.0, 3.0, -1.0]], dtype=torch.float64, requires_grad=True)
    lse = sg.logsumexp(x)
    assert isinstance(lse, torch.Tensor)
    lse.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), torch.softmax(x.detach(), -1).numpy(), rtol=1e-15)
    bf = torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)
    assert sg.softmax(bf).dtype == torch.bfloat16
    assert sg.log_softmax_jacobian(bf).dtype == torch.bfloat16


def test_rows_of_no_entries(backend):
    """An axis of length 0: empty results, and logsumexp -inf as for an all-masked row (SciPy)."""
    special = pytest.importorskip("scipy.special")
    x = backend.asarray(np.zeros((3, 0)))
    s, logp, lse, jac = _run(
        backend, lambda z: (sg.softmax(z), sg.log_softmax(z), sg.logsumexp(z), sg.softmax_jacobian(z)), x
    )
    assert s.shape == logp.shape == (3, 0) and jac.shape == (3, 0, 0)
    np.testing.assert_array_equal(lse, special.logsumexp(np.zeros((3, 0)), axis=-1))
