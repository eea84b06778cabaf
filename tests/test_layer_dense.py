"""The dense softmax layer against PyTorch autograd and the chain rule."""

from __future__ import annotations

import numpy as np
import pytest

import softgrad as sg

torch = pytest.importorskip("torch")

T, N = 4, 3


def _data(seed=0, batch=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N,) if batch is None else (batch, N))
    return x, rng.normal(size=(T, N)), rng.normal(size=T)


def _torch_layer(x, W, b):
    return torch.softmax(x @ W.T + (0 if b is None else b), dim=-1)


@pytest.mark.parametrize("batch", [None, 5])
@pytest.mark.parametrize("with_b", [True, False])
def test_forward_matches_torch(batch, with_b):
    x, W, b = _data(1, batch)
    b = b if with_b else None
    expected = _torch_layer(torch.tensor(x), torch.tensor(W), None if b is None else torch.tensor(b))
    np.testing.assert_allclose(sg.dense_softmax(x, W, b), expected.numpy(), rtol=1e-14)
    out32 = sg.dense_softmax(x.astype(np.float32), W.astype(np.float32))
    assert out32.dtype == np.float32


@pytest.mark.parametrize("wrt", ["W", "b", "x"])
def test_jacobian_matches_torch(wrt):
    x, W, b = _data(2)
    xt, Wt, bt = (torch.tensor(a) for a in (x, W, b))
    fn = {
        "W": (lambda a: _torch_layer(xt, a, bt), Wt),
        "b": (lambda a: _torch_layer(xt, Wt, a), bt),
        "x": (lambda a: _torch_layer(a, Wt, bt), xt),
    }[wrt]
    expected = torch.autograd.functional.jacobian(*fn).numpy()
    expected = expected.reshape(T, -1)  # (T, T, N) -> (T, T*N) row-major in W
    got = sg.dense_softmax_jacobian(x, W, b, wrt=wrt)
    assert got.shape == {"W": (T, T * N), "b": (T, T), "x": (T, N)}[wrt]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_jacobian_wrt_W_is_chain_rule_and_closed_form():
    x, W, b = _data(3)
    S = sg.softmax(W @ x + b)
    # chain rule: DS(g(W)) . Dg(W), g(W) = W x, Dg = I_T kron x^T (W row-major)
    DS = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), torch.tensor(W @ x + b)).numpy()
    Dg = np.kron(np.eye(T), x[None, :])
    chain = DS @ Dg
    # closed form: D_ij P_t = S_t (delta_ti - S_i) x_j, column i*N + j
    closed = np.zeros((T, T * N))
    for t in range(T):
        for i in range(T):
            for j in range(N):
                closed[t, i * N + j] = S[t] * ((t == i) - S[i]) * x[j]
    got = sg.dense_softmax_jacobian(x, W, b)
    np.testing.assert_allclose(got, chain, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got, closed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("wrt", ["W", "b", "x"])
def test_batched_jacobian_is_one_per_sample(wrt):
    x, W, b = _data(4, batch=3)
    got = sg.dense_softmax_jacobian(x, W, b, wrt=wrt)
    assert got.shape[0] == 3
    for k in range(3):
        np.testing.assert_allclose(got[k], sg.dense_softmax_jacobian(x[k], W, b, wrt=wrt), rtol=1e-13)


@pytest.mark.parametrize("batch", [None, 6])
def test_vjp_matches_torch_autograd(batch):
    x, W, b = _data(5, batch)
    g = np.random.default_rng(6).normal(size=(T,) if batch is None else (batch, T))
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    out = _torch_layer(xt, Wt, bt)
    out.backward(torch.tensor(g))
    s = sg.dense_softmax(x, W, b)
    dx, dW, db = sg.dense_softmax_vjp(x, W, s, g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_vjp_gives_seed_cross_entropy_gradient():
    """g = d(-log P_y)/dP = -e_y / S_y gives dW_ij = (S_i - delta_yi) x_j (the seed formula)."""
    x, W, b = _data(7)
    y = 2
    s = sg.dense_softmax(x, W, b)
    _, dW, db = sg.dense_softmax_vjp(x, W, s, -np.eye(T)[y] / s[y])
    xt, Wt = torch.tensor(x), torch.tensor(W, requires_grad=True)
    torch.nn.functional.cross_entropy((Wt @ xt + torch.tensor(b))[None], torch.tensor([y])).backward()
    np.testing.assert_allclose(dW, Wt.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dW, np.outer(s - np.eye(T)[y], x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(db, s - np.eye(T)[y], rtol=1e-12, atol=1e-15)


def _numpy(a):
    if hasattr(a, "detach"):
        return a.detach().numpy()
    if hasattr(a, "compute"):
        return np.asarray(a.compute())
    return np.asarray(a)


def _forbid_compute(*args, **kwargs):
    raise AssertionError("dask graph was computed inside softgrad")


@pytest.mark.parametrize("backend", ["torch", "jax", "dask", "array_api_strict"])
def test_backends(backend, to_backend):
    x, W, b = _data(8, batch=4)
    g = np.random.default_rng(9).normal(size=(4, T))
    s = sg.dense_softmax(x, W, b)
    expected = [s, sg.dense_softmax_jacobian(x, W, b), *sg.dense_softmax_vjp(x, W, s, g)]
    conv = to_backend(backend, 2)

    def run(xx, WW, bb, gg):
        ss = sg.dense_softmax(xx, WW, bb)
        return [ss, sg.dense_softmax_jacobian(xx, WW, bb), *sg.dense_softmax_vjp(xx, WW, ss, gg)]

    args = [conv(a) for a in (x, W, b, g)]
    if backend == "jax":
        got = pytest.importorskip("jax").jit(run)(*args)
    elif backend == "dask":
        import dask

        with dask.config.set(scheduler=_forbid_compute):
            got = run(*args)
    else:
        got = run(*args)
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(_numpy(a), e, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: sg.dense_softmax(np.ones(3), np.ones((4, 2))), ValueError, "x must have shape"),
        (lambda: sg.dense_softmax(np.ones(3), np.ones(3)), ValueError, "W must have shape"),
        (lambda: sg.dense_softmax(np.ones(3), np.ones((4, 3)), np.ones(3)), ValueError, "b must have shape"),
        (lambda: sg.dense_softmax_jacobian(np.ones(3), np.ones((4, 3)), wrt="y"), ValueError, "wrt"),
        (lambda: sg.dense_softmax_vjp(np.ones(3), np.ones((4, 3)), np.ones(3), np.ones(4)), ValueError,
         "s must"),
        (lambda: sg.dense_softmax_vjp(np.ones(3), np.ones((4, 3)), np.ones(4), np.ones(5)), ValueError,
         "g must"),
        (lambda: sg.dense_softmax("a", np.ones((4, 3))), TypeError, "x"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
