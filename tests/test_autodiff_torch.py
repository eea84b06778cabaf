"""softgrad.torch against torch.nn.functional: values, gradients, HVPs, torch.func, compile, nodes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import softgrad as sg  # noqa: E402
import softgrad.torch as sgt  # noqa: E402

SHAPES = [(6, 5), (3, 4, 2, 3)]  # (N, C) and (N, C, d1, d2)
OPTIONS = list(
    itertools.product(
        ["mean", "sum", "none"],  # reduction
        [False, True],  # class weights
        [0.0, 0.2],  # label smoothing
    )
)


def _logits(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=g, dtype=dtype)).requires_grad_(True)


def _index_target(shape, ignore=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    n_classes = shape[1]
    batch = (shape[0], *shape[2:])
    y = torch.randint(0, n_classes, batch, generator=g)
    if ignore:
        y.view(-1)[0] = -100  # one ignored row
    return y


def _prob_target(shape, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1)


def _weight(shape, on):
    if not on:
        return None
    return torch.linspace(0.5, 2.0, shape[1], dtype=torch.float64)


def _compare(x, target, **opts):
    """softgrad.torch and F.cross_entropy: loss, and gradient for a random cotangent."""
    ours = sgt.cross_entropy(x, target, **opts)
    ref = F.cross_entropy(x, target, **opts)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    cot = torch.rand_like(ref) + 0.5
    (g_ours,) = torch.autograd.grad(ours, x, cot)
    (g_ref,) = torch.autograd.grad(ref, x, cot)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("reduction", "weighted", "smoothing"), OPTIONS)
def test_index_targets_match_torch(shape, reduction, weighted, smoothing):
    _compare(
        _logits(shape), _index_target(shape), weight=_weight(shape, weighted),
        reduction=reduction, label_smoothing=smoothing,
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("reduction", "weighted", "smoothing"), OPTIONS)
def test_probability_targets_match_torch(shape, reduction, weighted, smoothing):
    _compare(
        _logits(shape), _prob_target(shape), weight=_weight(shape, weighted),
        reduction=reduction, label_smoothing=smoothing,
    )


def test_other_ignore_index_and_unbatched_input():
    x = _logits((5, 4))
    y = torch.tensor([0, 3, 2, 3, 1])
    _compare(x, y, ignore_index=3)
    x1 = _logits((7,))
    _compare(x1, torch.tensor(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_and_gradgradcheck(reduction):
    x = _logits((4, 5, 2))
    y = _index_target((4, 5, 2))
    w = _weight((4, 5), True)

    def f(x):
        return sgt.cross_entropy(x, y, weight=w, reduction=reduction, label_smoothing=0.1)

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_hvp_matches_torch():
    x = _logits((6, 5))
    y = _index_target((6, 5))
    v = torch.randn_like(x)

    def hvp(loss_fn):
        (g,) = torch.autograd.grad(loss_fn(x, y, label_smoothing=0.1), x, create_graph=True)
        return torch.autograd.grad(g, x, v)[0]

    torch.testing.assert_close(hvp(sgt.cross_entropy), hvp(F.cross_entropy), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (lambda x: sgt.softmax(x, 1), lambda x: F.softmax(x, 1)),
        (lambda x: sgt.log_softmax(x, -1), lambda x: F.log_softmax(x, -1)),
        (lambda x: sgt.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1)),
        (lambda x: sgt.logsumexp(x, 0, keepdim=True), lambda x: torch.logsumexp(x, 0, keepdim=True)),
    ],
)
def test_softmax_family_matches_torch(ours, ref):
    x = _logits((4, 6, 3))
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-13, atol=1e-15)
    assert torch.autograd.gradcheck(ours, (x,))
    assert torch.autograd.gradgradcheck(ours, (x,))


def test_per_sample_gradients_with_torch_func():
    from torch.func import grad, vmap

    x = _logits((6, 5)).detach()
    y = _index_target((6, 5), ignore=False)
    ours = vmap(grad(lambda xi, yi: sgt.cross_entropy(xi, yi)))(x, y)
    ref = vmap(grad(lambda xi, yi: F.cross_entropy(xi, yi)))(x, y)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-15)
    soft = vmap(grad(lambda r: sgt.logsumexp(r, 0)))(x)
    torch.testing.assert_close(soft, F.softmax(x, 1), rtol=1e-12, atol=1e-15)
    rows = vmap(lambda r: sgt.log_softmax(r, 0))(x)
    torch.testing.assert_close(rows, F.log_softmax(x, 1), rtol=1e-13, atol=1e-15)


def _nodes(t):
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo += [n for n, _ in node.next_functions]
    return len(seen)


def test_one_autograd_node_each():
    x = _logits((3, 4, 2))
    y = _index_target((3, 4, 2))
    for out in (
        sgt.cross_entropy(x, y), sg.cross_entropy(x, y, axis=1), sgt.softmax(x, 1), sg.softmax(x, axis=1),
        sgt.log_softmax(x, 1), sg.logsumexp(x, axis=1),
    ):
        assert _nodes(out) == 2  # the op's node and the leaf's AccumulateGrad
    assert _nodes(F.cross_entropy(x, y)) >= 3  # log_softmax, nll_loss (and a view), the leaf


def test_confident_gradient_float32():
    """float32 [40, 0, 0, 0], target 0: -3 e^-40 / (1 + 3 e^-40), where log_softmax autograd gives 0."""
    exact = -3 * np.exp(-40.0) / (1 + 3 * np.exp(-40.0))
    for loss in (sgt.cross_entropy, sg.cross_entropy):
        x = torch.tensor([[40.0, 0.0, 0.0, 0.0]], requires_grad=True)
        loss(x, torch.tensor([0])).backward()
        assert x.grad.dtype == torch.float32
        assert float(x.grad[0, 0]) == pytest.approx(exact, rel=1e-6)
    x = torch.tensor([[40.0, 0.0, 0.0, 0.0]], requires_grad=True)
    F.cross_entropy(x, torch.tensor([0])).backward()
    assert float(x.grad[0, 0]) == 0.0  # what softgrad improves on


def test_sg_functions_dispatch_with_the_class_axis_moved():
    x = _logits((3, 5, 4))
    y = _index_target((3, 5, 4))
    moved = x.detach().movedim(1, -1).requires_grad_(True)
    ours = sg.cross_entropy(moved, y, axis=-1, weight=_weight((3, 5), True))
    ref = F.cross_entropy(x, y, weight=_weight((3, 5), True))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
    ours.backward()
    assert moved.grad is not None and moved.grad.shape == moved.shape
    assert sg.softmax(x.detach()).grad_fn is None  # no grad required: computed as before


def test_kernel_writes_without_copy_and_no_grad_is_plain():
    x = _logits((8, 6), torch.float32).detach()
    y = _index_target((8, 6), ignore=False)
    with torch.no_grad():
        loss = sgt.cross_entropy(x, y, reduction="none")
    torch.testing.assert_close(loss, F.cross_entropy(x, y, reduction="none"), rtol=1e-6, atol=1e-7)
    assert loss.dtype == torch.float32


def test_meta_device_stays_on_meta():
    x = torch.empty(4, 7, device="meta", requires_grad=True)
    y = torch.zeros(4, dtype=torch.long, device="meta")
    assert sgt.softmax(x, 1).device.type == "meta"
    assert sgt.cross_entropy(x, y).device.type == "meta"
    assert sgt.cross_entropy(x, y, reduction="none").shape == (4,)
    assert sgt.logsumexp(x, 1, keepdim=True).shape == (4, 1)


def test_bad_arguments():
    x = _logits((3, 4))
    with pytest.raises(TypeError, match=r"input must be a torch\.Tensor"):
        sgt.cross_entropy(np.zeros((3, 4)), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        sgt.softmax(torch.tensor([1, 2]), 0)
    with pytest.raises(ValueError, match="reduction"):
        sgt.cross_entropy(x, torch.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="class index 7"):
        sgt.cross_entropy(x, torch.tensor([0, 7, 2]))
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        sgt.softmax(x, 2)
    W = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="class_weight must not require grad"):
        sgt.linear_cross_entropy(x, W, torch.tensor([0, 1, 2]), class_weight=torch.ones(5).requires_grad_())


def test_cross_entropy_loss_module():
    x = _logits((5, 4))
    y = _index_target((5, 4))
    w = _weight((5, 4), True)
    ours = sgt.CrossEntropyLoss(weight=w, label_smoothing=0.1)(x, y)
    ref = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(x, y)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_compile_fullgraph_one_graph():
    x = _logits((8, 10), torch.float32)
    y = _index_target((8, 10))
    compiled = torch.compile(lambda x, y: sgt.cross_entropy(x, y, label_smoothing=0.1), fullgraph=True)
    loss = compiled(x, y)
    (g,) = torch.autograd.grad(loss, x)
    ref = F.cross_entropy(x, y, label_smoothing=0.1)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g, torch.autograd.grad(ref, x)[0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_cross_entropy_matches_linear_then_cross_entropy(reduction, bias):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    y = torch.randint(0, 7, (9,), generator=g)
    y[0] = -100
    cw = torch.linspace(0.5, 2.0, 7, dtype=torch.float64)
    opts = dict(reduction=reduction, label_smoothing=0.1)
    ours = sgt.linear_cross_entropy(x, W, y, b, class_weight=cw, **opts)
    ref = F.cross_entropy(F.linear(x, W, b), y, weight=cw, **opts)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    cot = torch.rand_like(ref) + 0.5
    params = (x, W) if b is None else (x, W, b)
    grads = zip(torch.autograd.grad(ours, params, cot), torch.autograd.grad(ref, params, cot), strict=True)
    for a, r in grads:
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-13)
    assert torch.autograd.gradcheck(lambda x, W: sgt.linear_cross_entropy(x, W, y, b, **opts), (x, W))


def test_linear_cross_entropy_loss_module_trains_like_linear():
    torch.manual_seed(0)
    head = sgt.LinearCrossEntropyLoss(4, 6, dtype=torch.float64)
    linear = torch.nn.Linear(4, 6, dtype=torch.float64)
    linear.load_state_dict({"weight": head.weight.detach(), "bias": head.bias.detach()})
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 6, (8,))
    head(x, y).backward()
    F.cross_entropy(linear(x), y).backward()
    torch.testing.assert_close(head.weight.grad, linear.weight.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(head.bias.grad, linear.bias.grad, rtol=1e-12, atol=1e-14)
