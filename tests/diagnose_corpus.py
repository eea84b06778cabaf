"""A corpus of labelled softmax derivatives, right and wrong, for :func:`softgrad.diagnose`.

Each implementation is registered with the kind it claims to compute and the set of catalog
ids it must be diagnosed with (empty for a correct one). They are written the way people write
them: loops with ``math.exp``, vectorized NumPy, ``np.einsum``, SciPy, PyTorch (float64
tensors, autograd where it applies) and JAX (``jax.nn``, ``jax.grad``).
``python tests/diagnose_corpus.py`` prints the false positive and false negative rates;
tests/test_teaching_diagnose.py asserts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Impl:
    name: str
    kind: str
    fn: Callable[..., Any]
    mistakes: frozenset[str]
    takes: str = "logits"
    reduction: str = "mean"
    style: str = "numpy"


CORPUS: list[Impl] = []


def impl(
    kind: str, *mistakes: str, takes: str = "logits", reduction: str = "mean", style: str = "numpy"
) -> Any:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        CORPUS.append(Impl(fn.__name__, kind, fn, frozenset(mistakes), takes, reduction, style))
        return fn

    return register


def _torch() -> Any:
    import torch

    return torch


def _t(a: Any) -> Any:
    return _torch().as_tensor(np.asarray(a))


# --- building blocks the implementations use (each written as a user would) ----------------------


def stable_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def naive_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def one_hot(y: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[y]


# === softmax ====================================================================================


@impl("softmax")
def softmax_numpy(x):
    return stable_softmax(x)


@impl("softmax", style="loops")
def softmax_loops(x):
    rows = np.atleast_2d(x)
    out = np.empty(rows.shape)
    for b, row in enumerate(rows):
        m = max(row)
        exps = [math.exp(v - m) for v in row]
        total = sum(exps)
        out[b] = [e / total for e in exps]
    return out.reshape(np.shape(x))


@impl("softmax", style="scipy")
def softmax_scipy(x):
    from scipy.special import softmax

    return softmax(x, axis=-1)


@impl("softmax", style="einsum")
def softmax_einsum(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.einsum("...i->...", e)[..., None]


@impl("softmax", style="torch")
def softmax_torch(x):
    return _torch().softmax(_t(x), dim=-1)


@impl("softmax", "no-max-shift")
def softmax_naive(x):
    return naive_softmax(x)


@impl("softmax", "no-max-shift", style="loops")
def softmax_naive_loops(x):
    rows = np.atleast_2d(x)
    out = np.empty(rows.shape)
    for b, row in enumerate(rows):
        exps = [math.exp(v) for v in row]  # OverflowError: math range error, past 709.78
        out[b] = [e / sum(exps) for e in exps]
    return out.reshape(np.shape(x))


@impl("softmax", "no-max-shift", style="torch")
def softmax_naive_torch(x):
    torch = _torch()
    e = torch.exp(_t(x))
    return e / e.sum(dim=-1, keepdim=True)


@impl("softmax", "wrong-axis")
def softmax_sum_all(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)  # no axis: right for one row, wrong for a batch


@impl("softmax", "wrong-axis", style="torch")
def softmax_dim0_torch(x):
    return _torch().softmax(_t(x), dim=0)


@impl("softmax", "double-softmax")
def softmax_twice(x):
    return stable_softmax(stable_softmax(x))


@impl("softmax", "mutates-input")
def softmax_in_place(x):
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


@impl("softmax", "raised", style="loops")
def softmax_vector_only(x):
    m = max(x)  # a batch: "truth value of an array is ambiguous"
    exps = [math.exp(v - m) for v in x]
    return np.array([e / sum(exps) for e in exps])


@impl("softmax", "unrecognized")
def softmax_off_by_1e3(x):
    return stable_softmax(x) * (1 + 1e-3)


@impl("softmax", "unrecognized")
def softmax_garbage(x):
    return np.random.default_rng(0).random(np.shape(x))


@impl("softmax", "unrecognized")
def softmax_constant(x):
    return np.full(np.shape(x), 0.2)


# === log_softmax ================================================================================


@impl("log_softmax")
def log_softmax_numpy(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


@impl("log_softmax", style="scipy")
def log_softmax_scipy(x):
    from scipy.special import log_softmax

    return log_softmax(x, axis=-1)


@impl("log_softmax", style="torch")
def log_softmax_torch(x):
    return _torch().log_softmax(_t(x), dim=-1)


@impl("log_softmax", style="loops")
def log_softmax_loops(x):
    rows = np.atleast_2d(x)
    out = np.empty(rows.shape)
    for b, row in enumerate(rows):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        out[b] = [v - lse for v in row]
    return out.reshape(np.shape(x))


@impl("log_softmax", "log-of-softmax")
def log_of_stable_softmax(x):
    return np.log(stable_softmax(x))


@impl("log_softmax", "log-of-softmax", style="torch")
def log_of_softmax_torch(x):
    torch = _torch()
    return torch.log(torch.softmax(_t(x), dim=-1))


@impl("log_softmax", "log-of-softmax", "no-max-shift")
def log_of_naive_softmax(x):
    return np.log(naive_softmax(x))


@impl("log_softmax", "no-max-shift")
def log_softmax_unshifted(x):
    return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))


@impl("log_softmax", "wrong-axis")
def log_softmax_axis0(x):
    m = x.max(axis=0, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=0, keepdims=True))


@impl("log_softmax", "double-softmax")
def log_softmax_of_probs(x):
    s = stable_softmax(x)
    return log_softmax_numpy(s)


@impl("log_softmax", "unrecognized")
def log_softmax_off_by_1e3(x):
    return log_softmax_numpy(x) + 1e-3


# === softmax_jacobian ===========================================================================


@impl("softmax_jacobian", takes="probs")
def jacobian_outer(s):
    return np.diag(s) - np.outer(s, s)


@impl("softmax_jacobian", takes="probs", style="loops")
def jacobian_loops(s):
    n = len(s)
    J = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            J[i, j] = s[i] * (1 - s[j]) if i == j else -s[i] * s[j]
    return J


@impl("softmax_jacobian", takes="probs", style="einsum")
def jacobian_einsum(s):
    return np.einsum("i,ij->ij", s, np.eye(len(s))) - np.einsum("i,j->ij", s, s)


@impl("softmax_jacobian", takes="probs", style="torch")
def jacobian_torch_probs(s):
    torch = _torch()
    t = _t(s)
    return torch.diag(t) - torch.outer(t, t)


@impl("softmax_jacobian")
def jacobian_from_logits(x):
    s = stable_softmax(x)
    return np.diag(s) - np.outer(s, s)


@impl("softmax_jacobian", style="torch")
def jacobian_autograd(x):
    torch = _torch()
    return torch.autograd.functional.jacobian(lambda t: torch.softmax(t, dim=-1), _t(x))


@impl("softmax_jacobian", "diagonal-only", takes="probs")
def jacobian_diagonal(s):
    return np.diag(s * (1 - s))


@impl("softmax_jacobian", "diagonal-only", takes="probs")
def jacobian_diagonal_vector(s):
    return s * (1 - s)


@impl("softmax_jacobian", "diagonal-only", takes="probs", style="loops")
def jacobian_diagonal_loops(s):
    J = np.zeros((len(s), len(s)))
    for i in range(len(s)):
        J[i, i] = s[i] * (1 - s[i])
    return J


@impl("softmax_jacobian", "diagonal-only", takes="probs", style="torch")
def jacobian_diagonal_torch(s):
    t = _t(s)
    return t * (1 - t)


@impl("softmax_jacobian", "summed-jacobian", takes="probs")
def jacobian_summed(s):
    return (np.diag(s) - np.outer(s, s)).sum(axis=0)


@impl("softmax_jacobian", "summed-jacobian", takes="probs", style="loops")
def jacobian_summed_loops(s):
    grad = np.zeros(len(s))
    for j in range(len(s)):
        for i in range(len(s)):
            grad[j] += s[i] * ((i == j) - s[j])
    return grad


@impl("softmax_jacobian", "summed-jacobian", style="torch")
def jacobian_summed_autograd(x):
    torch = _torch()
    t = _t(x).clone().requires_grad_(True)
    torch.softmax(t, dim=-1).sum().backward()  # the gradient of sum(S): zero
    return t.grad


@impl("softmax_jacobian", "logits-for-probs", takes="probs")
def jacobian_softmax_again(s):
    p = stable_softmax(s)
    return np.diag(p) - np.outer(p, p)


@impl("softmax_jacobian", "logits-for-probs")
def jacobian_formula_on_logits(x):
    return np.diag(x) - np.outer(x, x)


@impl("softmax_jacobian", "logits-for-probs", "diagonal-only")
def jacobian_diagonal_on_logits(x):
    return x * (1 - x)


@impl("softmax_jacobian", "no-max-shift")
def jacobian_naive(x):
    s = naive_softmax(x)
    return np.diag(s) - np.outer(s, s)


@impl("softmax_jacobian", "no-max-shift", "diagonal-only")
def jacobian_naive_diagonal(x):
    s = naive_softmax(x)
    return np.diag(s * (1 - s))


@impl("softmax_jacobian", "no-max-shift", style="loops")
def jacobian_naive_loops(x):
    exps = [math.exp(v) for v in x]
    s = [e / sum(exps) for e in exps]
    return np.array([[s[i] * ((i == j) - s[j]) for j in range(len(s))] for i in range(len(s))])


@impl("softmax_jacobian", "double-softmax")
def jacobian_of_double_softmax(x):
    s = stable_softmax(stable_softmax(x))
    return np.diag(s) - np.outer(s, s)


@impl("softmax_jacobian", "unrecognized", takes="probs")
def jacobian_negated(s):
    return np.outer(s, s) - np.diag(s)


@impl("softmax_jacobian", "unrecognized", takes="probs")
def jacobian_off_by_1e3(s):
    return np.diag(s) - np.outer(s, s) + 1e-3


# === softmax_backward ===========================================================================


@impl("softmax_backward", takes="probs")
def backward_vjp(s, g):
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


@impl("softmax_backward", takes="probs", style="einsum")
def backward_einsum(s, g):
    eye = np.eye(s.shape[-1])
    J = np.einsum("...i,ij->...ij", s, eye) - np.einsum("...i,...j->...ij", s, s)
    return np.einsum("...ij,...i->...j", J, g)


@impl("softmax_backward", takes="probs", style="loops")
def backward_loops(s, g):
    S, G = np.atleast_2d(s), np.atleast_2d(g)
    out = np.zeros(S.shape)
    for b in range(S.shape[0]):
        for j in range(S.shape[1]):
            out[b, j] = sum(G[b, i] * S[b, i] * ((i == j) - S[b, j]) for i in range(S.shape[1]))
    return out.reshape(np.shape(s))


@impl("softmax_backward", style="torch")
def backward_autograd(x, g):
    torch = _torch()
    t = _t(x).clone().requires_grad_(True)
    torch.softmax(t, dim=-1).backward(_t(g))
    return t.grad


@impl("softmax_backward")
def backward_from_logits(x, g):
    s = stable_softmax(x)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


@impl("softmax_backward", "diagonal-only", takes="probs")
def backward_diagonal(s, g):
    return s * (1 - s) * g


@impl("softmax_backward", "summed-jacobian", takes="probs", style="einsum")
def backward_summed(s, g):
    J = np.einsum("...i,ij->...ij", s, np.eye(s.shape[-1])) - np.einsum("...i,...j->...ij", s, s)
    return J.sum(axis=-2) * g


@impl("softmax_backward", "upstream-ignored", takes="probs")
def backward_passthrough(s, g):
    return g


@impl("softmax_backward", "upstream-ignored", takes="probs", style="torch")
def backward_returns_jacobian(s, g):
    torch = _torch()
    t = _t(s)
    return torch.diag_embed(t) - t.unsqueeze(-1) * t.unsqueeze(-2)


@impl("softmax_backward", "jacobian-applied-twice", takes="probs")
def backward_twice(s, g):
    once = s * (g - np.sum(g * s, axis=-1, keepdims=True))
    return s * (once - np.sum(once * s, axis=-1, keepdims=True))


@impl("softmax_backward", "wrong-axis", takes="probs")
def backward_axis0(s, g):
    return s * (g - np.sum(g * s, axis=0, keepdims=True))


@impl("softmax_backward", "cross-batch-jacobian", takes="probs")
def backward_flattened(s, g):
    f = s.reshape(-1)
    J = np.diag(f) - np.outer(f, f)
    return (J @ g.reshape(-1)).reshape(s.shape)


@impl("softmax_backward", "sign-flipped", takes="probs")
def backward_negated(s, g):
    return -backward_vjp(s, g)


@impl("softmax_backward", "logits-for-probs", takes="probs")
def backward_softmax_again(s, g):
    p = stable_softmax(s)
    return p * (g - np.sum(g * p, axis=-1, keepdims=True))


@impl("softmax_backward", "no-max-shift")
def backward_naive(x, g):
    s = naive_softmax(x)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


@impl("softmax_backward", "double-softmax", style="torch")
def backward_two_softmaxes(x, g):
    torch = _torch()
    t = _t(x).clone().requires_grad_(True)
    torch.softmax(torch.softmax(t, dim=-1), dim=-1).backward(_t(g))
    return t.grad


@impl("softmax_backward", "unrecognized", takes="probs")
def backward_off_by_1e3(s, g):
    return backward_vjp(s, g) * 1.001


# === cross_entropy_grad =========================================================================


@impl("cross_entropy_grad")
def xent_numpy(z, y):
    return (stable_softmax(z) - one_hot(y, z.shape[1])) / len(y)


@impl("cross_entropy_grad", style="loops")
def xent_loops(z, y):
    B, n = z.shape
    grad = np.zeros((B, n))
    for b in range(B):
        m = max(z[b])
        exps = [math.exp(v - m) for v in z[b]]
        for i in range(n):
            grad[b, i] = (exps[i] / sum(exps) - (i == y[b])) / B
    return grad


@impl("cross_entropy_grad", style="torch")
def xent_autograd(z, y):
    torch = _torch()
    t = _t(z).clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(t, _t(y)).backward()
    return t.grad


@impl("cross_entropy_grad", reduction="sum")
def xent_sum(z, y):
    return stable_softmax(z) - one_hot(y, z.shape[1])


@impl("cross_entropy_grad", reduction="sum", style="torch")
def xent_sum_autograd(z, y):
    torch = _torch()
    t = _t(z).clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(t, _t(y), reduction="sum").backward()
    return t.grad


@impl("cross_entropy_grad", "batch-scale")
def xent_forgot_mean(z, y):
    return stable_softmax(z) - one_hot(y, z.shape[1])


@impl("cross_entropy_grad", "batch-scale")
def xent_divided_twice(z, y):
    return xent_numpy(z, y) / len(y)


@impl("cross_entropy_grad", "batch-scale", reduction="sum", style="torch")
def xent_mean_for_sum(z, y):
    return xent_autograd(z, y)


@impl("cross_entropy_grad", "batch-scale")
def xent_times_two(z, y):
    return 2 * xent_numpy(z, y)


@impl("cross_entropy_grad", "sign-flipped")
def xent_y_minus_s(z, y):
    return (one_hot(y, z.shape[1]) - stable_softmax(z)) / len(y)


@impl("cross_entropy_grad", "sign-flipped", "batch-scale")
def xent_y_minus_s_summed(z, y):
    return one_hot(y, z.shape[1]) - stable_softmax(z)


@impl("cross_entropy_grad", "swapped-index")
def xent_swapped(z, y):
    s, Y = stable_softmax(z), one_hot(y, z.shape[1])
    return (np.sum(s * Y, axis=1, keepdims=True) - Y) / len(y)


@impl("cross_entropy_grad", "swapped-index", style="einsum")
def xent_swapped_einsum(z, y):
    s, Y = stable_softmax(z), one_hot(y, z.shape[1])
    return (np.einsum("bk,bk->b", s, Y)[:, None] - Y) / len(y)


@impl("cross_entropy_grad", "jacobian-applied-twice", style="einsum")
def xent_jacobian_again(z, y):
    s = stable_softmax(z)
    d = (s - one_hot(y, z.shape[1])) / len(y)
    J = np.einsum("bi,ij->bij", s, np.eye(z.shape[1])) - np.einsum("bi,bj->bij", s, s)
    return np.einsum("bij,bj->bi", J, d)


@impl("cross_entropy_grad", "diagonal-only", "unrecognized")  # and 0/0 = NaN where S underflows
def xent_diagonal_chain(z, y):
    s, Y = stable_softmax(z), one_hot(y, z.shape[1])
    dL_ds = -Y / s
    return dL_ds * s * (1 - s) / len(y)


@impl("cross_entropy_grad", "upstream-ignored", "unrecognized")  # and 0/0 = NaN where float32 S underflows
def xent_dl_ds(z, y):
    s, Y = stable_softmax(z), one_hot(y, z.shape[1])
    return -Y / s / len(y)


@impl("cross_entropy_grad", "summed-jacobian", "unrecognized", style="einsum")  # and 0 * inf = NaN
def xent_summed_jacobian(z, y):
    s, Y = stable_softmax(z), one_hot(y, z.shape[1])
    J = np.einsum("bi,ij->bij", s, np.eye(z.shape[1])) - np.einsum("bi,bj->bij", s, s)
    return J.sum(axis=1) * (-Y / s) / len(y)


@impl("cross_entropy_grad", "no-max-shift")
def xent_naive(z, y):
    return (naive_softmax(z) - one_hot(y, z.shape[1])) / len(y)


@impl("cross_entropy_grad", "no-max-shift", "sign-flipped", style="torch")
def xent_naive_torch_flipped(z, y):
    torch = _torch()
    e = torch.exp(_t(z))
    return (torch.nn.functional.one_hot(_t(y), z.shape[1]) - e / e.sum(1, keepdim=True)) / len(y)


@impl("cross_entropy_grad", "double-softmax", style="torch")
def xent_softmax_then_torch_loss(z, y):
    torch = _torch()
    t = _t(z).clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(torch.softmax(t, dim=1), _t(y)).backward()
    return t.grad


@impl("cross_entropy_grad", "double-softmax")
def xent_probs_as_logits(z, y):
    return (stable_softmax(stable_softmax(z)) - one_hot(y, z.shape[1])) / len(y)


@impl("cross_entropy_grad", "wrong-axis")
def xent_axis0(z, y):
    e = np.exp(z - z.max(axis=0))
    return (e / e.sum(axis=0) - one_hot(y, z.shape[1])) / len(y)


@impl("cross_entropy_grad", "unrecognized")
def xent_off_by_1e3(z, y):
    return xent_numpy(z, y) + 1e-3


@impl("cross_entropy_grad", "unrecognized")
def xent_garbage(z, y):
    return np.random.default_rng(1).normal(size=z.shape)


# === layer_grad_W ===============================================================================


@impl("layer_grad_W")
def layer_numpy(X, W, y):
    s = stable_softmax(X @ W.T)
    return (s - one_hot(y, W.shape[0])).T @ X / len(y)


@impl("layer_grad_W", style="einsum")
def layer_einsum(X, W, y):
    s = stable_softmax(np.einsum("bn,tn->bt", X, W))
    return np.einsum("bt,bn->tn", s - one_hot(y, W.shape[0]), X) / len(y)


@impl("layer_grad_W", style="loops")
def layer_loops(X, W, y):
    B, N = X.shape
    T = W.shape[0]
    dW = np.zeros((T, N))
    for b in range(B):
        z = [sum(W[t, j] * X[b, j] for j in range(N)) for t in range(T)]
        m = max(z)
        exps = [math.exp(v - m) for v in z]
        for t in range(T):
            d = exps[t] / sum(exps) - (t == y[b])
            for j in range(N):
                dW[t, j] += d * X[b, j] / B
    return dW


@impl("layer_grad_W", style="torch")
def layer_autograd(X, W, y):
    torch = _torch()
    w = _t(W).clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(_t(X) @ w.T, _t(y)).backward()
    return w.grad


@impl("layer_grad_W", reduction="sum")
def layer_sum(X, W, y):
    return (stable_softmax(X @ W.T) - one_hot(y, W.shape[0])).T @ X


@impl("layer_grad_W", "transposed")
def layer_transposed(X, W, y):
    s = stable_softmax(X @ W.T)
    return X.T @ (s - one_hot(y, W.shape[0])) / len(y)


@impl("layer_grad_W", "transposed", "batch-scale", style="torch")
def layer_transposed_summed(X, W, y):
    torch = _torch()
    w = _t(W).clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(_t(X) @ w.T, _t(y), reduction="sum").backward()
    return w.grad.T


@impl("layer_grad_W", "batch-scale")
def layer_forgot_mean(X, W, y):
    return layer_sum(X, W, y)


@impl("layer_grad_W", "sign-flipped")
def layer_flipped(X, W, y):
    return -layer_numpy(X, W, y)


@impl("layer_grad_W", "swapped-index")
def layer_swapped(X, W, y):
    s, Y = stable_softmax(X @ W.T), one_hot(y, W.shape[0])
    return (np.sum(s * Y, axis=1, keepdims=True) - Y).T @ X / len(y)


@impl("layer_grad_W", "jacobian-applied-twice", style="einsum")
def layer_jacobian_again(X, W, y):
    s = stable_softmax(X @ W.T)
    d = s - one_hot(y, W.shape[0])
    d = s * (d - np.sum(d * s, axis=1, keepdims=True))
    return d.T @ X / len(y)


@impl("layer_grad_W", "no-max-shift")
def layer_naive(X, W, y):
    return (naive_softmax(X @ W.T) - one_hot(y, W.shape[0])).T @ X / len(y)


@impl("layer_grad_W", "no-max-shift", style="loops")
def layer_naive_loops(X, W, y):
    B = X.shape[0]
    dW = np.zeros(W.shape)
    for b in range(B):
        exps = [math.exp(float(W[t] @ X[b])) for t in range(W.shape[0])]
        for t in range(W.shape[0]):
            dW[t] += (exps[t] / sum(exps) - (t == y[b])) * X[b] / B
    return dW


@impl("layer_grad_W", "wrong-axis")
def layer_axis0(X, W, y):
    z = X @ W.T
    e = np.exp(z - z.max(axis=0))
    return (e / e.sum(axis=0) - one_hot(y, W.shape[0])).T @ X / len(y)


@impl("layer_grad_W", "unrecognized")
def layer_off_by_1e3(X, W, y):
    return layer_numpy(X, W, y) * 1.001


@impl("layer_grad_W", "unrecognized")
def layer_constant(X, W, y):
    return np.ones(W.shape)


# === more styles of the same mistakes =========================================================


@impl("softmax", "mutates-input", style="torch")
def softmax_torch_shares_memory(x):
    torch = _torch()
    t = torch.from_numpy(x)  # shares memory with x
    t -= t.max(dim=-1, keepdim=True).values
    return torch.softmax(t, dim=-1)


@impl("softmax", "wrong-axis", style="loops")
def softmax_loops_one_total(x):
    rows = np.atleast_2d(x)
    m = max(max(row) for row in rows)
    total = sum(math.exp(v - m) for row in rows for v in row)
    return np.array([[math.exp(v - m) / total for v in row] for row in rows]).reshape(np.shape(x))


@impl("softmax", "double-softmax", style="loops")
def softmax_loops_twice(x):
    return softmax_loops(softmax_loops(x))


@impl("softmax", "unrecognized", style="torch")
def softmax_torch_temperature(x):
    return _torch().softmax(_t(x) / 1.01, dim=-1)  # a stray temperature


@impl("log_softmax", "log-of-softmax", style="loops")
def log_softmax_loops_of_softmax(x):
    s = softmax_loops(x)
    return np.array([[math.log(v) for v in row] for row in np.atleast_2d(s)]).reshape(np.shape(x))


@impl("softmax_jacobian", "logits-for-probs", takes="probs", style="torch")
def jacobian_torch_autograd_of_probs(s):
    torch = _torch()  # autograd of softmax at s: the Jacobian at the wrong point
    return torch.autograd.functional.jacobian(lambda t: torch.softmax(t, dim=-1), _t(s))


@impl("softmax_jacobian", "logits-for-probs", style="loops")
def jacobian_loops_on_logits(x):
    n = len(x)
    return np.array([[x[i] * ((i == j) - x[j]) for j in range(n)] for i in range(n)])


@impl("softmax_backward", "cross-batch-jacobian", takes="probs", style="torch")
def backward_flattened_torch(s, g):
    torch = _torch()
    f = _t(s).reshape(-1)
    J = torch.diag(f) - torch.outer(f, f)
    return (J @ _t(g).reshape(-1)).reshape(s.shape)


@impl("softmax_backward", "cross-batch-jacobian", takes="probs", style="einsum")
def backward_flattened_einsum(s, g):
    f, h = s.reshape(-1), g.reshape(-1)
    return (np.einsum("i,i->i", f, h) - f * np.einsum("j,j->", f, h)).reshape(s.shape)


@impl("softmax_backward", "upstream-ignored", takes="probs", style="loops")
def backward_loops_no_g(s, g):
    S = np.atleast_2d(s)
    n = S.shape[1]
    out = [
        [sum(S[b, i] * ((i == j) - S[b, j]) for i in range(n)) for j in range(n)] for b in range(S.shape[0])
    ]
    return np.array(out).reshape(np.shape(s)) + g  # "the local gradient plus the incoming one"


@impl("softmax_backward", "raised", takes="probs")
def backward_vector_only(s, g):
    J = np.diag(s) - np.outer(s, s)  # a batch: shapes (B,) and (Bn, Bn) do not broadcast
    return J @ g


@impl("softmax_backward", "jacobian-applied-twice", takes="probs", style="torch")
def backward_twice_torch(s, g):
    torch = _torch()
    t = _t(s)
    J = torch.diag_embed(t) - t.unsqueeze(-1) * t.unsqueeze(-2)
    return (J @ (J @ _t(g).unsqueeze(-1))).squeeze(-1)


@impl("cross_entropy_grad", "swapped-index", style="loops")
def xent_swapped_loops(z, y):
    B, n = z.shape
    s = xent_sum(z, y) + one_hot(y, n)
    return np.array([[(s[b, y[b]] - (i == y[b])) / B for i in range(n)] for b in range(B)])


@impl("cross_entropy_grad", "sign-flipped", style="loops")
def xent_loops_flipped(z, y):
    return -xent_loops(z, y)


@impl("cross_entropy_grad", "batch-scale", style="loops")
def xent_loops_summed_for_mean(z, y):
    return xent_loops(z, y) * len(y)


@impl("cross_entropy_grad", "jacobian-applied-twice", style="torch")
def xent_through_softmax_backward(z, y):
    torch = _torch()
    t = _t(z).clone().requires_grad_(True)
    s = torch.softmax(t, dim=1)
    d = (s - torch.nn.functional.one_hot(_t(y), z.shape[1])).detach() / len(y)
    s.backward(d)  # the softmax layer's backward, after the fused S - Y
    return t.grad


@impl("cross_entropy_grad", "upstream-ignored", "unrecognized", style="torch")
def xent_torch_dl_ds(z, y):
    torch = _torch()
    s = torch.softmax(_t(z), dim=1)
    return -torch.nn.functional.one_hot(_t(y), z.shape[1]) / s / len(y)


@impl("layer_grad_W", "transposed", style="einsum")
def layer_transposed_einsum(X, W, y):
    s = stable_softmax(np.einsum("bn,tn->bt", X, W))
    return np.einsum("bn,bt->nt", X, s - one_hot(y, W.shape[0])) / len(y)


@impl("layer_grad_W", "sign-flipped", "batch-scale", style="loops")
def layer_loops_flipped_summed(X, W, y):
    return -layer_loops(X, W, y) * len(y)


@impl("layer_grad_W", "unrecognized", style="torch")
def layer_autograd_with_bias_decay(X, W, y):
    return layer_autograd(X, W, y) + 1e-3 * _t(W)  # weight decay where none belongs


# === JAX (x64 as the session has it: the probes arrive as float64 NumPy arrays) ===================


def _jnp() -> Any:
    import jax.numpy as jnp

    return jnp


@impl("softmax", style="jax")
def softmax_jax(x):
    import jax

    return jax.nn.softmax(_jnp().asarray(x), axis=-1)


@impl("softmax", "no-max-shift", style="jax")
def softmax_naive_jax(x):
    e = _jnp().exp(_jnp().asarray(x))
    return e / e.sum(axis=-1, keepdims=True)


@impl("cross_entropy_grad", style="jax")
def xent_jax_autodiff(z, y):
    import jax

    jnp = _jnp()

    def loss(z):
        picked = jnp.take_along_axis(jax.nn.log_softmax(z), jnp.asarray(y)[:, None], axis=1)
        return -jnp.mean(picked)

    return jax.grad(loss)(jnp.asarray(z))


@impl("softmax_backward", "diagonal-only", takes="probs", style="jax")
def backward_diagonal_jax(s, g):
    s = _jnp().asarray(s)
    return s * (1 - s) * _jnp().asarray(g)


# === rates ======================================================================================


def rates(corpus: list[Impl] | None = None) -> dict[str, Any]:
    """Diagnose every implementation; count false positives, false negatives and wrong names."""
    import softgrad as sg

    right = wrong = fp = fn = misnamed = 0
    rows = []
    for entry in corpus if corpus is not None else CORPUS:
        d = sg.diagnose(entry.fn, entry.kind, takes=entry.takes, reduction=entry.reduction)
        got = frozenset(d.ids)
        if entry.mistakes:
            wrong += 1
            fn += d.ok
        else:
            right += 1
            fp += not d.ok
        misnamed += got != entry.mistakes
        rows.append((entry, got, d.seconds))
    return {
        "right": right,
        "wrong": wrong,
        "false_positives": fp,
        "false_negatives": fn,
        "misnamed": misnamed,
        "rows": rows,
        "max_seconds": max(r[2] for r in rows),
    }


def _available() -> list[Impl]:
    import importlib.util

    missing = {style for style in ("torch", "jax") if importlib.util.find_spec(style) is None}
    return [e for e in CORPUS if e.style not in missing]


def _main() -> None:
    r = rates(_available())
    for entry, got, seconds in r["rows"]:
        mark = "ok " if got == entry.mistakes else "BAD"
        want = ",".join(sorted(entry.mistakes)) or "(correct)"
        got_text = ",".join(sorted(got)) or "(correct)"
        head = f"{mark} {entry.kind:18s} {entry.style:6s} {entry.name:28s} {seconds:6.3f} s"
        print(f"{head}  want {want}  got {got_text}")
    times = np.array([row[2] for row in r["rows"]])
    print(
        f"\n{r['right']} right and {r['wrong']} wrong implementations: "
        f"false positives {r['false_positives']}/{r['right']}, "
        f"false negatives {r['false_negatives']}/{r['wrong']}, misnamed {r['misnamed']}"
    )
    print(
        f"seconds per diagnosis: median {np.median(times):.3f}, "
        f"90th percentile {np.quantile(times, 0.9):.3f}, "
        f"max {times.max():.3f} ({r['rows'][int(times.argmax())][0].name})"
    )


if __name__ == "__main__":
    _main()
