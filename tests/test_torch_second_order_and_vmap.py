"""softgrad.torch's gaps of #14 closed: linear_cross_entropy's HVP and vmap, batching rules that
fold the vmapped dimension into the rows, gradients for probability targets and class weights,
and the fast path of sg.cross_entropy on torch tensors without grad.

Oracles: torch autograd of F.cross_entropy / F.linear (and, where torch does not differentiate
the class weights, of the same loss written with F.log_softmax), gradcheck and gradgradcheck
(finite differences), the per-sample loop.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch.func import grad, vjp, vmap  # noqa: E402

import softgrad as sg  # noqa: E402
import softgrad.torch as sgt  # noqa: E402
from softgrad.core import _computes  # noqa: E402

REDUCTIONS = ["mean", "sum", "none"]
f64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _linear_problem(n=7, d=5, c=6, seed=0):
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=f64, requires_grad=True)
    W = torch.randn(c, d, generator=g, dtype=f64, requires_grad=True)
    b = torch.randn(c, generator=g, dtype=f64, requires_grad=True)
    y = torch.randint(0, c, (n,), generator=g)
    y[0] = -100
    return x, W, b, y, torch.linspace(0.5, 2.0, c, dtype=f64)


def _assert_all_close(ours, ref, rtol):
    for a, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, r, rtol=rtol, atol=rtol * 1e-3)


def _double_backward(fn, params, cot, directions):
    """H v by reverse over reverse: d/dp <grad(<cot, fn>), v>."""
    grads = torch.autograd.grad(fn(*params), params, cot, create_graph=True)
    return torch.autograd.grad(grads, params, directions)


# ----------------------------------------------------------------------------------------------
# 1. linear_cross_entropy: twice differentiable, vmap


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_linear_cross_entropy_gradgradcheck(reduction):
    x, W, b, y, cw = _linear_problem(n=5, d=3, c=4)
    cw = cw[:4]

    def loss(x, W, b):
        return sgt.linear_cross_entropy(x, W, y, b, class_weight=cw, reduction=reduction, label_smoothing=0.1)

    assert torch.autograd.gradcheck(loss, (x, W, b))
    assert torch.autograd.gradgradcheck(loss, (x, W, b))


@pytest.mark.parametrize(("reduction", "probabilities"), list(itertools.product(REDUCTIONS, [False, True])))
def test_linear_cross_entropy_hvp_matches_torch(reduction, probabilities):
    x, W, b, y, cw = _linear_problem()
    if probabilities:
        y = torch.softmax(torch.randn(7, 6, generator=_gen(5), dtype=f64), 1)
    opts = dict(reduction=reduction, label_smoothing=0.1)
    params = (x, W, b)
    cot = torch.rand_like(F.cross_entropy(F.linear(x, W, b), y, **opts)) + 0.5
    directions = [torch.randn(p.shape, generator=_gen(9), dtype=f64) for p in params]
    ours = _double_backward(lambda x, W, b: sgt.linear_cross_entropy(x, W, y, b, class_weight=cw, **opts),
                            params, cot, directions)
    ref = _double_backward(lambda x, W, b: F.cross_entropy(F.linear(x, W, b), y, weight=cw, **opts),
                           params, cot, directions)
    for a, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-13)


def test_linear_cross_entropy_hvp_runs_chunk_by_chunk(monkeypatch):
    """Several chunks (chunk size 2 rows) give the same HVP as one."""
    from softgrad.losses import _torch_rules

    x, W, b, y, cw = _linear_problem(n=9)
    params, cot = (x, W, b), torch.tensor(1.0, dtype=f64)
    directions = [torch.randn(p.shape, generator=_gen(3), dtype=f64) for p in params]

    def loss(x, W, b):
        return sgt.linear_cross_entropy(x, W, y, b, class_weight=cw)

    whole = _double_backward(loss, params, cot, directions)
    monkeypatch.setattr(_torch_rules, "_hvp_chunk", lambda n_classes, itemsize: 2)
    chunked = _double_backward(loss, params, cot, directions)
    for a, r in zip(chunked, whole, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-14)


def test_linear_cross_entropy_per_sample_gradients():
    x, W, b, y, _ = _linear_problem()
    y = y.clamp(min=0)

    def per_sample(loss):
        per_sample_grad = vmap(grad(loss, argnums=(0, 1)), in_dims=(None, None, 0, 0))
        return per_sample_grad(W.detach(), b.detach(), x.detach(), y)

    ours = per_sample(lambda W, b, xi, yi: sgt.linear_cross_entropy(xi, W, yi, b))
    ref = per_sample(lambda W, b, xi, yi: F.cross_entropy(F.linear(xi, W, b), yi))
    for a, r in zip(ours, ref, strict=True):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_linear_cross_entropy_vmap_folds_the_batch(reduction, monkeypatch):
    _, W, b, _, cw = _linear_problem()
    g = _gen(4)
    xb = torch.randn(3, 4, 5, generator=g, dtype=f64)
    yb = torch.randint(0, 6, (3, 4), generator=g)
    yb[1] = -100  # a member with every row ignored: its mean is NaN, as torch's
    W, b = W.detach(), b.detach()
    calls = _count_calls(monkeypatch, "linear_cross_entropy")
    opts = dict(reduction=reduction)
    ours = vmap(lambda xi, yi: sgt.linear_cross_entropy(xi, W, yi, b, class_weight=cw, **opts))(xb, yb)
    assert calls == [1]  # one chunked pass for the whole batch
    ref = torch.stack([F.cross_entropy(F.linear(xb[i], W, b), yb[i], weight=cw, **opts) for i in range(3)])
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_linear_cross_entropy_rejects_a_target_that_requires_grad():
    x, W, b, _, _ = _linear_problem()
    q = torch.rand(7, 6, dtype=f64, requires_grad=True)
    with pytest.raises(ValueError, match="target must not require grad"):
        sgt.linear_cross_entropy(x, W, q, b)


# ----------------------------------------------------------------------------------------------
# 2. batching rules of the cross-entropy ops


def _count_calls(monkeypatch, name):
    """Count the calls of one of the computations the ops look up."""
    calls = [0]
    original = _computes.get(name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setitem(_computes._TABLE, name, counted)
    return calls


def _batched_problem(shape, probabilities, seed=0):
    g = _gen(seed)
    x = 3 * torch.randn(3, *shape, generator=g, dtype=f64)
    if probabilities:
        return x, torch.softmax(torch.randn(3, *shape, generator=g, dtype=f64), 2 if len(shape) > 1 else 1)
    rows = (3, shape[0], *shape[2:]) if len(shape) > 1 else (3,)
    y = torch.randint(0, shape[1] if len(shape) > 1 else shape[0], rows, generator=g)
    if len(shape) > 1:
        y.view(3, -1)[:, 0] = -100
        y[1] = -100  # every row of member 1 ignored
    return x, y


def _vmap_or_loop(fn, *args):
    """torch's vmap of F.cross_entropy where it works (weights + smoothing + mean use masked_select)."""
    try:
        return vmap(fn)(*args)
    except RuntimeError:
        return torch.stack([fn(*(a[i] for a in args)) for i in range(args[0].shape[0])])


CASES = [  # a (C,) input takes index targets here; its probability case is the (N, C) one per member
    case
    for case in itertools.product(
        [(4, 5), (3, 4, 2), (5,)], REDUCTIONS, [False, True], [0.0, 0.2], [False, True]
    )
    if not (case[-1] and len(case[0]) == 1)
]


@pytest.mark.parametrize(("shape", "reduction", "weighted", "smoothing", "probabilities"), CASES)
def test_vmap_matches_torch_and_the_loop(shape, reduction, weighted, smoothing, probabilities, monkeypatch):
    x, y = _batched_problem(shape, probabilities)
    classes = shape[1] if len(shape) > 1 else shape[0]
    opts = dict(
        weight=torch.linspace(0.5, 2.0, classes, dtype=f64) if weighted else None,
        reduction=reduction, label_smoothing=smoothing,
    )

    def ours(xi, yi):
        return sgt.cross_entropy(xi, yi, **opts)

    def ref(xi, yi):
        return F.cross_entropy(xi, yi, **opts)

    loop = torch.stack([ours(x[i], y[i]) for i in range(3)])
    calls = _count_calls(monkeypatch, "cross_entropy")
    batched = vmap(ours)(x, y)
    assert calls == [1]  # one kernel call for the three members, no loop
    torch.testing.assert_close(batched, loop, rtol=1e-12, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(batched, _vmap_or_loop(ref, x, y), rtol=1e-12, atol=1e-14, equal_nan=True)

    def total(fn):
        return lambda xi, yi: fn(xi, yi).sum()

    gradients = vmap(grad(total(ours)))(x, y)
    torch.testing.assert_close(gradients, _vmap_or_loop(grad(total(ref)), x, y), rtol=1e-11, atol=1e-14)
    v = torch.randn(x.shape, generator=_gen(7), dtype=f64)

    def hvp(fn):
        return lambda xi, yi, vi: vjp(lambda z: grad(total(fn))(z, yi), xi)[1](vi)[0]

    ref_hvp = torch.stack([hvp(ref)(x[i], y[i], v[i]) for i in range(3)])
    torch.testing.assert_close(vmap(hvp(ours))(x, y, v), ref_hvp, rtol=1e-11, atol=1e-14)


def test_vmap_with_batched_class_weights_loops():
    x, y = _batched_problem((4, 5), False)
    w = torch.rand(3, 5, generator=_gen(2), dtype=f64) + 0.5
    ours = vmap(lambda xi, yi, wi: sgt.cross_entropy(xi, yi, weight=wi))(x, y, w)
    ref = torch.stack([F.cross_entropy(x[i], y[i], weight=w[i]) for i in range(3)])
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14, equal_nan=True)


# ----------------------------------------------------------------------------------------------
# 3. gradients for probability targets and class weights


def _written_out(x, y, w, reduction, eps, ignore_index=-100):
    """F.cross_entropy's loss written with F.log_softmax, so torch autograd differentiates ``w``
    (torch's own nll_loss does not)."""
    dim = 1 if x.ndim > 1 else 0
    classes = x.shape[dim]
    log_p = F.log_softmax(x, dim)
    wv = w.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    if y.is_floating_point():
        rows = -(wv * (y * (1 - eps) + eps / classes) * log_p).sum(dim)
        denominator = rows.numel()
    else:
        kept = (y != ignore_index).to(x.dtype).unsqueeze(dim)
        one_hot = F.one_hot(y.clamp(min=0), classes).movedim(-1, dim).to(x.dtype) * kept
        rows = -(wv * (one_hot * (1 - eps) + kept * eps / classes) * log_p).sum(dim)
        denominator = (wv * one_hot).sum()
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.sum() / denominator


TARGET_CASES = list(itertools.product([(4, 5), (3, 4, 2), (5,)], REDUCTIONS, [0.0, 0.2], [False, True]))


@pytest.mark.parametrize(("shape", "reduction", "smoothing", "probabilities"), TARGET_CASES)
def test_target_and_weight_gradients(shape, reduction, smoothing, probabilities):
    g = _gen(1)
    dim = 1 if len(shape) > 1 else 0
    x = torch.randn(*shape, generator=g, dtype=f64, requires_grad=True)
    w = torch.linspace(0.5, 2.0, shape[dim], dtype=f64).requires_grad_(True)
    if probabilities:
        y = torch.softmax(torch.randn(*shape, generator=g, dtype=f64), dim).requires_grad_(True)
        args = (x, y, w)
    else:
        y = torch.randint(0, shape[dim], (shape[0], *shape[2:]) if dim else (), generator=g)
        if dim:
            y.view(-1)[0] = -100
        args = (x, w)
    opts = dict(reduction=reduction, label_smoothing=smoothing)

    def ours(*a):
        return sgt.cross_entropy(a[0], y if len(a) == 2 else a[1], weight=a[-1], **opts)

    def ref(*a):
        return _written_out(a[0], y if len(a) == 2 else a[1], a[-1], reduction, smoothing)

    assert torch.autograd.gradcheck(ours, args)
    assert torch.autograd.gradgradcheck(ours, args)
    cot = torch.rand_like(ref(*args)) + 0.5
    gradients = [torch.autograd.grad(fn(*args), args, cot) for fn in (ours, ref)]
    _assert_all_close(*gradients, 1e-11)
    directions = [torch.randn(a.shape, generator=_gen(8), dtype=f64) for a in args]
    hvps = [_double_backward(fn, args, cot, directions) for fn in (ours, ref)]
    _assert_all_close(*hvps, 1e-10)


def test_probability_target_gradient_matches_torch():
    """torch differentiates F.cross_entropy in a probability target (and in ``weight`` there)."""
    g = _gen(2)
    x = torch.randn(6, 5, generator=g, dtype=f64, requires_grad=True)
    q = torch.softmax(torch.randn(6, 5, generator=g, dtype=f64), 1).requires_grad_(True)
    w = torch.linspace(0.5, 2.0, 5, dtype=f64).requires_grad_(True)
    for reduction in REDUCTIONS:
        opts = dict(weight=w, reduction=reduction, label_smoothing=0.1)
        ours, ref = sgt.cross_entropy(x, q, **opts), F.cross_entropy(x, q, **opts)
        cot = torch.rand_like(ref) + 0.5
        gradients = [torch.autograd.grad(loss, (x, q, w), cot) for loss in (ours, ref)]
        _assert_all_close(*gradients, 1e-11)


# ----------------------------------------------------------------------------------------------
# 4. sg.cross_entropy on a torch tensor without grad takes the op


@pytest.mark.parametrize(("dtype", "reduction"), list(itertools.product([torch.float32, f64], REDUCTIONS)))
def test_sg_cross_entropy_without_grad_takes_the_op(dtype, reduction, monkeypatch):
    g = _gen(3)
    x = (3 * torch.randn(6, 5, 2, generator=g)).to(dtype)
    y = torch.randint(0, 5, (6, 2), generator=g)
    w = torch.linspace(0.5, 2.0, 5).to(dtype)
    opts = dict(weight=w, reduction=reduction, label_smoothing=0.1)
    before = _computes.get("cross_entropy_reference")(x, y, 1, w, -100, 0.1, reduction)  # the old path
    calls = _count_calls(monkeypatch, "cross_entropy")
    reference_calls = _count_calls(monkeypatch, "cross_entropy_reference")
    ours = sg.cross_entropy(x, y, axis=1, **opts)
    assert calls == [1] and reference_calls == [0]  # the op's kernel call; not the array-API path
    assert ours.dtype == before.dtype == dtype and ours.shape == before.shape and ours.grad_fn is None
    torch.testing.assert_close(ours, before, rtol=4 * torch.finfo(dtype).eps, atol=0)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, F.cross_entropy(x, y, **opts), rtol=rtol, atol=0)


def test_sg_cross_entropy_without_grad_keeps_other_paths():
    x = torch.randn(4, 3, dtype=torch.float16)
    y = torch.tensor([0, 1, 2, 0])
    assert sg.cross_entropy(x, y).dtype == torch.float16  # half precision: the array-API path, as before
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        sg.cross_entropy(x.float(), y, ignore_index=1.0)  # the reference path validates
