r"""softgrad inside JAX code: softmax family and cross-entropy with closed-form derivatives.

Signatures copy :mod:`jax.nn` and optax (``softmax_cross_entropy``,
``softmax_cross_entropy_with_integer_labels``), so switching is a one-line change. Each function
is a ``jax.custom_jvp`` whose primal is softgrad's computation and whose tangent is the closed
form; it works under ``jit``, ``vmap``, ``grad`` and the JVP of a gradient (HVP), and stays
accurate in float32 with x64 off (the confident gradient in its top-1 form).

Speed: the cross-entropy with class indices (float32/float64 logits, any ``weight``,
``ignore_index`` and reduction, no label smoothing) computes loss and gradient together in one
lean XLA pass (:mod:`softgrad.losses._jax_fast`: one shift by the row maximum, one ``exp`` of
the logits, the target entry as minus the sum of the other probabilities), on every platform,
and ``jax.grad`` runs it once; the loss's tangent is ``<grad, dv>``, the HVP enters only with
the JVP of a gradient. Label smoothing and probability targets run softgrad's array-API
reference traced by JAX. There is no CPU kernel path: called through ``jax.pure_callback``,
softgrad's Numba kernel would get the logits copied in and the gradient copied out, which
costs more than XLA's whole forward and backward (``docs/performance.md``, "Inside JAX").

Examples
--------
>>> import jax, jax.numpy as jnp
>>> import softgrad.jax as sgj
>>> logits, labels = jnp.array([[20.0, 0.0, 0.0, 0.0]], dtype=jnp.float32), jnp.array([0])
>>> g = jax.grad(lambda o: sgj.softmax_cross_entropy_with_integer_labels(o, labels).sum())(logits)
>>> float(g[0, 0])  # -3 e^-20 / (1 + 3 e^-20); autodiff of log_softmax gives 0 in float32
-6.1834...e-09
"""

from __future__ import annotations

from typing import Any

from .core import _jax_rules as _core_rules
from .losses import _jax_rules as _loss_rules

__all__ = [
    "cross_entropy",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]


def softmax(x: Any, axis: int = -1) -> Any:
    r"""``jax.nn.softmax(x, axis)``: :math:`e^{x_i} / \sum_j e^{x_j}`.

    Tangent :math:`s (\dot x - s \cdot \dot x)`.

    Examples
    --------
    >>> import jax.numpy as jnp, softgrad.jax as sgj
    >>> sgj.softmax(jnp.array([1.0, 2.0, 3.0], dtype=jnp.float32))
    Array([0.09003057, 0.24472848, 0.66524094], dtype=float32)
    """
    return _core_rules.softmax(x, axis)


def log_softmax(x: Any, axis: int = -1) -> Any:
    r"""``jax.nn.log_softmax(x, axis)``: :math:`x_i - \operatorname{lse}(x)`.

    Tangent :math:`\dot x - s \cdot \dot x`.

    Examples
    --------
    >>> import jax.numpy as jnp, softgrad.jax as sgj
    >>> sgj.log_softmax(jnp.array([0.0, -1000.0], dtype=jnp.float32))
    Array([    0., -1000.], dtype=float32)
    """
    return _core_rules.log_softmax(x, axis)


def logsumexp(x: Any, axis: int = -1, keepdims: bool = False) -> Any:
    r"""``jax.nn.logsumexp(x, axis, keepdims=...)`` for one axis; tangent :math:`s \cdot \dot x`.

    Examples
    --------
    >>> import jax.numpy as jnp, softgrad.jax as sgj
    >>> float(sgj.logsumexp(jnp.array([0.0, -30.0])))
    9.357...e-14
    """
    return _core_rules.logsumexp(x, axis, bool(keepdims))


def cross_entropy(
    logits: Any,
    target: Any,
    axis: int = -1,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Any:
    r"""softgrad's :func:`~softgrad.cross_entropy` (PyTorch's options, class axis ``axis``), with
    closed-form derivatives: :math:`\nabla_o \ell = c (a\, p - q)`, :math:`H v = c a (p v - p (p \cdot v))`.

    Differentiable in ``logits`` and in probability targets; integer targets and ``weight`` are
    constants. Under ``jit`` class indices are not checked (no host sync): an index outside
    ``[0, C)`` that is not ``ignore_index`` makes its row's loss and gradient NaN (and so a sum
    or mean NaN; with ``reduction="mean"`` and ``weight`` every gradient entry, since that
    row's share of the denominator is unknown).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, softgrad.jax as sgj
    >>> o = jnp.array([[2.0, 1.0, 0.1]], dtype=jnp.float32)
    >>> g = jax.grad(sgj.cross_entropy)(o, jnp.array([0]))  # softmax(o) - e_0
    >>> [round(float(v), 6) for v in g[0]], g.dtype
    ([-0.340999, 0.242433, 0.098566], dtype('float32'))
    """
    return _loss_rules.cross_entropy(
        logits, target, weight, int(axis), int(ignore_index), str(reduction), float(label_smoothing)
    )


def softmax_cross_entropy(logits: Any, labels: Any, axis: int = -1) -> Any:
    r"""``optax.softmax_cross_entropy``: :math:`-\sum_j t_j \log p_j` per example (differentiable in both).

    Examples
    --------
    >>> import jax.numpy as jnp, softgrad.jax as sgj
    >>> t = jnp.array([[0.5, 0.5, 0.0, 0.0]], jnp.float32)
    >>> sgj.softmax_cross_entropy(jnp.zeros((1, 4), jnp.float32), t)
    Array([1.3862944], dtype=float32)
    """
    return cross_entropy(logits, labels, axis, reduction="none")


def softmax_cross_entropy_with_integer_labels(logits: Any, labels: Any, axis: int = -1) -> Any:
    r"""``optax.softmax_cross_entropy_with_integer_labels``: :math:`\operatorname{lse}(o) - o_y` per example.

    Examples
    --------
    >>> import jax.numpy as jnp, softgrad.jax as sgj
    >>> sgj.softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 4), jnp.float32), jnp.array([0, 3]))
    Array([1.3862944, 1.3862944], dtype=float32)
    """
    return cross_entropy(logits, labels, axis, reduction="none")


def linear_cross_entropy(
    input: Any,
    weight: Any,
    target: Any,
    bias: Any = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int = 1024,
) -> Any:
    r"""``cross_entropy(input @ weight.T + bias, target)`` without ever forming the (N, C) logits.

    A ``jax.custom_vjp`` that scans over ``chunk_size`` rows at a time in the forward and the
    backward pass (which recomputes each chunk's logits): extra memory ``O(chunk_size * C)``.
    ``input`` (N, D) and ``weight`` (C, D) of one dtype, float32 or float64; ``bias`` (C,) or
    None; ``target`` (N,) class indices;
    ``reduction`` and ``ignore_index`` as PyTorch. Differentiable once (``grad``, ``vjp``) in
    ``input``, ``weight`` and ``bias``; works under ``jit`` and ``vmap``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, softgrad.jax as sgj
    >>> x, W = jnp.ones((3, 2), jnp.float32), jnp.zeros((4, 2), jnp.float32)
    >>> float(sgj.linear_cross_entropy(x, W, jnp.array([0, 1, 2])))  # log 4
    1.3862943...
    >>> jax.grad(sgj.linear_cross_entropy, 1)(x, W, jnp.array([0, 0, 0]))[:, 0]  # (p - e_0) summed / 3
    Array([-0.75,  0.25,  0.25,  0.25], dtype=float32)
    """
    import jax.numpy as jnp

    from .losses import _jax_linear
    from .losses.cross_entropy import _check_options

    _, reduction, ignore = _check_options(0.0, reduction, ignore_index)
    x, W, t = jnp.asarray(input), jnp.asarray(weight), jnp.asarray(target)
    if x.dtype not in (jnp.float32, jnp.float64) or W.dtype != x.dtype:
        raise TypeError(f"input and weight must both be float32 or float64, got {x.dtype} and {W.dtype}")
    if x.ndim != 2 or W.ndim != 2 or W.shape[1] != x.shape[1]:
        raise ValueError(f"input must be (N, D) and weight (C, D), got {x.shape} and {W.shape}")
    if t.shape != x.shape[:1] or not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"target must hold {x.shape[0]} integer class indices, got {t.dtype} {t.shape}")
    b = jnp.zeros(W.shape[:1], W.dtype) if bias is None else jnp.asarray(bias)
    if b.shape != W.shape[:1]:
        raise ValueError(f"bias must have shape {W.shape[:1]}, got {b.shape}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    chunk = min(chunk_size, max(1, x.shape[0]))
    return _jax_linear.linear_cross_entropy(x, W, b, t, ignore, reduction, chunk)
