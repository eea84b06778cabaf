"""logsumexp with SciPy's habits: ``b=``, ``return_sign=``, ``axis=None`` and tuple axes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp

import softgrad as sg

RNG = np.random.default_rng(0)
X = 10 * RNG.normal(size=(3, 4, 5))
B = RNG.normal(size=(4, 5))  # mixed signs, broadcast over the first axis


@pytest.mark.parametrize("axis", [None, 1, (0, 2), (-1, 0), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_axes_match_scipy(axis, keepdims):
    ours = sg.logsumexp(X, axis=axis, keepdims=keepdims)
    ref = scipy_logsumexp(X, axis=axis, keepdims=keepdims)
    assert np.shape(ours) == np.shape(ref)
    np.testing.assert_allclose(ours, ref, rtol=1e-14)


@pytest.mark.parametrize("axis", [None, -1, (0, 2)])
def test_weights_and_sign_match_scipy(axis):
    ours, sign = sg.logsumexp(X, axis=axis, b=B, return_sign=True)
    ref, ref_sign = scipy_logsumexp(X, axis=axis, b=B, return_sign=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    np.testing.assert_array_equal(sign, ref_sign)
    with np.errstate(invalid="ignore"):
        ref_nan = scipy_logsumexp(X, axis=axis, b=B)
    np.testing.assert_allclose(sg.logsumexp(X, axis=axis, b=B), ref_nan, rtol=1e-12)  # NaN where < 0


def test_special_cases_as_scipy():
    assert sg.logsumexp([1.0, 2.0], b=[0, 1]) == 2.0  # a zero weight leaves its entry out
    value, sign = sg.logsumexp([1.0, 1.0], b=[1, -1], return_sign=True)
    assert value == -np.inf and sign == 0
    value, sign = sg.logsumexp([-np.inf, -np.inf], return_sign=True)
    assert value == -np.inf and sign == 0
    assert np.isnan(sg.logsumexp([1.0, 2.0], b=[1, -2]))
    out = sg.logsumexp(np.float32([[1, 2], [3, 4]]), axis=None, b=np.float32([1, 1]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, scipy_logsumexp([[1, 2], [3, 4]], b=[1, 1]), rtol=1e-7)


def test_bad_axes_and_weights():
    with pytest.raises(ValueError, match="must not repeat"):
        sg.logsumexp(X, axis=(1, -2))
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        sg.logsumexp(X, axis=(0, 3))
    with pytest.raises(ValueError, match="b must be broadcastable"):
        sg.logsumexp(X, b=np.ones(3))


def test_other_backends_keep_their_type():
    torch = pytest.importorskip("torch")
    t = torch.tensor(X)
    ours = sg.logsumexp(t, axis=(0, 2)).numpy()
    np.testing.assert_allclose(ours, scipy_logsumexp(X, axis=(0, 2)), rtol=1e-14)
    value, sign = sg.logsumexp(t, axis=None, b=torch.tensor(B), return_sign=True)
    assert isinstance(value, torch.Tensor) and isinstance(sign, torch.Tensor)
    np.testing.assert_allclose(value.numpy(), scipy_logsumexp(X, axis=None, b=B), rtol=1e-12)
