"""Hypothesis properties of the softmax family, on the default and on the reference path.

The tolerances are in units of the dtype's eps, scaled where the mathematics scales the error
(``exp`` turns an absolute error of ``log_softmax`` into a relative one of ``softmax``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softgrad as sg

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def rows(draw, magnitude: float | None = None, min_n: int = 1, max_n: int = 12):
    """A 2-D array of finite rows; ``magnitude`` None means any finite value of the dtype."""
    dtype = draw(DTYPES)
    width = 32 if dtype == np.float32 else 64
    if magnitude is None:
        elements = st.floats(allow_nan=False, allow_infinity=False, width=width)
    else:
        elements = st.floats(-magnitude, magnitude, allow_nan=False, width=width)
    shape = (draw(st.integers(1, 3)), draw(st.integers(min_n, max_n)))
    return draw(hnp.arrays(dtype, shape, elements=elements))


def eps(x: np.ndarray) -> float:
    return float(np.finfo(x.dtype).eps)


def tiny(x: np.ndarray) -> float:
    """The spacing of the dtype's subnormals: the absolute error floor of an underflowing result."""
    return float(np.finfo(x.dtype).smallest_subnormal)


@SETTINGS
@given(x=rows(), t=st.sampled_from([1.0, 1.0, 0.5, 3.0, 1e-3, 1e-300, 1e300]))
def test_any_finite_input_gives_no_nan_and_rows_sum_to_one(x, t, kernel_path):
    s = sg.softmax(x, temperature=t)
    logp = sg.log_softmax(x, temperature=t)
    lse = sg.logsumexp(x)
    assert s.dtype == logp.dtype == lse.dtype == x.dtype
    assert not np.isnan(s).any() and not np.isnan(logp).any() and not np.isnan(lse).any()
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(logp <= 0)
    for row in s:  # exact sum of the rounded probabilities
        assert abs(math.fsum(row.astype(np.float64)) - 1) <= 4 * eps(x), row
    assert np.all(lse >= x.max(axis=-1))


@SETTINGS
@given(x=rows(magnitude=1e4), shift=st.integers(-(2**16), 2**16))
def test_shift_invariance(x, shift, kernel_path):
    # multiples of 1/16 below 2**17 have at most 21 significant bits: x + shift is exact
    x = np.round(x * 16) / 16
    xs = (x + shift).astype(x.dtype)
    assert np.array_equal(xs - shift, x)  # the shift really is exact
    np.testing.assert_allclose(sg.softmax(xs), sg.softmax(x), rtol=4 * eps(x), atol=0)
    np.testing.assert_allclose(sg.log_softmax(xs), sg.log_softmax(x), rtol=4 * eps(x), atol=0)
    lse = sg.logsumexp(x).astype(np.float64)
    error = np.abs(sg.logsumexp(xs) - (lse + shift))
    assert np.all(error <= 4 * eps(x) * (np.abs(lse) + abs(shift) + 1))


@SETTINGS
@given(x=rows(magnitude=1e6))
def test_exp_of_log_softmax_is_softmax(x, kernel_path):
    logp = sg.log_softmax(x).astype(np.float64)
    s = sg.softmax(x).astype(np.float64)
    # an error of a few ULP in logp is a relative error of |logp| eps in exp(logp)
    tol = 4 * eps(x) * (1 + np.abs(logp)) * s + np.finfo(x.dtype).smallest_subnormal
    assert np.all(np.abs(np.exp(logp) - s) <= tol)
    # and log_softmax = x - logsumexp
    lse = sg.logsumexp(x, keepdims=True).astype(np.float64)
    xd = x.astype(np.float64)
    assert np.all(np.abs((xd - lse) - logp) <= 4 * eps(x) * (np.abs(xd) + np.abs(lse)))


@SETTINGS
@given(x=rows(magnitude=50.0, min_n=2, max_n=8), data=st.data())
def test_vjp_equals_g_transpose_jacobian(x, data, kernel_path):
    g = data.draw(hnp.arrays(x.dtype, x.shape, elements=st.floats(-10, 10, width=8 * x.itemsize)))
    s = sg.softmax(x)
    jac = sg.softmax_jacobian(x).astype(np.float64)
    gd = g.astype(np.float64)
    want = np.einsum("bi,bij->bj", gd, jac)
    scale = s.astype(np.float64) * np.max(np.abs(gd), axis=-1, keepdims=True)
    n = x.shape[-1]
    # Probabilities and Jacobian entries that underflow to subnormals carry an absolute error of
    # up to half a subnormal spacing each; a product with g sums n of them, each times |g| <= gmax.
    floor = 2 * n * tiny(x) * (1 + np.max(np.abs(gd), axis=-1, keepdims=True))
    assert np.all(np.abs(sg.softmax_vjp(s, g) - want) <= 8 * n * eps(x) * scale + floor)
    assert np.all(
        np.abs(sg.softmax_jvp(s, g) - np.einsum("bij,bj->bi", jac, gd)) <= 8 * n * eps(x) * scale + floor
    )
    logp = sg.log_softmax(x)
    log_jac = sg.log_softmax_jacobian(x).astype(np.float64)
    want = np.einsum("bi,bij->bj", gd, log_jac)
    # exp(logp) carries logp's rounding as a relative error |logp| eps: part of the scale
    lp = logp.astype(np.float64)
    scale = np.abs(gd) + np.exp(lp) * (1 + np.abs(lp)) * np.sum(np.abs(gd), axis=-1, keepdims=True)
    assert np.all(np.abs(sg.log_softmax_vjp(logp, g) - want) <= 8 * n * eps(x) * scale + floor)


@SETTINGS
@given(x=rows(magnitude=50.0, min_n=2, max_n=8), t=st.floats(0.1, 10.0))
def test_jacobian_symmetric_with_rows_summing_to_zero(x, t, kernel_path):
    jac = sg.softmax_jacobian(x, temperature=t)
    assert jac.dtype == x.dtype
    assert np.array_equal(jac, np.swapaxes(jac, -1, -2))
    s = sg.softmax(x, temperature=t).astype(np.float64)
    row_sums = jac.astype(np.float64).sum(axis=-1)
    assert np.all(np.abs(row_sums) <= 4 * x.shape[-1] * eps(x) * s / t + tiny(x))
    hess = sg.softmax_hessian(x, temperature=t)
    assert np.array_equal(hess, np.swapaxes(hess, -1, -2))  # symmetric in j, k
    scale = 4 * x.shape[-1] ** 2 * eps(x) / t**2
    assert np.all(np.abs(hess.astype(np.float64).sum(axis=-3)) <= scale)  # sum over i is 0


@SETTINGS
@given(x=rows(magnitude=1e3), t=st.floats(0.05, 20.0))
def test_temperature_equals_dividing_first(x, t, kernel_path):
    """softmax(x, temperature=T) ~ softmax(x / T): x / T is rounded, so approximately."""
    xd = x.astype(np.float64)
    divided = (xd / t).astype(x.dtype)
    spread = np.max(np.abs(xd / t), axis=-1, keepdims=True)  # the rounding of x / T scales with it
    for fn in (sg.softmax, sg.log_softmax):
        got = fn(x, temperature=t).astype(np.float64)
        want = fn(divided).astype(np.float64)
        scale = np.maximum(np.abs(want), 1e-300) if fn is sg.softmax else 1.0 + np.abs(want)
        assert np.all(np.abs(got - want) <= 8 * eps(x) * (1 + 2 * spread) * scale), fn.__name__


@SETTINGS
@given(x=rows(), data=st.data())
def test_permutation_equivariance_and_order(x, data, kernel_path):
    perm = data.draw(st.permutations(range(x.shape[-1])))
    s = sg.softmax(x)
    np.testing.assert_allclose(sg.softmax(x[:, perm]), s[:, perm], rtol=4 * eps(x), atol=0)
    order = np.argsort(x, axis=-1, kind="stable")
    assert np.all(np.diff(np.take_along_axis(s, order, axis=-1), axis=-1) >= 0)  # monotone


@SETTINGS
@given(x=rows(magnitude=1e3, min_n=2), axis=st.sampled_from([0, 1]))
def test_any_axis_equals_last_axis_of_the_transpose(x, axis, kernel_path):
    x3 = np.stack([x, -x])  # (2, b, n)
    for fn in (sg.softmax, sg.log_softmax):
        got = fn(x3, axis=axis + 1)
        want = np.moveaxis(fn(np.moveaxis(x3, axis + 1, -1)), -1, axis + 1)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_single_entry_and_uniform_rows(n, kernel_path):
    """Rows of n equal entries: softmax 1/n, log_softmax -log(n), logsumexp x + log(n)."""
    for dtype in (np.float32, np.float64):
        x = np.full((2, n), 3.25, dtype=dtype)
        np.testing.assert_allclose(sg.softmax(x), 1 / n, rtol=eps(x))
        np.testing.assert_allclose(sg.log_softmax(x), -math.log(n), rtol=eps(x), atol=0)
        np.testing.assert_allclose(sg.logsumexp(x), 3.25 + math.log(n), rtol=eps(x))
