"""Bad input raises ValueError or TypeError whose message names the argument and the value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import softgrad as sg

UNARY = ["softmax", "log_softmax", "logsumexp", "softmax_jacobian", "log_softmax_jacobian", "softmax_hessian"]
PAIRS = {"softmax_vjp": ("s", "g"), "softmax_jvp": ("s", "v"), "log_softmax_vjp": ("logp", "g")}
PAIRS["log_softmax_jvp"] = ("logp", "v")
TEMPERED = [name for name in UNARY + list(PAIRS) if name != "logsumexp"]
MASKED = ["softmax", "log_softmax", "logsumexp"]


def call(name: str, x: object, **kwargs: object) -> object:
    """Call function ``name`` with ``x`` (and ``x`` again as the cotangent for pairs)."""
    fn = getattr(sg, name)
    if name in PAIRS:
        return fn(x, x, **kwargs)
    return fn(x, **kwargs)


def first_arg(name: str) -> str:
    return PAIRS[name][0] if name in PAIRS else "x"


@pytest.mark.parametrize("name", UNARY + list(PAIRS))
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_axis_out_of_range(name, axis, kernel_path):
    with pytest.raises(ValueError, match=rf"axis={axis}\b.*out of range.*2 dimensions"):
        call(name, np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("name", UNARY + list(PAIRS))
@pytest.mark.parametrize("axis", [1.5, "0", None, True])
def test_axis_not_an_int(name, axis, kernel_path):
    if axis is None and name == "logsumexp":  # SciPy's "every axis" (tests/test_logsumexp_scipy.py)
        assert float(call(name, np.ones((2, 3)), axis=None)) == pytest.approx(1 + np.log(6.0))
        return
    with pytest.raises(TypeError, match=rf"axis must be an int, got {re.escape(repr(axis))}"):
        call(name, np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("name", UNARY + list(PAIRS))
def test_complex_is_rejected(name, kernel_path):
    arg = first_arg(name)
    for dtype in (np.complex64, np.complex128):
        with pytest.raises(TypeError, match=rf"^{arg} must be real, got complex dtype {np.dtype(dtype)}"):
            call(name, np.ones(3, dtype=dtype))


@pytest.mark.parametrize("name", UNARY + list(PAIRS))
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (np.array(["a", "b"]), "<U1"),
        (["a", "b"], "<U1"),
        (np.array([1.0, 2.0], dtype=object), "object"),
        (np.array([1, 2], dtype="datetime64[s]"), "datetime64"),
        (np.zeros(2, dtype="V8"), "V8"),
    ],
)
def test_non_numeric_is_rejected(name, value, shown, kernel_path):
    with pytest.raises(TypeError, match=rf"^{first_arg(name)} must .*{re.escape(shown)}"):
        call(name, value)


@pytest.mark.parametrize("name", list(PAIRS))
def test_pairs_of_different_shapes(name, kernel_path):
    a, b = PAIRS[name]
    fn = getattr(sg, name)
    with pytest.raises(ValueError, match=rf"{a} and {b} must have the same shape, got \(2, 3\) and \(3, 2\)"):
        fn(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=rf"{a} and {b} .*\(3,\) and \(1, 3\)"):
        fn(np.ones(3), np.ones((1, 3)))  # no silent broadcasting either


@pytest.mark.parametrize("name", TEMPERED)
@pytest.mark.parametrize("temperature", [0, 0.0, -1.5, math.nan, math.inf, -math.inf])
def test_temperature_must_be_finite_and_positive(name, temperature, kernel_path):
    match = rf"temperature must be finite and > 0, got {re.escape(repr(temperature))}"
    with pytest.raises(ValueError, match=match):
        call(name, np.ones(3), temperature=temperature)


@pytest.mark.parametrize("name", TEMPERED)
def test_temperature_must_be_a_number(name, kernel_path):
    with pytest.raises(TypeError, match=r"temperature must be a real number, got 'hot'"):
        call(name, np.ones(3), temperature="hot")
    with pytest.raises(TypeError, match=r"temperature must be a real number, got None"):
        call(name, np.ones(3), temperature=None)


@pytest.mark.parametrize("name", MASKED)
def test_where_must_broadcast(name, kernel_path):
    x = np.ones((2, 3))
    for where, shape in ((np.ones(2, dtype=bool), r"\(2,\)"), (np.ones((3, 3), dtype=bool), r"\(3, 3\)")):
        with pytest.raises(
            ValueError, match=rf"where of shape {shape} does not broadcast to x of shape \(2, 3\)"
        ):
            call(name, x, where=where)
    with pytest.raises(ValueError, match=r"where of shape \(2,\)"):
        call(name, x, where=[True, False])


@pytest.mark.parametrize("name", MASKED)
def test_where_must_be_boolean(name, kernel_path):
    with pytest.raises(TypeError, match=r"where must be a boolean array, got dtype float64"):
        call(name, np.ones(3), where=np.ones(3))
    with pytest.raises(TypeError, match=r"where must be a boolean array, got str"):
        call(name, np.ones(3), where="yes")


@pytest.mark.parametrize("name", UNARY + list(PAIRS))
def test_zero_dimensional_input(name, kernel_path):
    with pytest.raises(ValueError, match=r"at least one dimension, got a 0-d array"):
        call(name, np.float64(2.0))


def test_errors_on_other_backends(backend):
    """Validation happens before any computation, the same way on every array library."""
    x = backend.asarray(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"axis=2 is out of range"):
        sg.softmax(x, axis=2)
    with pytest.raises(ValueError, match=r"s and g must have the same shape"):
        sg.softmax_vjp(x, backend.asarray(np.ones((3, 2))))
    with pytest.raises(ValueError, match=r"where of shape \(3, 3\)"):
        sg.log_softmax(x, where=backend.asarray(np.ones((3, 3), dtype=bool)))
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0, got -2"):
        sg.softmax_jacobian(x, temperature=-2)
    if backend.name == "torch":
        import torch

        with pytest.raises(TypeError, match=r"x must be real, got complex dtype torch.complex64"):
            sg.softmax(torch.ones(3, dtype=torch.complex64))


def test_arrays_from_two_libraries_are_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(
        TypeError, match=r"s and g must be arrays of one array library, got Tensor and ndarray"
    ):
        sg.softmax_vjp(torch.ones(3), np.ones(3))
    # plain lists join the first argument's library
    s = sg.softmax(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    vjp = sg.softmax_vjp(s, [1.0, 0.0, 0.0])
    assert isinstance(vjp, torch.Tensor)
    np.testing.assert_allclose(vjp.numpy(), sg.softmax_jacobian(np.array([1.0, 2.0, 3.0]))[0], rtol=1e-15)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp", "softmax_vjp", "log_softmax_vjp"])
def test_out_is_checked_and_written(name, kernel_path):
    x = np.random.default_rng(0).standard_normal((2, 3))
    want = call(name, x)
    out = np.empty_like(want)
    assert call(name, x, out=out) is out
    np.testing.assert_array_equal(out, want)
    shape = re.escape(str(want.shape))
    with pytest.raises(ValueError, match=rf"out must have shape {shape} and dtype float64, got \(4, 4\)"):
        call(name, x, out=np.empty((4, 4)))
    with pytest.raises(ValueError, match=rf"out must have shape {shape} .* got .* and float32"):
        call(name, x, out=np.empty(want.shape, dtype=np.float32))
    with pytest.raises(TypeError, match=r"out= must be a NumPy array, got list"):
        call(name, x, out=[0.0] * 6)
