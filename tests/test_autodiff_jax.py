"""softgrad.jax against jax.nn and optax's formulas: values, grad, vmap, jit, jvp of grad, x64 off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import softgrad as sg  # noqa: E402
import softgrad.jax as sgj  # noqa: E402


def _x(shape=(5, 7), seed=0):
    return jnp.asarray(3 * np.random.default_rng(seed).normal(size=shape))


def _labels(n, c, seed=1):
    return jnp.asarray(np.random.default_rng(seed).integers(0, c, n))


def _probs(shape, seed=2):
    return jax.nn.softmax(_x(shape, seed))


def _ref_int(o, y):  # optax.softmax_cross_entropy_with_integer_labels
    return -jnp.take_along_axis(jax.nn.log_softmax(o), y[:, None], axis=1)[:, 0]


def _ref_prob(o, t):  # optax.softmax_cross_entropy
    return -jnp.sum(t * jax.nn.log_softmax(o), axis=-1)


def _hvp(f, x, v):
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (sgj.softmax, jax.nn.softmax),
        (sgj.log_softmax, jax.nn.log_softmax),
        (sgj.logsumexp, lambda x, axis=-1: jax.nn.logsumexp(x, axis=axis)),
        (sg.softmax, jax.nn.softmax),
        (sg.logsumexp, lambda x, axis=-1: jax.nn.logsumexp(x, axis=axis)),
    ],
)
def test_softmax_family_matches_jax_nn(ours, ref):
    x = _x((4, 6))
    v = _x((4, 6), 3)
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-13, atol=1e-15)

    def f(fn):
        return lambda x: jnp.sum(jnp.sin(fn(x)))

    np.testing.assert_allclose(jax.jit(jax.grad(f(ours)))(x), jax.grad(f(ref))(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_hvp(f(ours), x, v), _hvp(f(ref), x, v), rtol=1e-11, atol=1e-13)
    rows = jax.vmap(ours)(x)
    np.testing.assert_allclose(rows, ref(x, axis=-1), rtol=1e-13, atol=1e-15)


def test_integer_labels_like_optax():
    x, y = _x(), _labels(5, 7)
    v = _x(seed=4)
    loss = sgj.softmax_cross_entropy_with_integer_labels(x, y)
    np.testing.assert_allclose(loss, _ref_int(x, y), rtol=1e-13)

    def f(o):
        return jnp.sum(sgj.softmax_cross_entropy_with_integer_labels(o, y))

    def r(o):
        return jnp.sum(_ref_int(o, y))

    np.testing.assert_allclose(jax.jit(jax.grad(f))(x), jax.grad(r)(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_hvp(f, x, v), _hvp(r, x, v), rtol=1e-11, atol=1e-14)
    per_sample = jax.vmap(jax.grad(lambda o, t: sgj.cross_entropy(o, t)))(x, y)
    np.testing.assert_allclose(per_sample, jax.vmap(jax.grad(lambda o, t: -jax.nn.log_softmax(o)[t]))(x, y),
                               rtol=1e-12, atol=1e-15)


def test_probability_labels_like_optax_in_both_arguments():
    x, t = _x(), _probs((5, 7))
    v, w = _x(seed=4), _x(seed=5)

    def f(o, t):
        return jnp.sum(jnp.cos(sgj.softmax_cross_entropy(o, t)))

    def r(o, t):
        return jnp.sum(jnp.cos(_ref_prob(o, t)))

    np.testing.assert_allclose(sgj.softmax_cross_entropy(x, t), _ref_prob(x, t), rtol=1e-13)
    for a, b in zip(jax.grad(f, (0, 1))(x, t), jax.grad(r, (0, 1))(x, t), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    for arg in (0, 1):
        ours = jax.jvp(jax.grad(f, arg), (x, t), (v, w))[1]
        ref = jax.jvp(jax.grad(r, arg), (x, t), (v, w))[1]
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_options_match_sg_numpy(reduction):
    x, y = _x((6, 4)), _labels(6, 4)
    y = y.at[0].set(-100)
    w = np.array([0.5, 1.0, 2.0, 1.5])
    opts = dict(weight=jnp.asarray(w), label_smoothing=0.1, reduction=reduction)
    np_opts = dict(weight=w, label_smoothing=0.1, reduction=reduction)
    xn, yn = np.asarray(x), np.asarray(y)

    def f(o):
        return jnp.sum(sgj.cross_entropy(o, y, **opts))

    loss = sgj.cross_entropy(x, y, **opts)
    np.testing.assert_allclose(loss, sg.cross_entropy(xn, yn, **np_opts), rtol=1e-13)
    g = jax.jit(jax.grad(f))(x)
    np.testing.assert_allclose(g, sg.cross_entropy_grad(xn, yn, **np_opts), rtol=1e-12, atol=1e-15)
    # the Hessian-vector product against finite differences of the closed-form gradient
    v = _x((6, 4), 9)
    h = 1e-6
    fd = (jax.grad(f)(x + h * v) - jax.grad(f)(x - h * v)) / (2 * h)
    np.testing.assert_allclose(_hvp(f, x, v), fd, rtol=1e-6, atol=1e-8)


X64_OFF = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    assert not jax.config.read("jax_enable_x64")
    import softgrad as sg, softgrad.jax as sgj
    x = jnp.array([[20.0, 0.0, 0.0, 0.0]], dtype=jnp.float32)
    y = jnp.array([0])
    ours = jax.jit(jax.grad(lambda o: sgj.cross_entropy(o, y)))(x)
    via_sg = jax.grad(lambda o: sg.cross_entropy(o, y))(x)
    autodiff = jax.grad(lambda o: -jax.nn.log_softmax(o)[0, 0])(x)
    print(float(ours[0, 0]), float(via_sg[0, 0]), float(autodiff[0, 0]), ours.dtype)
    """
)


def test_confident_gradient_with_x64_off():
    """float32 [20, 0, 0, 0], target 0, x64 off: -3 e^-20 / (1 + 3 e^-20); autodiff gives 0."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    run = subprocess.run(
        [sys.executable, "-c", X64_OFF], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    ours, via_sg, autodiff, dtype = run.stdout.split()
    exact = -3 * np.exp(-20.0) / (1 + 3 * np.exp(-20.0))
    assert float(ours) == pytest.approx(exact, rel=1e-6)
    assert float(via_sg) == pytest.approx(exact, rel=1e-6)
    assert float(autodiff) == 0.0
    assert dtype == "float32"
