"""The derivatives of softmax and log_softmax against oracles we did not write.

* mpmath at 50 digits: the error of every derivative in float32 and float64, measured in units
  of ``eps * natural scale`` (for a VJP, ``|error_j| <= 8 eps s_j max|g|``), on random and
  adversarial rows; the largest is printed at the end of the run;
* PyTorch autograd (``torch.func``) and JAX (``jax.jacobian``, ``jax.hessian``, ``jax.jvp``,
  ``jax.vjp``) in float64, for every Jacobian, VJP, JVP and Hessian, with a temperature, along a
  non-last axis and over batches;
* SymPy: the symbolic derivatives of softmax for N = 2..4 equal the closed forms;
* central finite differences of softmax and log_softmax themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
from mpmath import mp

import softgrad as sg

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

DPS = 50
BOUND = 8  # errors, in units of eps * natural scale


# --- mpmath: errors relative to each derivative's natural scale -------------------------------


def _rows(dtype: Any) -> list[np.ndarray]:
    """Random rows and adversarial ones (huge, wide, ties, one dominant, underflowing entries)."""
    rng = np.random.default_rng(5)
    huge = 1e300 if dtype == np.float64 else 3e38
    rows = [rng.standard_normal(n) * scale for n in (2, 3, 6) for scale in (0.5, 3.0, 30.0)]
    rows += [
        np.array(r)
        for r in (
            [huge, -huge, 0.0],
            [0.0, -700.123456789, 3.3],
            [5.0, 5.0, 5.0],
            [2.5, 2.5, -40.0],
            [100.0, 0.0, -1.0, -2.0],
            [0.0, -30.0],
            [0.0, -100.0, -101.0],
            [1e-8, 0.0, -1e-8],
            [1000.0, 2000.0, 3000.0],
        )
    ]
    return [r.astype(dtype) for r in rows]


def _mp_softmax(row: np.ndarray, t: Any) -> list:
    xs = [mpmath.mpf(float(v)) / t for v in row]
    m = max(xs)
    es = [mpmath.exp(v - m) for v in xs]
    total = mpmath.fsum(es)
    return [e / total for e in es]


def _errors(got: np.ndarray, exact: list, scale: list, dtype: Any) -> float:
    """max |got - exact| / (eps * scale + smallest subnormal), all in mpmath."""
    fi = np.finfo(dtype)
    eps, floor = mpmath.mpf(float(fi.eps)), mpmath.mpf(float(fi.smallest_subnormal))
    worst = mpmath.mpf(0)
    for g, e, s in zip(np.ravel(got).tolist(), exact, scale, strict=True):
        worst = max(worst, abs(mpmath.mpf(g) - e) / (eps * s + floor))
    return float(worst)


def _delta(i: int, j: int) -> int:
    return int(i == j)


def _measure(name: str, x: np.ndarray, t: float, rng: np.random.Generator) -> float:
    """The error of derivative ``name`` at row ``x`` in units of eps * natural scale."""
    dtype = x.dtype.type
    n = x.size
    T = mpmath.mpf(t)
    if name == "softmax_jacobian":
        S = _mp_softmax(x, T)
        exact = [S[i] * (_delta(i, j) - S[j]) / T for i in range(n) for j in range(n)]
        scale = [S[i] * (_delta(i, j) + S[j]) / T for i in range(n) for j in range(n)]
        return _errors(sg.softmax_jacobian(x, temperature=t), exact, scale, dtype)
    if name == "log_softmax_jacobian":
        S = _mp_softmax(x, T)
        exact = [(_delta(i, j) - S[j]) / T for i in range(n) for j in range(n)]
        scale = [(_delta(i, j) + S[j]) / T for i in range(n) for j in range(n)]
        return _errors(sg.log_softmax_jacobian(x, temperature=t), exact, scale, dtype)
    if name == "softmax_hessian":
        S = _mp_softmax(x, T)
        a = [[_delta(i, j) - S[j] for j in range(n)] for i in range(n)]
        b = [[_delta(i, j) + S[j] for j in range(n)] for i in range(n)]
        idx = [(i, j, k) for i in range(n) for j in range(n) for k in range(n)]
        exact = [S[i] * (a[i][j] * a[i][k] - S[j] * a[j][k]) / T**2 for i, j, k in idx]
        scale = [S[i] * (b[i][j] * b[i][k] + S[j] * b[j][k]) / T**2 for i, j, k in idx]
        return _errors(sg.softmax_hessian(x, temperature=t), exact, scale, dtype)
    # vector products: the exact value from the given (rounded) s or logp and g
    g = (rng.standard_normal(n) * 2).astype(dtype)
    G = [mpmath.mpf(float(v)) for v in g]
    gmax = max(abs(v) for v in G)
    if name in ("softmax_vjp", "softmax_jvp"):
        s = sg.softmax(x, temperature=t)
        P = [mpmath.mpf(float(v)) for v in s]
        dot = mpmath.fsum(gi * pi for gi, pi in zip(G, P, strict=True))
        exact = [P[j] * (G[j] - dot) / T for j in range(n)]
        scale = [P[j] * gmax / T for j in range(n)]
        return _errors(getattr(sg, name)(s, g, temperature=t), exact, scale, dtype)
    logp = sg.log_softmax(x, temperature=t)
    P = [mpmath.exp(mpmath.mpf(float(v))) for v in logp]
    # Documented: an entry with logp == -inf (masked, -inf input, or a log-probability below the
    # dtype's range) is constant in x; its cotangent is ignored and its gradient is 0.
    support = [bool(v > -np.inf) for v in logp]
    G = [gi if ok else mpmath.mpf(0) for gi, ok in zip(G, support, strict=True)]
    if name == "log_softmax_vjp":
        total, total_abs = mpmath.fsum(G), mpmath.fsum(abs(v) for v in G)
        exact = [(G[j] - P[j] * total) / T if support[j] else 0 for j in range(n)]
        scale = [(abs(G[j]) + P[j] * total_abs) / T for j in range(n)]
    else:  # log_softmax_jvp
        dot = mpmath.fsum(pj * gj for pj, gj in zip(P, G, strict=True))
        dot_abs = mpmath.fsum(pj * abs(gj) for pj, gj in zip(P, G, strict=True))
        exact = [(G[i] - dot) / T if support[i] else 0 for i in range(n)]
        scale = [(abs(G[i]) + dot_abs) / T for i in range(n)]
    return _errors(getattr(sg, name)(logp, g, temperature=t), exact, scale, dtype)


DERIVATIVES = [
    "softmax_jacobian",
    "log_softmax_jacobian",
    "softmax_vjp",
    "softmax_jvp",
    "log_softmax_vjp",
    "log_softmax_jvp",
    "softmax_hessian",
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", DERIVATIVES)
def test_within_a_few_ulp_of_natural_scale(name, dtype, kernel_path, accuracy_report):
    rng = np.random.default_rng(8)
    worst = 0.0
    with mp.workdps(DPS):
        for t in (1.0, 0.7):
            for x in _rows(dtype):
                worst = max(worst, _measure(name, x, t, rng))
    accuracy_report(f"{name} [eps*scale]", np.dtype(dtype).name, f"random+adv. ({kernel_path})", worst)
    assert worst <= BOUND, worst


# --- PyTorch autograd and JAX, float64, with temperature, a non-last axis and batches ---------

CASES = [(-1, 1.0), (1, 0.7), (0, 2.5)]  # (axis, temperature) on an array of shape (3, 4, 5)


def _x(axis: int) -> np.ndarray:
    rng = np.random.default_rng(100 + axis)
    return rng.standard_normal((3, 4, 5)) * 3


def _close(ours: Any, theirs: Any) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(1.0, float(np.max(np.abs(theirs))))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14 * scale)


@pytest.mark.parametrize(("axis", "t"), CASES)
def test_against_torch_autograd(axis, t, kernel_path):
    torch = pytest.importorskip("torch")
    from torch.func import jacfwd, jacrev, jvp, vjp, vmap

    x = _x(axis)
    rng = np.random.default_rng(1)
    g, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    xt, gt, vt = (torch.asarray(a) for a in (x, g, v))

    def softmax(z: Any) -> Any:
        return torch.softmax(z / t, dim=-1)

    def log_softmax(z: Any) -> Any:
        return torch.log_softmax(z / t, dim=-1)

    def per_row(fn: Callable[[Any], Any]) -> np.ndarray:  # vmapped over the batch axes
        rows = torch.movedim(xt, axis, -1)
        out = vmap(fn)(rows.reshape(-1, rows.shape[-1]))
        return out.reshape(*rows.shape[:-1], *out.shape[1:]).numpy()

    _close(sg.softmax_jacobian(x, axis, temperature=t), per_row(jacrev(softmax)))
    _close(sg.log_softmax_jacobian(x, axis, temperature=t), per_row(jacrev(log_softmax)))
    _close(sg.softmax_hessian(x, axis, temperature=t), per_row(jacfwd(jacrev(softmax))))

    def f_axis(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda z: torch.movedim(fn(torch.movedim(z, axis, -1)), -1, axis)

    s = sg.softmax(x, axis, temperature=t)
    logp = sg.log_softmax(x, axis, temperature=t)
    _, pullback = vjp(f_axis(softmax), xt)
    _close(sg.softmax_vjp(s, g, axis, temperature=t), pullback(gt)[0].numpy())
    _, pullback = vjp(f_axis(log_softmax), xt)
    _close(sg.log_softmax_vjp(logp, g, axis, temperature=t), pullback(gt)[0].numpy())
    _close(sg.softmax_jvp(s, v, axis, temperature=t), jvp(f_axis(softmax), (xt,), (vt,))[1].numpy())
    _close(
        sg.log_softmax_jvp(logp, v, axis, temperature=t),
        jvp(f_axis(log_softmax), (xt,), (vt,))[1].numpy(),
    )


@functools.cache
def _jax_oracle() -> Callable[..., Any]:
    """Every derivative of one batch of rows (last axis) by JAX, compiled once for all cases."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)

    def oracle(rows: Any, g: Any, v: Any, t: Any) -> tuple[Any, ...]:
        def softmax(z: Any) -> Any:
            return jax.nn.softmax(z / t, axis=-1)

        def log_softmax(z: Any) -> Any:
            return jax.nn.log_softmax(z / t, axis=-1)

        return (
            jax.vmap(jax.jacobian(softmax))(rows),
            jax.vmap(jax.jacobian(log_softmax))(rows),
            jax.vmap(jax.hessian(softmax))(rows),
            jax.vjp(softmax, rows)[1](g)[0],
            jax.vjp(log_softmax, rows)[1](g)[0],
            jax.jvp(softmax, (rows,), (v,))[1],
            jax.jvp(log_softmax, (rows,), (v,))[1],
        )

    return jax.jit(oracle)


@pytest.mark.parametrize(("axis", "t"), CASES)
def test_against_jax(axis, t, kernel_path):
    """jax.jacobian, jax.hessian, jax.vjp and jax.jvp of jax.nn.softmax / log_softmax."""
    oracle = _jax_oracle()
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(2 + axis)
    x, g, v = (rng.standard_normal((4, 4, 4)) * 3 for _ in range(3))

    def rows(a: np.ndarray) -> Any:  # the softmax axis last, batch axes flattened
        return jnp.asarray(np.moveaxis(a, axis, -1).reshape(-1, 4))

    def back(a: Any) -> np.ndarray:  # rows of the oracle's vector products back to x's layout
        return np.moveaxis(np.asarray(a).reshape(np.moveaxis(x, axis, -1).shape), -1, axis)

    jac, log_jac, hess, vjp_s, vjp_log, jvp_s, jvp_log = oracle(rows(x), rows(g), rows(v), t)
    n = (4, 4, 4)  # batch shape (4, 4), then the Jacobian's N x N
    _close(sg.softmax_jacobian(x, axis, temperature=t), np.asarray(jac).reshape(*n[:2], 4, 4))
    _close(sg.log_softmax_jacobian(x, axis, temperature=t), np.asarray(log_jac).reshape(*n[:2], 4, 4))
    _close(sg.softmax_hessian(x, axis, temperature=t), np.asarray(hess).reshape(*n[:2], 4, 4, 4))
    s = sg.softmax(x, axis, temperature=t)
    logp = sg.log_softmax(x, axis, temperature=t)
    _close(sg.softmax_vjp(s, g, axis, temperature=t), back(vjp_s))
    _close(sg.log_softmax_vjp(logp, g, axis, temperature=t), back(vjp_log))
    _close(sg.softmax_jvp(s, v, axis, temperature=t), back(jvp_s))
    _close(sg.log_softmax_jvp(logp, v, axis, temperature=t), back(jvp_log))


def test_vjp_of_masked_rows_matches_torch(kernel_path):
    """-inf entries (masked logits): torch's gradient there is 0, and so is ours."""
    torch = pytest.importorskip("torch")
    x = np.array([[0.5, -np.inf, 2.0, -1.0], [3.0, 1.0, -np.inf, -np.inf]])
    g = np.array([[1.0, 2.0, -1.0, 0.5], [0.3, -2.0, 4.0, 1.0]])
    xt = torch.asarray(x, requires_grad=True)
    (torch.log_softmax(xt, dim=-1) * torch.asarray(g)).nan_to_num(0.0, 0.0, 0.0).sum().backward()
    logp = sg.log_softmax(x)
    g_masked = np.where(np.isfinite(logp), g, 0.0)  # torch's -inf * g would be nan: mask first
    ours = sg.log_softmax_vjp(logp, g)
    np.testing.assert_allclose(ours, xt.grad.numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(ours, sg.log_softmax_vjp(logp, g_masked))
    xt = torch.asarray(x, requires_grad=True)
    (torch.softmax(xt, dim=-1) * torch.asarray(g)).sum().backward()
    np.testing.assert_allclose(sg.softmax_vjp(sg.softmax(x), g), xt.grad.numpy(), rtol=1e-14, atol=1e-16)


# --- SymPy: the closed forms are the symbolic derivatives ------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4])
def test_closed_forms_equal_sympy_derivatives(n):
    """d S_i / d x_j and d2 S_i / dx_j dx_k of exp(x_i/T) / sum exp(x/T), for N = 2..4.

    SymPy differentiates the exponential form; with ``E_i = exp(x_i / T)`` the difference from
    the closed form is a rational function of E and T whose numerator must expand to 0. The
    closed forms are then evaluated against softgrad at a point, at 30 digits.
    """
    sp = pytest.importorskip("sympy")
    x = sp.symbols(f"x0:{n}", real=True)
    T = sp.symbols("T", positive=True)
    E = sp.symbols(f"E0:{n}", positive=True)
    expo = [sp.exp(xi / T) for xi in x]
    S = [ei / sum(expo) for ei in expo]
    back = dict(zip(expo, E, strict=True))
    Sc = [s.subs(back) for s in S]

    def a(p: int, q: int) -> Any:
        return _delta(p, q) - Sc[q]

    def vanishes(expr: Any) -> bool:
        numerator, _ = sp.fraction(sp.together(expr.subs(back)))
        return sp.expand(numerator) == 0

    jac_sym = [[sp.diff(S[i], x[j]) for j in range(n)] for i in range(n)]
    log_jac_sym = [[sp.diff(sp.log(S[i]), x[j]) for j in range(n)] for i in range(n)]
    hess_sym = {}
    for i in range(n):
        for j in range(n):
            assert vanishes(jac_sym[i][j] - Sc[i] * a(i, j) / T), (i, j)
            assert vanishes(log_jac_sym[i][j] - a(i, j) / T), (i, j)
            for k in range(j, n):  # symmetric in j, k
                hess_sym[i, j, k] = hess_sym[i, k, j] = sp.diff(jac_sym[i][j], x[k])
                closed = Sc[i] * (a(i, j) * a(i, k) - Sc[j] * a(j, k)) / T**2
                assert vanishes(hess_sym[i, j, k] - closed), (i, j, k)

    point = np.linspace(-1.5, 2.0, n)
    t = 0.8
    values = {**{xi: sp.Float(float(v), 30) for xi, v in zip(x, point, strict=True)}, T: sp.Float(t, 30)}

    def num(expr: Any) -> float:
        return float(expr.evalf(30, subs=values))

    jac = np.array([[num(jac_sym[i][j]) for j in range(n)] for i in range(n)])
    hess = np.array([[[num(hess_sym[i, j, k]) for k in range(n)] for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(sg.softmax_jacobian(point, temperature=t), jac, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(sg.softmax_hessian(point, temperature=t), hess, rtol=1e-13, atol=1e-16)


# --- finite differences ----------------------------------------------------------------------


def _central(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: float) -> np.ndarray:
    """d f / d x_j by central differences with one Richardson step: O(h^4)."""
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = 1.0

        def d(step: float, e: np.ndarray = e) -> np.ndarray:
            return (f(x + step * e) - f(x - step * e)) / (2 * step)

        cols.append((4 * d(h / 2) - d(h)) / 3)
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("t", [1.0, 0.6])
def test_against_finite_differences(t, kernel_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(6) * 2
    g = rng.standard_normal(6)

    def softmax(z: np.ndarray) -> np.ndarray:
        return sg.softmax(z, temperature=t)

    def log_softmax(z: np.ndarray) -> np.ndarray:
        return sg.log_softmax(z, temperature=t)

    jac = _central(softmax, x, 1e-3)
    log_jac = _central(log_softmax, x, 1e-3)
    tol = {"rtol": 1e-9, "atol": 1e-10}
    np.testing.assert_allclose(sg.softmax_jacobian(x, temperature=t), jac, **tol)
    np.testing.assert_allclose(sg.log_softmax_jacobian(x, temperature=t), log_jac, **tol)
    s, logp = softmax(x), log_softmax(x)
    np.testing.assert_allclose(sg.softmax_vjp(s, g, temperature=t), g @ jac, **tol)
    np.testing.assert_allclose(sg.softmax_jvp(s, g, temperature=t), jac @ g, **tol)
    np.testing.assert_allclose(sg.log_softmax_vjp(logp, g, temperature=t), g @ log_jac, **tol)
    np.testing.assert_allclose(sg.log_softmax_jvp(logp, g, temperature=t), log_jac @ g, **tol)
    # the Hessian: central differences of the finite-difference Jacobian, from softmax alone
    hess = _central(lambda z: _central(softmax, z, 1e-3), x, 1e-2)
    np.testing.assert_allclose(sg.softmax_hessian(x, temperature=t), hess, rtol=1e-6, atol=1e-7)


def test_log_softmax_jacobian_zero_rows_at_minus_inf(kernel_path):
    """A -inf entry is constant in x: its row of the log_softmax Jacobian is 0, its column 0."""
    x = np.array([1.0, -np.inf, 0.5])
    jac = sg.log_softmax_jacobian(x)
    finite = np.array([1.0, 0.5])
    ref = _central(sg.log_softmax, finite, 1e-3)
    np.testing.assert_array_equal(jac[1], 0.0)
    np.testing.assert_array_equal(jac[:, 1], 0.0)
    np.testing.assert_allclose(jac[np.ix_([0, 2], [0, 2])], ref, rtol=1e-9, atol=1e-10)
