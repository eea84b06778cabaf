"""Every softgrad.torch function under torch.compile(fullgraph=True), forward and backward.

fullgraph=True raises on any graph break, so each test proves one graph; the values are compared
with torch's own functions. Compiling costs seconds: marked slow (``-m "not slow"`` skips them).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import softgrad.torch as sgt  # noqa: E402

pytestmark = pytest.mark.slow


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 10, generator=g, requires_grad=True)
    W = torch.randn(10, 6, generator=g, requires_grad=True)
    b = torch.randn(10, generator=g, requires_grad=True)
    q = torch.softmax(torch.randn(8, 10, generator=g), 1).requires_grad_(True)
    w = torch.linspace(0.5, 2.0, 10).requires_grad_(True)
    return x, W, b, q, w, torch.randint(0, 10, (8,), generator=g)


def _same_value_and_gradients(ours, ref, inputs):
    compiled = torch.compile(ours, fullgraph=True)
    out, expected = compiled(*inputs), ref(*inputs)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    cot = torch.rand_like(expected) + 0.5
    wanted = [t for t in inputs if t.requires_grad]
    gradients = [torch.autograd.grad(result, wanted, cot) for result in (out, expected)]
    for a, r in zip(*gradients, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (lambda x: sgt.softmax(x, 1), lambda x: F.softmax(x, 1)),
        (lambda x: sgt.log_softmax(x, 1), lambda x: F.log_softmax(x, 1)),
        (lambda x: sgt.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1)),
    ],
    ids=["softmax", "log_softmax", "logsumexp"],
)
def test_softmax_family_compiles(ours, ref):
    _same_value_and_gradients(ours, ref, _inputs()[:1])


def test_cross_entropy_compiles_with_target_and_weight_gradients():
    x, _, _, q, w, _ = _inputs()

    def ours(x, q, w):
        return sgt.cross_entropy(x, q, weight=w, label_smoothing=0.1)

    def ref(x, q, w):
        return F.cross_entropy(x, q, weight=w, label_smoothing=0.1)

    _same_value_and_gradients(ours, ref, (x, q, w))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_cross_entropy_compiles(reduction):
    x, W, b, _, _, y = _inputs()
    h = x[:, :6].detach().requires_grad_(True)

    def ours(h, W, b):
        return sgt.linear_cross_entropy(h, W, y, b, reduction=reduction)

    def ref(h, W, b):
        return F.cross_entropy(F.linear(h, W, b), y, reduction=reduction)

    _same_value_and_gradients(ours, ref, (h, W, b))
