"""The lean XLA primal of softgrad.jax.cross_entropy (losses/_jax_fast.py) against JAX autodiff
of the plain formula (PyTorch's weighted mean), optax's formula, softgrad's NumPy functions and
the array-API reference it replaces; the routing of the cases it does not take."""

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
from softgrad.losses import _jax_fast  # noqa: E402


def _x(shape, seed=0, dtype=np.float64):
    return jnp.asarray((3 * np.random.default_rng(seed).normal(size=shape)).astype(dtype))


def _labels(shape, c, seed=1):
    return jnp.asarray(np.random.default_rng(seed).integers(0, c, shape))


def _plain(o, y, weight=None, ignore_index=-100, reduction="mean"):
    """PyTorch's cross_entropy on (R, C) rows written with jax.nn, differentiated by JAX."""
    valid = y != ignore_index
    col = jnp.where(valid, y, 0)
    w = jnp.ones(o.shape[-1], o.dtype) if weight is None else weight
    wy = jnp.where(valid, w[col], 0.0)
    rows = -wy * jnp.take_along_axis(jax.nn.log_softmax(o), col[:, None], axis=-1)[:, 0]
    if reduction == "none":
        return rows
    return jnp.sum(rows) if reduction == "sum" else jnp.sum(rows) / jnp.sum(wy)


def _grad_of(loss, reduction):
    """The gradient a ``value_and_grad`` of ``loss`` gives (for "none": of the sum of rows)."""
    return jax.jit(jax.grad(lambda o: jnp.sum(loss(o)) if reduction == "none" else loss(o)))


OPTIONS = [
    {},
    {"weight": np.array([0.5, 1.0, 2.0, 1.5, 0.25, 3.0])},
    {"ignore_index": 2},
    {"weight": np.array([0.5, 1.0, 2.0, 1.5, 0.25, 3.0]), "ignore_index": -100, "ignored": True},
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS, ids=["plain", "weight", "ignore_index", "weight+ignored"])
def test_lean_path_matches_autodiff_of_the_formula(reduction, options):
    x, y = _x((9, 6)), _labels(9, 6)
    options = dict(options)
    if options.pop("ignored", False):
        y = y.at[jnp.array([0, 4])].set(-100)
    w = options.get("weight")
    kw = {**options, "weight": None if w is None else jnp.asarray(w), "reduction": reduction}
    assert _jax_fast.plan(x, y, kw["weight"], -1, kw.get("ignore_index", -100), reduction, 0.0) is not None

    def ours(o):
        return sgj.cross_entropy(o, y, **kw)

    def plain(o):
        return _plain(o, y, kw["weight"], kw.get("ignore_index", -100), reduction)

    np.testing.assert_allclose(jax.jit(ours)(x), plain(x), rtol=1e-13, atol=1e-15)
    ours_grad = _grad_of(ours, reduction)(x)
    np.testing.assert_allclose(ours_grad, _grad_of(plain, reduction)(x), rtol=1e-12, atol=1e-15)
    np_kw = {**options, "reduction": reduction}
    loss, grad = sg.cross_entropy_value_and_grad(np.asarray(x), np.asarray(y), **np_kw)
    np.testing.assert_allclose(ours(x), loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ours_grad, grad, rtol=1e-12, atol=1e-15)
    # the array-API reference that the lean path replaces
    args = (x, y, kw["weight"], -1, kw.get("ignore_index", -100), reduction, 0.0)
    ref = _jax_fast.reference(*args, True)
    lean = _jax_fast.value_and_grad(_jax_fast.plan(*args))
    np.testing.assert_allclose(lean[0], ref[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(lean[1], ref[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hvp_against_the_hessian_of_the_formula(reduction):
    x, y = _x((5, 4), 3), _labels(5, 4, 4)
    w = jnp.asarray([0.5, 2.0, 1.0, 3.0])
    v = _x((5, 4), 5)

    def ours(o):
        return jnp.sum(sgj.cross_entropy(o, y, weight=w, reduction=reduction))

    def plain(o):
        return jnp.sum(_plain(o, y, w, reduction=reduction))

    hvp = jax.jit(lambda o, d: jax.jvp(jax.grad(ours), (o,), (d,))[1])(x, v)
    hessian = jax.hessian(plain)(x)
    np.testing.assert_allclose(hvp, jnp.einsum("ijkl,kl->ij", hessian, v), rtol=1e-11, atol=1e-14)


def test_class_axis_and_batch_axes():
    x = _x((3, 5, 2, 4))  # (N, C, d1, d2), classes on axis 1 as PyTorch
    y = _labels((3, 2, 4), 5)
    rows = jnp.reshape(jnp.moveaxis(x, 1, -1), (-1, 5))

    def ours(o):
        return sgj.cross_entropy(o, y, axis=1)

    def plain(o):
        return _plain(jnp.reshape(jnp.moveaxis(o, 1, -1), (-1, 5)), jnp.reshape(y, (-1,)))

    np.testing.assert_allclose(ours(x), _plain(rows, jnp.reshape(y, (-1,))), rtol=1e-13)
    np.testing.assert_allclose(jax.jit(jax.grad(ours))(x), jax.grad(plain)(x), rtol=1e-12, atol=1e-15)
    none = sgj.cross_entropy(x, y, axis=1, reduction="none")
    assert none.shape == (3, 2, 4)


@pytest.mark.parametrize("in_axes", [(0, 0), (0, None), (None, 0)])
def test_vmap_over_problems(in_axes):
    xs, ys = _x((3, 7, 5)), _labels((3, 7), 5)
    x_in = xs if in_axes[0] == 0 else xs[0]
    y_in = ys if in_axes[1] == 0 else ys[0]
    step = jax.jit(jax.vmap(jax.value_and_grad(lambda o, t: sgj.cross_entropy(o, t)), in_axes=in_axes))
    losses, grads = step(x_in, y_in)
    for b in range(3):
        o = xs[b] if in_axes[0] == 0 else xs[0]
        t = ys[b] if in_axes[1] == 0 else ys[0]
        loss, grad = jax.value_and_grad(lambda o, t=t: _plain(o, t))(o)
        np.testing.assert_allclose(losses[b], loss, rtol=1e-13)
        np.testing.assert_allclose(grads[b], grad, rtol=1e-12, atol=1e-15)


def test_grad_runs_the_primal_once():
    """jax.grad of the loss runs one fused value-and-gradient pass: one row maximum, one exp of
    the logits (and none of the HVP's softmax)."""
    x, y = _x((8, 6)), _labels(8, 6)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda o: sgj.cross_entropy(o, y)))(x))
    assert jaxpr.count("reduce_max") == 1
    assert jaxpr.count("exp ") == 2  # the (R, C) exponentials and each row's target entry
    def hvp_of(o, v):
        return jax.jvp(jax.grad(lambda o: sgj.cross_entropy(o, y)), (o,), (v,))

    hvp = str(jax.make_jaxpr(hvp_of)(x, x))
    assert hvp.count("reduce_max") >= 2  # the HVP's softmax comes in only with the JVP of grad


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("label_smoothing", {"label_smoothing": 0.1}),
        ("probabilities", {"probabilities": True}),
        ("float16", {"dtype": np.float16}),
        ("zero rows", {"shape": (0, 6)}),
        ("zero classes", {"shape": (4, 0)}),
    ],
)
def test_routing_to_the_reference(case, kwargs):
    shape = kwargs.get("shape", (4, 6))
    x = _x(shape, dtype=kwargs.get("dtype", np.float64))
    if kwargs.get("probabilities"):
        y = jax.nn.softmax(_x(shape, 7))
    else:
        y = _labels(shape[0], max(shape[1], 1)) if shape[1] else jnp.full((shape[0],), -100)
    eps = kwargs.get("label_smoothing", 0.0)
    assert _jax_fast.plan(x, y, None, -1, -100, "mean", eps) is None
    if shape[1] == 0:
        return
    loss = jax.jit(lambda o: sgj.cross_entropy(o, y, label_smoothing=eps, reduction="sum"))(x)
    grad = jax.grad(lambda o: sgj.cross_entropy(o, y, label_smoothing=eps, reduction="sum"))(x)
    xn, yn = np.asarray(x), np.asarray(y)
    np_loss, np_grad = sg.cross_entropy_value_and_grad(xn, yn, label_smoothing=eps, reduction="sum")
    tol = 1e-2 if x.dtype == jnp.float16 else 1e-12
    np.testing.assert_allclose(np.asarray(loss, np.float64), np_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(grad, np.float64), np_grad, rtol=tol, atol=tol)


def test_zero_rows_and_one_row():
    x0, y0 = jnp.zeros((0, 5)), jnp.zeros((0,), dtype=int)
    assert np.isnan(sgj.cross_entropy(x0, y0))  # mean over no rows, as PyTorch
    assert jax.grad(lambda o: sgj.cross_entropy(o, y0, reduction="sum"))(x0).shape == (0, 5)
    x1 = _x((5,))
    y1 = jnp.asarray(3)
    assert _jax_fast.plan(x1, y1, None, -1, -100, "mean", 0.0) is not None

    def plain(o):
        return -jax.nn.log_softmax(o)[3]

    np.testing.assert_allclose(sgj.cross_entropy(x1, y1), plain(x1), rtol=1e-13)
    np.testing.assert_allclose(jax.jit(jax.grad(sgj.cross_entropy))(x1, y1), jax.grad(plain)(x1), rtol=1e-12)


def test_infinities_and_nan_match_the_reference():
    x = jnp.asarray(
        [[0.0, -jnp.inf, 1.0], [-jnp.inf, -jnp.inf, -jnp.inf], [2.0, 1.0, -jnp.inf],
         [jnp.nan, 0.0, 1.0], [jnp.nan, 0.0, 1.0], [3.0, 3.0, 0.0]]
    )
    # target at -inf (loss inf); all -inf; NaN row; ignored NaN row (outside the loss: gradient 0); a tie
    y = jnp.asarray([1, 0, 0, 2, -100, 0])
    for reduction in ("none", "sum"):
        problem = _jax_fast.plan(x, y, None, -1, -100, reduction, 0.0)
        lean = jax.jit(lambda o, p=problem: _jax_fast.value_and_grad(p._replace(x=o)))(problem.x)
        ref = _jax_fast.reference(x, y, None, -1, -100, reduction, 0.0, True)
        np.testing.assert_allclose(lean[0], ref[0], rtol=1e-13)
        np.testing.assert_allclose(lean[1], ref[1], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("n", [3, 40])
@pytest.mark.parametrize("path", ["lean", "routed"])
def test_positive_infinities_match_the_reference(n, path):
    """Rows holding +inf: probability 1/k on their k infinite entries (the reference's limit),
    so the loss is log k at one of them and +inf elsewhere. The lean XLA path gave NaN for
    them (its shift by the maximum turned inf - inf into NaN); "routed" is softgrad.jax's own
    choice (the FFI kernel on CPU for 3 classes, the lean path for 40)."""
    x = np.array(_x((6, n)))
    x[0, 1] = np.inf  # one +inf, the target
    x[1, [0, 2]] = np.inf  # two, the target one of them: loss log 2, gradient -1/2 and 1/2
    x[2, [0, 2]] = np.inf  # two, the target elsewhere: loss inf
    x[3, [0, 1]] = np.inf
    x[3, 2] = np.nan  # +inf and NaN: a NaN row
    x[4, :] = np.inf  # all +inf
    y = jnp.asarray([1, 0, 1, 0, 2, 0])
    for reduction in ("none", "sum"):
        problem = _jax_fast.plan(jnp.asarray(x), y, None, -1, -100, reduction, 0.0)
        if path == "lean":
            got = jax.jit(lambda o, p=problem: _jax_fast._rows(p._replace(x=o), True))(problem.x)
        else:
            got = jax.jit(lambda o, p=problem: _jax_fast.value_and_grad(p._replace(x=o)))(problem.x)
        ref = _jax_fast.reference(jnp.asarray(x), y, None, -1, -100, reduction, 0.0, True)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-13)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-13, atol=1e-15)
    loss = _jax_fast.reference(jnp.asarray(x), y, None, -1, -100, "none", 0.0, True)[0]
    assert np.allclose(np.asarray(loss)[[0, 1, 4]], [0.0, np.log(2.0), np.log(n)]) and np.isinf(loss[2])


@pytest.mark.parametrize("weight", [None, jnp.asarray([0.5, 2.0, 1.0])])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_out_of_range_labels_under_jit_give_nan_as_the_reference(reduction, weight):
    x, y = _x((4, 3)), jnp.asarray([0, 5, 2, -1])
    lean = jax.jit(lambda o, t: sgj.cross_entropy(o, t, weight=weight, reduction=reduction))(x, y)
    def total(o, t):
        return jnp.sum(sgj.cross_entropy(o, t, weight=weight, reduction=reduction))

    grad = jax.jit(jax.grad(total))(x, y)
    ref = jax.jit(lambda o, t: _jax_fast.reference(o, t, weight, -1, -100, reduction, 0.0, True))(x, y)
    np.testing.assert_array_equal(np.isnan(lean), np.isnan(ref[0]))
    np.testing.assert_allclose(lean, ref[0], rtol=1e-13)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref[1]))
    assert np.isnan(grad[1]).all() and np.isnan(grad[3]).all()
    if weight is None or reduction != "mean":
        assert np.isfinite(grad[0]).all() and np.isfinite(grad[2]).all()
    np.testing.assert_allclose(grad, ref[1], rtol=1e-12)


X64_OFF = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    assert not jax.config.read("jax_enable_x64")
    import softgrad.jax as sgj
    from softgrad.losses import _jax_fast
    rng = np.random.default_rng(0)
    x = jnp.asarray((3 * rng.normal(size=(64, 50))).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 50, 64))  # int32 with x64 off
    w = jnp.asarray(rng.uniform(0.5, 2.0, 50).astype(np.float32))
    out = {"dtype": str(y.dtype), "plan": _jax_fast.plan(x, y, w, -1, -100, "mean", 0.0) is not None}
    for name, kw in (("plain", {}), ("weight", {"weight": w})):
        loss, g = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, y, **kw)))(x)
        out[name] = [float(loss), np.asarray(g, np.float64).tolist(), str(g.dtype), str(loss.dtype)]
    c = jnp.array([[20.0, 0.0, 0.0, 0.0], [0.0, 20.0, 0.0, 0.0]], dtype=jnp.float32)
    t = jnp.array([0, 1])
    loss, g = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, t, reduction="sum")))(c)
    rows = jax.jit(lambda o: sgj.cross_entropy(o, t, reduction="none"))(c)
    naive = jax.grad(lambda o: -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(o), t[:, None], 1)))(c)
    out["confident"] = [float(loss), float(g[0, 0]), float(g[1, 1]), float(rows[0]), float(naive[0, 0])]
    print(json.dumps(out))
    """
)


def test_float32_with_x64_off():
    """x64 off (JAX's default): int32 labels, float32 throughout; values against float64 NumPy
    softgrad; the confident gradient and loss (autodiff of log_softmax gives 0 for both)."""
    import json

    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    run = subprocess.run(
        [sys.executable, "-c", X64_OFF], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["dtype"] == "int32" and out["plan"]
    rng = np.random.default_rng(0)
    x = (3 * rng.normal(size=(64, 50))).astype(np.float32).astype(np.float64)
    y = rng.integers(0, 50, 64)
    w = rng.uniform(0.5, 2.0, 50).astype(np.float32).astype(np.float64)
    for name, kw in (("plain", {}), ("weight", {"weight": w})):
        loss, grad = sg.cross_entropy_value_and_grad(x, y, **kw)
        got_loss, got_grad, g_dtype, l_dtype = out[name]
        assert (g_dtype, l_dtype) == ("float32", "float32")
        assert got_loss == pytest.approx(loss, rel=2e-6)
        np.testing.assert_allclose(got_grad, grad, rtol=2e-5, atol=1e-9)
    loss, g00, g11, row0, naive = out["confident"]
    exact = 3 * np.exp(-20.0) / (1 + 3 * np.exp(-20.0))
    assert g00 == pytest.approx(-exact, rel=1e-6) and g11 == pytest.approx(-exact, rel=1e-6)
    assert row0 == pytest.approx(np.log1p(3 * np.exp(-20.0)), rel=1e-6)
    assert loss == pytest.approx(2 * np.log1p(3 * np.exp(-20.0)), rel=1e-6)
    assert naive == 0.0


@pytest.mark.parametrize("n_classes", [_jax_fast.SELECT_MAX, _jax_fast.SELECT_MAX + 1, 200])
def test_long_rows_scatter_form(n_classes):
    """Rows longer than SELECT_MAX zero and write the target entries by scatters: the same values."""
    x, y = _x((7, n_classes), 11), _labels(7, n_classes, 12)
    y = y.at[3].set(-100)
    w = jnp.asarray(np.random.default_rng(13).uniform(0.5, 2.0, n_classes))
    x = x.at[1, y[1]].set(50.0)  # a confident row: the top-1 form at the target

    def ours(o):
        return sgj.cross_entropy(o, y, weight=w)

    def plain(o):
        return _plain(o, y, w)

    loss, grad = jax.jit(jax.value_and_grad(ours))(x)
    np.testing.assert_allclose(loss, plain(x), rtol=1e-13)
    np.testing.assert_allclose(grad, jax.grad(plain)(x), rtol=1e-12, atol=1e-16)
    np_loss, np_grad = sg.cross_entropy_value_and_grad(np.asarray(x), np.asarray(y), weight=np.asarray(w))
    np.testing.assert_allclose(loss, np_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, np_grad, rtol=1e-12, atol=1e-30)  # the confident entry too


def _plain_linear(x, W, b, t, reduction):
    return _plain(x @ W.T + b, t, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy_against_autodiff_of_the_formula(reduction):
    rng = np.random.default_rng(21)
    x, W = jnp.asarray(rng.normal(size=(11, 5))), jnp.asarray(rng.normal(size=(7, 5)))
    b, t = jnp.asarray(rng.normal(size=7)), _labels(11, 7, 22).at[4].set(-100)

    def ours(x, W, b):
        return jnp.sum(sgj.linear_cross_entropy(x, W, t, b, reduction=reduction, chunk_size=4))

    def plain(x, W, b):
        return jnp.sum(_plain_linear(x, W, b, t, reduction))

    np.testing.assert_allclose(
        sgj.linear_cross_entropy(x, W, t, b, reduction=reduction, chunk_size=4),
        _plain_linear(x, W, b, t, reduction), rtol=1e-13,
    )
    grads = jax.jit(jax.grad(ours, (0, 1, 2)))(x, W, b)
    for a, r in zip(grads, jax.grad(plain, (0, 1, 2))(x, W, b), strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-14)
    xs = jnp.stack([x, 2 * x])  # vmap over a batch of problems sharing W and b
    per = jax.vmap(jax.grad(ours, (0, 1)), in_axes=(0, None, None))(xs, W, b)
    for k in range(2):
        ref = jax.grad(plain, (0, 1))(xs[k], W, b)
        np.testing.assert_allclose(per[0][k], ref[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(per[1][k], ref[1], rtol=1e-12, atol=1e-14)


def test_linear_cross_entropy_never_forms_the_logits():
    """No (N, C) array in the jaxpr of the value and gradient (N = 64 rows, C = 48, chunks of 8)."""
    x, W, t = jnp.ones((64, 5)), jnp.ones((48, 5)), jnp.zeros(64, dtype=int)
    def loss(x, W):
        return sgj.linear_cross_entropy(x, W, t, chunk_size=8)

    jaxpr = str(jax.make_jaxpr(jax.value_and_grad(loss, (0, 1)))(x, W))
    assert "[8,48]" in jaxpr and "[64,48]" not in jaxpr
    with pytest.raises(ValueError, match="weight"):
        sgj.linear_cross_entropy(x, jnp.ones((48, 4)), t)
    with pytest.raises(ValueError, match="target"):
        sgj.linear_cross_entropy(x, W, t[:3])
    with pytest.raises(TypeError, match="float32 or float64"):
        sgj.linear_cross_entropy(x.astype(jnp.float16), W.astype(jnp.float16), t)


@pytest.mark.parametrize("classes", [6, 40])  # the FFI kernel's short rows, the lean XLA path
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy_gradient_from_three_products_and_its_hessian(reduction, classes):
    """For "mean"/"sum" the VJP's forward pass computes the gradients (x W^T, g^T x, g W: three
    products, as autodiff of the formula); "none" scans again (four). Both stay differentiable:
    the Hessian in W against jax.hessian of the plain formula."""
    rng = np.random.default_rng(23)
    x, W = jnp.asarray(rng.normal(size=(9, 4))), jnp.asarray(rng.normal(size=(classes, 4)))
    b, t = jnp.asarray(rng.normal(size=classes)), _labels(9, classes, 24).at[2].set(-100)

    def ours(W):
        return jnp.sum(sgj.linear_cross_entropy(x, W, t, b, reduction=reduction, chunk_size=4))

    def plain(W):
        return jnp.sum(_plain_linear(x, W, b, t, reduction))

    jaxpr = str(jax.make_jaxpr(jax.value_and_grad(ours))(W))
    assert jaxpr.count("dot_general") == (4 if reduction == "none" else 3)
    want = jax.hessian(plain)(W)
    np.testing.assert_allclose(jax.jacrev(jax.grad(ours))(W), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.hessian(ours)(W), want, rtol=1e-12, atol=1e-14)
