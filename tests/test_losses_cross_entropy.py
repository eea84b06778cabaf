"""cross_entropy and its derivatives against PyTorch, scikit-learn and mpmath."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import softgrad as sg

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(20261103)
C = 5


def _case(shape_kind, kind, ignore_index, rng):
    """Logits, our axis, the torch view of the logits (class dim 1), and a target."""
    if shape_kind == "1d":
        logits = rng.normal(size=C) * 2
        axis = -1
        idx = np.asarray(rng.integers(0, C))
    elif shape_kind == "2d":
        logits = rng.normal(size=(7, C)) * 2
        axis = -1
        idx = rng.integers(0, C, size=7)
    else:  # (B, C, d): class axis 1 as in torch
        logits = rng.normal(size=(4, C, 3)) * 2
        axis = 1
        idx = rng.integers(0, C, size=(4, 3))
    if kind == "index":
        if idx.ndim:
            idx = idx.copy()
            idx.flat[::3] = ignore_index  # some rows ignored
        target = idx.astype(np.int64)
    else:
        t = rng.random(size=logits.shape)
        if shape_kind == "2d":
            t[0] = 0.0
            t[0, 1] = 1.0  # a one-hot row
        target = t / t.sum(axis=axis, keepdims=True)
    return logits, axis, target


def _torch_loss(logits, axis, target, **kw):
    xt = torch.tensor(np.moveaxis(logits, axis, 1) if logits.ndim > 1 else logits, requires_grad=True)
    tt = torch.tensor(np.moveaxis(target, axis, 1) if target.ndim == logits.ndim > 1 else target)
    if "weight" in kw and kw["weight"] is not None:
        kw["weight"] = torch.tensor(kw["weight"])
    return xt, F.cross_entropy(xt, tt, **kw)


def _from_torch_grad(g, logits, axis):
    g = g.numpy()
    return np.moveaxis(g, 1, axis) if logits.ndim > 1 else g


GRID = list(
    itertools.product(
        ["1d", "2d", "3d"],
        ["index", "probs"],
        [None, "w"],
        [-100, 2],
        [0.0, 0.3],
        ["mean", "sum", "none"],
    )
)


@pytest.mark.parametrize(("shape_kind", "kind", "weight", "ignore_index", "smoothing", "reduction"), GRID)
def test_matches_torch_value_grad_hvp(shape_kind, kind, weight, ignore_index, smoothing, reduction):
    rng = np.random.default_rng(GRID.index((shape_kind, kind, weight, ignore_index, smoothing, reduction)))
    logits, axis, target = _case(shape_kind, kind, ignore_index, rng)
    w = rng.uniform(0.2, 2.0, size=C) if weight else None
    kw = dict(weight=w, ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)
    if kind == "probs" and ignore_index != -100:  # torch refuses this combination; so do we
        with pytest.raises(RuntimeError, match="ignore_index"):
            _torch_loss(logits, axis, target, **kw)
        with pytest.raises(ValueError, match="ignore_index applies to class-index targets only"):
            sg.cross_entropy(logits, target, axis, **kw)
        return
    xt, lt = _torch_loss(logits, axis, target, **kw)
    (gt,) = torch.autograd.grad(lt.sum(), xt)

    ours = sg.cross_entropy(logits, target, axis, **kw)
    np.testing.assert_allclose(ours, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
    loss, grad = sg.cross_entropy_value_and_grad(logits, target, axis, **kw)
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, _from_torch_grad(gt, logits, axis), rtol=1e-11, atol=1e-14)
    np.testing.assert_array_equal(grad, sg.cross_entropy_grad(logits, target, axis, **kw))

    # HVP: forward-over-reverse with torch.func on the summed loss
    v = rng.normal(size=logits.shape)
    tt = torch.tensor(np.moveaxis(target, axis, 1) if target.ndim == logits.ndim > 1 else target)
    tkw = dict(kw, weight=None if w is None else torch.tensor(w))

    def f(z):
        return F.cross_entropy(z, tt, **tkw).sum()

    x0 = torch.tensor(np.moveaxis(logits, axis, 1) if logits.ndim > 1 else logits)
    v0 = torch.tensor(np.moveaxis(v, axis, 1) if logits.ndim > 1 else v)
    _, hv_t = torch.func.jvp(torch.func.grad(f), (x0,), (v0,))
    hv = sg.cross_entropy_hvp(logits, target, v, axis, **kw)
    np.testing.assert_allclose(hv, _from_torch_grad(hv_t, logits, axis), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_sample_weight(kind, reduction):
    rng = np.random.default_rng(7)
    logits, axis, target = _case("2d", kind, -100, rng)
    sw = rng.uniform(0.0, 3.0, size=7)
    w = rng.uniform(0.5, 2.0, size=C)
    kw = dict(weight=w, label_smoothing=0.1)
    xt, lt = _torch_loss(logits, axis, target, reduction="none", **kw)
    swt = torch.tensor(sw)
    total = (lt * swt).sum()
    if kind == "index":
        valid = target != -100
        wy = np.where(valid, w[np.where(valid, target, 0)], 0.0)
        denom = (swt * torch.tensor(wy)).sum()
    else:
        denom = swt.sum()
    expected = {"none": lt * swt, "sum": total, "mean": total / denom}[reduction]
    (ge,) = torch.autograd.grad(expected.sum(), xt)
    loss, grad = sg.cross_entropy_value_and_grad(logits, target, reduction=reduction, sample_weight=sw, **kw)
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, ge.numpy(), rtol=1e-11, atol=1e-15)
    v = rng.normal(size=logits.shape)
    hv = sg.cross_entropy_hvp(logits, target, v, reduction=reduction, sample_weight=sw, **kw)

    def f(z):
        lz = F.cross_entropy(z, torch.tensor(target), reduction="none", weight=torch.tensor(w),
                             label_smoothing=0.1) * swt
        return lz.sum() / denom if reduction == "mean" else lz.sum()

    _, hv_t = torch.func.jvp(torch.func.grad(f), (torch.tensor(logits),), (torch.tensor(v),))
    np.testing.assert_allclose(hv, hv_t.numpy(), rtol=1e-10, atol=1e-15)


def test_sample_weight_mean_is_sklearn_log_loss():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(50, 4))
    y = rng.integers(0, 4, size=50)
    sw = rng.uniform(0.1, 2.0, size=50)
    expected = log_loss(y, sg.softmax(logits), sample_weight=sw, labels=range(4))
    assert float(sg.cross_entropy(logits, y, sample_weight=sw)) == pytest.approx(expected, rel=1e-12)


def test_estimator_hot_path_float32():
    """The call SoftmaxRegression makes: float32 logits, reduction="sum", sample weights."""
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 6, size=300)
    sw = rng.uniform(0.5, 1.5, size=300)
    loss, grad = sg.cross_entropy_value_and_grad(logits, y, reduction="sum", sample_weight=sw)
    assert grad.dtype == np.float32 and np.asarray(loss).dtype == np.float32
    xt = torch.tensor(logits.astype(np.float64), requires_grad=True)
    lt = (F.cross_entropy(xt, torch.tensor(y), reduction="none") * torch.tensor(sw)).sum()
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-6, atol=1e-7)
    v = rng.normal(size=logits.shape).astype(np.float32)
    hv = sg.cross_entropy_hvp(logits, y, v, reduction="sum", sample_weight=sw)
    assert hv.dtype == np.float32


def test_blocked_numpy_path_matches_single_block(monkeypatch):
    """Large NumPy input runs in row blocks: the result must not depend on the block size."""
    import sys

    mod = sys.modules["softgrad.losses.cross_entropy"]
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(1000, 7)) * 3
    y = rng.integers(0, 7, size=1000)
    sw = rng.random(1000)
    loss1, g1 = sg.cross_entropy_value_and_grad(logits, y, sample_weight=sw, reduction="none")
    monkeypatch.setattr(mod, "_BLOCK_ELEMENTS", 7 * 64)
    loss2, g2 = sg.cross_entropy_value_and_grad(logits, y, sample_weight=sw, reduction="none")
    np.testing.assert_array_equal(loss1, loss2)
    np.testing.assert_array_equal(g1, g2)


# ----------------------------------------------------------------------------------------------
# accuracy when the true class dominates


def test_confident_loss_is_log1p_not_zero():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for x in ([40.0, 0.0], [20.0, 0.0, 0.0, 0.0], [700.0, 0.0, -5.0]):
        exact = mpmath.log1p(sum(mpmath.exp(mpmath.mpf(v) - mpmath.mpf(x[0])) for v in x[1:]))
        got = float(sg.cross_entropy(np.array(x), 0))
        assert got == pytest.approx(float(exact), rel=4e-16)


def _mp_grad(row, y):
    import mpmath

    e = [mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(float(row[y]))) for v in row]
    z = sum(e)
    g = [ei / z for ei in e]
    g[y] = -sum(e[j] for j in range(len(row)) if j != y) / z
    return g


def test_confident_gradient_float32_vs_mpmath():
    """float32 logits where p_y -> 1: every entry of the gradient within a few ULP of exact."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    rng = np.random.default_rng(1)
    rows = [np.float32([20, 0, 0, 0])]
    for _ in range(200):
        c = int(rng.integers(2, 12))
        r = rng.normal(size=c).astype(np.float32)
        r[0] = np.float32(rng.uniform(8.0, 80.0)) + r.max()
        rows.append(r)
    worst = 0.0
    for r in rows:
        g = sg.cross_entropy_grad(r, 0)
        assert g.dtype == np.float32
        exact = _mp_grad(r, 0)
        for gi, ei in zip(g, exact, strict=True):
            if ei != 0 and abs(float(ei)) > np.finfo(np.float32).tiny:
                worst = max(worst, float(abs((mpmath.mpf(float(gi)) - ei) / ei)))
    assert float(sg.cross_entropy_grad(np.float32([20, 0, 0, 0]), 0)[0]) == pytest.approx(
        -6.1834e-9, rel=1e-4
    )
    assert worst < 2 * np.finfo(np.float32).eps, worst  # at most an ULP or so: rounded once


# ----------------------------------------------------------------------------------------------
# special values


def test_special_rows():
    g = sg.cross_entropy_grad(np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]]),
                              np.array([0, 1]), reduction="sum")
    assert np.all(np.isfinite(g)) and np.all(g[1] == 0) and g[0, 1] == 0
    loss = sg.cross_entropy(np.array([[0.0, -np.inf]]), np.array([1]), reduction="none")
    assert loss[0] == np.inf
    nan_row = sg.cross_entropy(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.array([0, 0]), reduction="none")
    assert np.isnan(nan_row[0]) and np.isfinite(nan_row[1])
    # all rows ignored: NaN mean (as torch), zero gradient
    loss, grad = sg.cross_entropy_value_and_grad(np.ones((2, 3)), np.array([-100, -100]))
    assert np.isnan(loss) and np.all(grad == 0)
    xt = torch.ones((2, 3), dtype=torch.float64, requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor([-100, -100]))
    lt.backward()
    assert torch.isnan(lt) and torch.all(xt.grad == 0)
    # huge logits do not overflow
    loss, grad = sg.cross_entropy_value_and_grad(np.array([[1e308, -1e308, 0.0]]), np.array([2]))
    assert loss == pytest.approx(1e308, rel=1e-15)
    np.testing.assert_array_equal(grad, [[1.0, 0.0, -1.0]])


def test_half_precision_keeps_dtype():
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float16)
    loss, grad = sg.cross_entropy_value_and_grad(logits, np.array([2]))
    assert grad.dtype == np.float16 and np.asarray(loss).dtype == np.float16
    np.testing.assert_allclose(grad, sg.softmax(logits.astype(np.float64)) - [0, 0, 1], atol=1e-3)


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(target=np.array([0, 5])), ValueError, "target holds class index 5"),
        (dict(target=np.array([0, -1])), ValueError, "target holds class index -1"),
        (dict(target=np.array([0.0, 1.0])), TypeError, "integer"),
        (dict(target=np.array([0, 1, 2])), ValueError, "target"),
        (dict(target=-np.ones((2, 3))), ValueError, "target probabilities must be >= 0"),
        (dict(target=np.ones((2, 4))), ValueError, "target"),
        (dict(target=np.array([True, False])), TypeError, "target"),
        (dict(weight=np.ones(4)), ValueError, "weight must have shape"),
        (dict(sample_weight=np.ones(3)), ValueError, "sample_weight must have shape"),
        (dict(reduction="avg"), ValueError, "reduction must be one of"),
        (dict(label_smoothing=1.5), ValueError, "label_smoothing must be in"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(label_smoothing="x"), TypeError, "label_smoothing"),
        (dict(ignore_index=1.5), TypeError, "ignore_index"),
        (dict(axis=2), ValueError, "axis"),
        (dict(logits="abc"), TypeError, "logits"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(logits=np.zeros((2, 3)), target=np.array([0, 1]))
    args.update(kwargs)
    logits, target = args.pop("logits"), args.pop("target")
    axis = args.pop("axis", -1)
    with pytest.raises(exc, match=match):
        sg.cross_entropy(logits, target, axis, **args)
    with pytest.raises(exc, match=match):
        sg.cross_entropy_hvp(logits, target, np.zeros((2, 3)), axis, **args)


def test_bad_tangent():
    with pytest.raises(ValueError, match="v must have"):
        sg.cross_entropy_hvp(np.zeros((2, 3)), np.array([0, 1]), np.zeros((3, 2)))


def test_ignore_index_in_range_is_not_an_error():
    loss = sg.cross_entropy(np.zeros((2, 3)), np.array([0, 7]), ignore_index=7, reduction="none")
    assert loss[1] == 0.0


# ----------------------------------------------------------------------------------------------
# backends


def _numpy(a):
    if hasattr(a, "detach"):
        return a.detach().numpy()
    if hasattr(a, "compute"):
        return np.asarray(a.compute())
    try:
        return np.asarray(a)
    except (TypeError, ValueError):
        return np.from_dlpack(a)


def _backend(name):
    if name == "torch":
        return torch.tensor
    if name == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray
    if name == "dask":
        da = pytest.importorskip("dask.array")
        return lambda a: da.from_array(np.asarray(a), chunks=2)
    if name == "array_api_strict":
        xps = pytest.importorskip("array_api_strict")
        return xps.asarray
    raise AssertionError(name)


def _forbid_compute(*args, **kwargs):
    raise AssertionError("dask graph was computed inside softgrad")


@pytest.mark.parametrize("backend", ["torch", "jax", "dask", "array_api_strict"])
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_backends_match_numpy(backend, kind):
    conv = _backend(backend)
    rng = np.random.default_rng(9)
    logits, axis, target = _case("3d", kind, -100, rng)
    w = rng.uniform(0.5, 2.0, size=C)
    sw = rng.uniform(0.5, 2.0, size=(4, 3))
    v = rng.normal(size=logits.shape)
    kw = dict(weight=w, label_smoothing=0.2, sample_weight=sw)
    expected = sg.cross_entropy_value_and_grad(logits, target, axis, **kw)
    expected_hv = sg.cross_entropy_hvp(logits, target, v, axis, **kw)
    kw_b = dict(kw, weight=conv(w), sample_weight=conv(sw))
    args = (conv(logits), conv(target))
    if backend == "dask":
        import dask

        with dask.config.set(scheduler=_forbid_compute):
            loss, grad = sg.cross_entropy_value_and_grad(*args, axis, **kw_b)
            hv = sg.cross_entropy_hvp(*args, conv(v), axis, **kw_b)
    elif backend == "jax":
        import jax

        f = jax.jit(lambda x, t, vv, w_, s_: (
            sg.cross_entropy_value_and_grad(x, t, axis, weight=w_, sample_weight=s_, label_smoothing=0.2),
            sg.cross_entropy_hvp(x, t, vv, axis, weight=w_, sample_weight=s_, label_smoothing=0.2),
        ))
        (loss, grad), hv = f(*args, conv(v), kw_b["weight"], kw_b["sample_weight"])
    else:
        loss, grad = sg.cross_entropy_value_and_grad(*args, axis, **kw_b)
        hv = sg.cross_entropy_hvp(*args, conv(v), axis, **kw_b)
    assert type(grad) is type(args[0]) or backend == "jax"
    np.testing.assert_allclose(_numpy(loss), expected[0], rtol=1e-13)
    np.testing.assert_allclose(_numpy(grad), expected[1], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(_numpy(hv), expected_hv, rtol=1e-13, atol=1e-16)


def test_torch_float32_stays_float32():
    x = torch.randn(4, 3, dtype=torch.float32)
    loss, grad = sg.cross_entropy_value_and_grad(x, torch.tensor([0, 1, 2, 0]))
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32


def test_lazy_out_of_range_label_gives_nan():
    da = pytest.importorskip("dask.array")
    x = da.from_array(np.zeros((2, 3)), chunks=1)
    t = da.from_array(np.array([0, 9]), chunks=1)
    loss = sg.cross_entropy(x, t, reduction="none").compute()
    assert np.isfinite(loss[0]) and np.isnan(loss[1])


def test_public_surface():
    import sys

    mod = sys.modules["softgrad.losses.cross_entropy"]

    public = {n for n in vars(mod) if not n.startswith("_") and callable(getattr(mod, n))
              and getattr(getattr(mod, n), "__module__", "") == mod.__name__}
    assert public == set(mod.__all__)


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regression_nan_logit_gives_nan_gradient_not_zero(kernels, dtype):
    """A NaN logit made the row's loss NaN but its gradient 0; PyTorch (and the contract) say NaN."""
    torch = pytest.importorskip("torch")
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype=dtype)
    y = np.array([0, 1])
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(xt, torch.tensor(y), reduction="sum").backward()
    with sg.config.kernels(kernels):
        loss, grad = sg.cross_entropy_value_and_grad(x, y, reduction="none")
    assert np.isnan(loss[0]) and np.all(np.isnan(grad[0]))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(xt.grad.numpy()))
    np.testing.assert_allclose(grad[1], xt.grad.numpy()[1], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_grad_out_is_written_and_returned(dtype, kind, kernel_path):
    """``grad_out=`` / ``out=`` hold exactly the gradient the allocating call returns (torch's,
    checked above), on both paths: last and middle class axes, in place over the logits, an
    ``out`` that overlaps the logits only partly, and every reduction."""
    rng = np.random.default_rng(31)
    x = (rng.normal(size=(40, C)) * 3).astype(dtype)
    y = rng.integers(0, C, 40) if kind == "index" else rng.dirichlet(np.ones(C), 40).astype(dtype)
    for reduction in ("mean", "sum", "none"):
        loss, grad = sg.cross_entropy_value_and_grad(x, y, reduction=reduction)
        out = np.full_like(x, np.nan)
        loss2, got = sg.cross_entropy_value_and_grad(x, y, reduction=reduction, grad_out=out)
        assert got is out
        np.testing.assert_array_equal(out, grad)
        np.testing.assert_array_equal(loss2, loss)
        out2 = np.full_like(x, np.nan)
        assert sg.cross_entropy_grad(x, y, reduction=reduction, out=out2) is out2
        np.testing.assert_array_equal(out2, grad)
    grad = sg.cross_entropy_grad(x, y)
    inplace = x.copy()
    assert sg.cross_entropy_grad(inplace, y, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, grad)
    buf = np.concatenate([x, x[:1]])  # out is the logits shifted by one row: it must not race
    logits, shifted = buf[:-1], buf[1:]
    assert sg.cross_entropy_grad(logits, y, out=shifted) is shifted
    np.testing.assert_array_equal(shifted, grad)
    x3 = np.moveaxis(x.reshape(8, 5, C), 2, 1)  # classes on axis 1
    y3 = y.reshape(8, 5) if kind == "index" else np.moveaxis(y.reshape(8, 5, C), 2, 1)
    out3 = np.empty_like(x3)
    assert sg.cross_entropy_grad(x3, y3, axis=1, out=out3) is out3
    np.testing.assert_array_equal(out3, sg.cross_entropy_grad(x3, y3, axis=1))


def test_grad_out_rejects_the_wrong_array():
    x = np.zeros((3, C), np.float32)
    y = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"grad_out must have shape \(3, 5\) and dtype float32"):
        sg.cross_entropy_value_and_grad(x, y, grad_out=np.zeros((3, C)))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 5\)"):
        sg.cross_entropy_grad(x, y, out=np.zeros((3, C + 1), np.float32))
    with pytest.raises(TypeError, match="grad_out= must be a NumPy array, got Tensor"):
        sg.cross_entropy_value_and_grad(x, y, grad_out=torch.zeros(3, C))
    with pytest.raises(TypeError, match="out= is supported for NumPy logits only, got Tensor logits"):
        sg.cross_entropy_grad(torch.zeros(3, C), torch.tensor(y), out=np.zeros((3, C), np.float32))


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch", "jax"])
def test_rows_outside_the_loss_have_zero_derivatives_even_at_nan(backend):
    """An ignored row, a class of weight 0 and an all-zero probability row do not enter the loss:
    their gradient and HVP are 0 on every path (kernels, the array-API reference, the torch op and
    the lean JAX path), also where their logits are NaN or inf. Before, the reference and the JAX
    path gave NaN where the NumPy kernels gave 0."""
    lib = pytest.importorskip({"jax": "jax.numpy"}.get(backend, backend))
    x = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [np.nan, 1.0, 0.0]])
    y = np.array([0, -100, -100, 1])
    weight = np.array([1.0, 0.0, 2.0])  # row 3's class has weight 0
    X, Y, W, V = (lib.asarray(a) for a in (x, y, weight, np.ones_like(x)))
    for reduction in ("mean", "sum", "none"):
        loss, grad = sg.cross_entropy_value_and_grad(X, Y, weight=W, reduction=reduction)
        hvp = sg.cross_entropy_hvp(X, Y, V, weight=W, reduction=reduction)
        assert np.isfinite(np.asarray(loss)).all()
        np.testing.assert_array_equal(np.asarray(grad)[1:], 0.0)
        np.testing.assert_array_equal(np.asarray(hvp)[1:], 0.0)
        assert np.isfinite(np.asarray(grad)[0]).all() and np.asarray(grad)[0].any()
    q = lib.asarray(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    _, grad = sg.cross_entropy_value_and_grad(lib.asarray(x[:2]), q)
    np.testing.assert_array_equal(np.asarray(grad)[1], 0.0)
    if backend == "jax":
        import jax

        import softgrad.jax as sgj

        g = jax.grad(lambda o: sgj.cross_entropy(o, Y, weight=W, reduction="sum"))(X)
        np.testing.assert_array_equal(np.asarray(g)[1:], 0.0)
    if backend == "torch":
        import softgrad.torch as sgt

        t = lib.tensor(x, requires_grad=True)
        (g,) = lib.autograd.grad(sgt.cross_entropy(t, Y, weight=W, reduction="sum"), t)
        np.testing.assert_array_equal(g.numpy()[1:], 0.0)
