"""Arrays on a non-default device stay there: array-api-strict's second device, torch's meta."""

from __future__ import annotations

import pytest

import softgrad as sg

xp = pytest.importorskip("array_api_strict")


@pytest.fixture
def device():
    return xp.Device("device1")


def _x(device):
    return xp.asarray([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], device=device)


@pytest.mark.parametrize(
    "fn",
    [
        sg.softmax, sg.log_softmax, sg.logsumexp, sg.softmax_jacobian, sg.log_softmax_jacobian,
        sg.softmax_hessian,
        lambda x: sg.softmax(x, temperature=2.0),
        lambda x: sg.logsumexp(x, axis=None),
    ],
)
def test_core_functions_stay_on_the_device(fn, device):
    assert fn(_x(device)).device == device


def test_masks_weights_and_losses_stay_on_the_device(device):
    x = _x(device)
    mask = xp.asarray([True, False, True], device=device)
    assert sg.softmax(x, where=mask).device == device
    b = xp.asarray([1.0, -2.0, 1.0], device=device)
    value, sign = sg.logsumexp(x, axis=(0, 1), b=b, return_sign=True)
    assert value.device == device and sign.device == device
    y = xp.asarray([1, 2], device=device)
    assert sg.cross_entropy(x, y).device == device
    assert sg.cross_entropy_grad(x, y, label_smoothing=0.1).device == device
    W = xp.asarray([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], device=device)
    assert sg.dense_softmax_jacobian(x[0, :], W, None, wrt="W").device == device
    loss, grads = sg.linear_cross_entropy(x, W, xp.asarray([0, 1], device=device), return_grad=True)
    assert loss.device == device and all(g.device == device for g in grads)


def test_torch_meta_device():
    torch = pytest.importorskip("torch")
    import softgrad.torch as sgt

    x = torch.empty(4, 5, device="meta", requires_grad=True)
    assert sg.softmax(x, axis=1).device.type == "meta"  # through the autodiff rule
    assert sgt.log_softmax(x, 1).device.type == "meta"
    assert sg.cross_entropy(x, torch.zeros(4, dtype=torch.long, device="meta")).device.type == "meta"
