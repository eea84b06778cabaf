"""softgrad.jax.cross_entropy on rows of a few classes: the Numba kernel inside XLA through the
FFI (losses/_jax_ffi.py), against softgrad's NumPy reference, the lean XLA path it replaces on
CPU and JAX autodiff of jax.nn's formula; the routing (which calls take it), vmap, jvp of grad,
special rows, bad labels, and a fresh process with x64 off."""

from __future__ import annotations

import ctypes
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
from softgrad.losses import _jax_ffi  # noqa: E402

pytestmark = pytest.mark.skipif(not _jax_ffi.available(), reason="jaxlib's FFI API is not version 0.x")


def _x(shape, seed=0, dtype=np.float64):
    return (3 * np.random.default_rng(seed).normal(size=shape)).astype(dtype)


def _labels(rows, c, seed=1):
    return np.random.default_rng(seed).integers(0, c, rows)


def _hlo(fn, *args):
    return jax.jit(fn).lower(*args).compile().as_text()


def _lean(monkeypatch):
    """Route every call to the lean XLA path for the duration of a block."""
    monkeypatch.setattr(_jax_ffi, "takes", lambda problem: False)


@pytest.mark.parametrize(
    ("shape", "kw", "takes"),
    [
        ((64, 10), {}, True),
        ((64, 2), {}, True),
        ((64, 32), {"reduction": "sum"}, True),
        ((4, 5, 64), {"axis": 1}, True),  # (N, C, d) as torch
        ((64, 33), {}, False),  # more classes than the short-row kernels take
        ((64, 1), {}, False),
        ((64, 10), {"weight": jnp.ones(10)}, False),
        ((64, 10), {"label_smoothing": 0.1}, False),
    ],
)
def test_which_calls_take_the_kernel(shape, kw, takes):
    axis = kw.get("axis", -1)
    x = jnp.asarray(_x(shape))
    c = shape[axis]
    y = jnp.asarray(_labels(x.size // c, c).reshape(np.delete(shape, axis % len(shape))))
    text = _hlo(jax.value_and_grad(lambda o: sgj.cross_entropy(o, y, **kw)), x)
    assert ("softgrad_ce_short_f64" in text) == takes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("c", [2, 3, 10, 32])
def test_kernel_matches_numpy_reference_and_lean_path(dtype, reduction, c, monkeypatch):
    rows = 300
    x = _x((rows, c), seed=c, dtype=dtype)
    y = _labels(rows, c, seed=c)
    y[[3, 50, 51]] = -100
    x[7, y[7]] = 40.0  # confident and right: the top-1 form of the gradient
    x[8] = -np.inf
    x[8, 0] = 1.0
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def value_and_grad():
        def loss(o):
            v = sgj.cross_entropy(o, jy, reduction=reduction)
            return (jnp.sum(v), v) if reduction == "none" else (v, v)

        (_, value), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(jx)
        return np.asarray(value), np.asarray(grad)

    value, grad = value_and_grad()
    assert value.dtype == dtype and grad.dtype == dtype
    want_value, want_grad = sg.cross_entropy_value_and_grad(x, y, reduction=reduction)
    rtol = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=0)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=1e-30)
    assert grad[7, y[7]] < 0  # not 0: the confident entry from the mass off the top
    _lean(monkeypatch)
    lean_value, lean_grad = value_and_grad()
    np.testing.assert_allclose(value, lean_value, rtol=rtol, atol=0)
    np.testing.assert_allclose(grad, lean_grad, rtol=4 * rtol, atol=1e-30)


def test_against_autodiff_of_jax_nn_formula():
    x = jnp.asarray(_x((500, 10)))
    y = jnp.asarray(_labels(500, 10))

    def plain(o):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o), y[:, None], axis=1))

    ours = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, y)))(x)
    theirs = jax.jit(jax.value_and_grad(plain))(x)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-14)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12, atol=1e-18)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_special_rows_as_numpy_and_bad_labels_as_the_lean_path(reduction):
    """NaN / +inf / all -inf rows as softgrad's NumPy reference (on the lean XLA path two +inf
    entries give NaN where the reference shares the mass: the kernel is the reference here); a
    label outside [0, C) (nothing checks it under jit) makes its row NaN and counts in the
    mean, as on the lean path."""
    x = _x((12, 5))
    y = _labels(12, 5)
    x[0, 1] = np.nan
    x[1, 2] = np.inf
    x[2] = -np.inf
    x[3, [1, 4]] = np.inf
    y[6] = -100
    bad = y.copy()
    bad[[4, 5]] = [7, -3]

    def value_and_grad(labels):
        def loss(o):
            v = sgj.cross_entropy(o, jnp.asarray(labels), reduction=reduction)
            return jnp.sum(v), v

        (_, value), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(jnp.asarray(x))
        return np.asarray(value), np.asarray(grad)

    value, grad = value_and_grad(y)
    want_value, want_grad = sg.cross_entropy_value_and_grad(x, y, reduction=reduction)
    np.testing.assert_allclose(value, want_value, rtol=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-14, equal_nan=True)
    assert np.isnan(grad[0]).all() and not np.isnan(grad[1:]).any()
    value, grad = value_and_grad(bad)
    assert np.isnan(grad[[0, 4, 5]]).all() and not np.isnan(np.delete(grad, [0, 4, 5], axis=0)).any()
    if reduction == "none":
        assert np.isnan(value[[0, 4, 5]]).all() and value[6] == 0.0 and np.isinf(value[2])
    else:
        assert np.isnan(value)
    # the denominator counts the bad rows: the other rows' gradients as with 11 counted rows
    rows = np.setdiff1d(np.arange(12), [0, 4, 5])
    share = 1 / 11 if reduction == "mean" else 1.0
    g_plain = sg.cross_entropy_value_and_grad(x, y, reduction="none")[1]
    np.testing.assert_allclose(grad[rows], share * g_plain[rows], rtol=1e-14)


def test_all_rows_ignored_mean_is_nan_with_zero_gradient():
    x = jnp.asarray(_x((6, 4)))
    y = jnp.full(6, -100)
    value, grad = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, y)))(x)
    assert np.isnan(value)
    assert not np.asarray(grad).any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vmap_solves_each_member_with_its_own_denominator(reduction):
    x = jnp.asarray(_x((3, 40, 6)))
    y = np.stack([_labels(40, 6, seed=s) for s in range(3)])
    y[1, :25] = -100  # member 1's mean divides by 15
    y = jnp.asarray(y)

    def loss(o, t):
        return jnp.sum(sgj.cross_entropy(o, t, reduction=reduction))

    values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss)))(x, y)
    assert "softgrad_ce_short_f64" in _hlo(jax.vmap(jax.value_and_grad(loss)), x, y)
    for b in range(3):
        want_value, want_grad = sg.cross_entropy_value_and_grad(
            np.asarray(x[b]), np.asarray(y[b]), reduction=reduction
        )
        np.testing.assert_allclose(values[b], np.sum(want_value), rtol=1e-14)
        np.testing.assert_allclose(grads[b], want_grad, rtol=1e-13, atol=1e-300)


def test_jvp_of_grad_is_the_hvp():
    x = jnp.asarray(_x((50, 7)))
    y = jnp.asarray(_labels(50, 7))
    v = jnp.asarray(_x((50, 7), seed=5))
    grad = jax.grad(lambda o: sgj.cross_entropy(o, y, reduction="sum"))
    _, hvp = jax.jvp(grad, (x,), (v,))
    want = sg.cross_entropy_hvp(np.asarray(x), np.asarray(y), np.asarray(v), reduction="sum")
    np.testing.assert_allclose(hvp, want, rtol=1e-12, atol=1e-15)
    fd = (grad(x + 1e-6 * v) - grad(x - 1e-6 * v)) / 2e-6
    np.testing.assert_allclose(hvp, fd, rtol=1e-5, atol=1e-8)


def test_many_rows_take_both_threads_and_match_the_reference():
    """Above the parallel threshold the kernel runs on every thread numba has."""
    x = _x((70_000, 10), dtype=np.float32)
    y = _labels(70_000, 10)
    value, grad = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, jnp.asarray(y))))(jnp.asarray(x))
    want_value, want_grad = sg.cross_entropy_value_and_grad(x, y)
    np.testing.assert_allclose(value, want_value, rtol=2e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-6, atol=1e-30)


X64_OFF = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp
    import softgrad as sg, softgrad.jax as sgj
    assert not jax.config.read("jax_enable_x64")
    x = jnp.asarray(np.array([[20.0, 0, 0, 0], [1, 2, 3, 4]], np.float32))
    y = jnp.asarray([0, 2])
    f = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, y, reduction="sum")))
    assert "softgrad_ce_short_f32" in f.lower(x).compile().as_text()
    value, grad = f(x)
    want_value, want_grad = sg.cross_entropy_value_and_grad(
        np.asarray(x, np.float64), np.array([0, 2]), reduction="sum"
    )
    assert abs(float(value) - want_value) <= 2e-7 * want_value, (value, want_value)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-6)
    assert grad[0, 0] == np.float32(-3 * np.exp(-20.0) / (1 + 3 * np.exp(-20.0))), grad[0, 0]
    print("ok")
    """
)


def test_float32_with_x64_off_in_a_fresh_process():
    """JAX's default (x64 off): int32 labels, float32 logits; the confident entry -6.18e-9."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run(
        [sys.executable, "-c", X64_OFF], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_concurrent_calls_from_python_threads_agree():
    """XLA may run the handler on several threads at once (here: four Python threads, each above
    the parallel threshold); numba's threading layer and the per-call scratch keep them apart."""
    import threading

    x = jnp.asarray(_x((70_000, 10), dtype=np.float32))
    y = jnp.asarray(_labels(70_000, 10))
    step = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, y)))
    want_value, want_grad = (np.asarray(a) for a in step(x))
    mismatches = []

    def work():
        for _ in range(10):
            value, grad = step(x)
            if float(value) != want_value or not np.array_equal(np.asarray(grad), want_grad):
                mismatches.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not mismatches


SUBNORMALS = textwrap.dedent(
    """
    import numpy as np, jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import softgrad as sg, softgrad.jax as sgj
    rng = np.random.default_rng(3)
    x = rng.normal(size=(70_000, 10))
    x[:, 0] -= 730.0  # p_0 ~ e^-730: subnormal in float64
    y = rng.integers(1, 10, 70_000)
    # first parallel call of the process from inside XLA (where subnormals are flushed)
    step = jax.jit(jax.value_and_grad(lambda o: sgj.cross_entropy(o, jnp.asarray(y), reduction="sum")))
    value, grad = step(jnp.asarray(x))
    want_value, want_grad = sg.cross_entropy_value_and_grad(x, y, reduction="sum")
    assert np.all(np.asarray(grad)[:, 0] > 0), "the kernel flushed subnormal gradients"
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-14, atol=0)
    # NumPy calls afterwards, on numba's worker threads, keep their subnormals too
    s = sg.softmax(x)
    assert np.all(s[:, 0] > 0), "numba's workers flush subnormals after the JAX call"
    print("ok")
    """
)


def test_subnormals_survive_xla_and_later_numpy_calls():
    """XLA runs with flush-to-zero; the handler clears it for the kernel, and numba's workers are
    started from Python, not from XLA's thread (whose FP state they would copy)."""
    out = subprocess.run([sys.executable, "-c", SUBNORMALS], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


# ---------------------------------------------------------------------------------------------
# Blocks shared with XLA's thread pool: the handler against a stand-in for XLA's API table that
# runs the helper task at once (on the calling thread), later (after the handler returned), or
# refuses it (no thread pool). Each way every row must come out as the reference computes it.

_API_CALL = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _FakePool:
    """An ``XLA_FFI_Api`` table with the entries the handler reads (its size, Error_Destroy and
    ThreadPool_Schedule), scheduling helpers as ``mode`` says."""

    def __init__(self, mode):
        self.mode, self.deferred, self.destroyed, self.scheduled = mode, [], [], 0
        self._schedule, self._destroy = _API_CALL(self.schedule), _API_CALL(self.destroy)
        self.table = np.zeros(_jax_ffi._API_SCHEDULE + 1, np.int64)
        self.table[0] = 8 * self.table.size
        self.table[_jax_ffi._API_ERROR_DESTROY] = ctypes.cast(self._destroy, ctypes.c_void_p).value
        self.table[_jax_ffi._API_SCHEDULE] = ctypes.cast(self._schedule, ctypes.c_void_p).value

    def schedule(self, args):
        size, _, _, task, data = (ctypes.c_int64 * 5).from_address(args)
        assert size == _jax_ffi._SCHEDULE_ARGS_BYTES
        self.scheduled += 1
        if self.mode == "refuse":
            return 0x5EED  # (an XLA_FFI_Error*, only ever handed back to Error_Destroy)
        if self.mode == "inline":
            _TASK(task)(data)
        else:
            self.deferred.append((task, data))
        return None

    def destroy(self, args):
        self.destroyed.append((ctypes.c_int64 * 3).from_address(args)[2])
        return None


@pytest.mark.parametrize("mode", ["inline", "later", "refuse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_shared_with_the_thread_pool_whenever_its_task_runs(mode, dtype):
    from softgrad.losses._ce_kernels import Constants

    rows, n = 30_000, 10  # (above the parallel threshold: helpers are asked for)
    x = _x((rows, n), seed=4, dtype=dtype)
    y = _labels(rows, n, seed=5).astype(np.int32)
    row_loss, grad = np.full(rows, np.nan), np.full((rows, n), np.nan, dtype)
    pool = _FakePool(mode)
    c = Constants(0.0, float(n), -1, 1, 1.0 / rows, False, False, True, True, False)
    _jax_ffi._run(x, y, row_loss, grad, c, _jax_ffi._Pool(pool.table.ctypes.data, 0, 2))
    want_rows = sg.cross_entropy(x.astype(np.float64), y, reduction="none")
    _, want_grad = sg.cross_entropy_value_and_grad(x, y)
    np.testing.assert_allclose(row_loss, want_rows, rtol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-6 if dtype == np.float32 else 1e-13, atol=0)
    assert pool.scheduled == 1
    assert pool.destroyed == ([0x5EED] if mode == "refuse" else [])
    for task, data in pool.deferred:  # a helper that comes after the handler returned
        before = grad.copy()
        _TASK(task)(data)  # (finds no block left, touches nothing, frees the state)
        np.testing.assert_array_equal(grad, before)


def test_helpers_are_asked_for_only_above_the_parallel_threshold():
    from softgrad.losses._ce_kernels import Constants

    rows, n = 1000, 10
    x, y = _x((rows, n), dtype=np.float32), _labels(rows, n).astype(np.int32)
    pool = _FakePool("inline")
    c = Constants(0.0, float(n), -1, 1, 1.0, False, False, True, True, False)
    _jax_ffi._run(x, y, np.empty(rows), np.empty_like(x), c, _jax_ffi._Pool(pool.table.ctypes.data, 0, 2))
    assert pool.scheduled == 0
