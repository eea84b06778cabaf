r"""Cross-entropy as a JAX function with closed-form derivatives (``jax.custom_jvp``).

The loss and its gradient are two ``custom_jvp`` functions. Their primal, for class indices
without label smoothing, is the lean XLA computation of :mod:`._jax_fast` (loss and gradient
from one ``exp`` of the logits); otherwise softgrad's array-API code on the JAX arrays
(traceable: ``jit``, ``vmap``). The loss's tangent is ``<grad, dx>`` from ``value_and_grad``'s
primal, so ``jax.grad`` of the loss runs that primal once and nothing else:

.. math:: \dot\ell = \langle \nabla_o \ell, \dot o\rangle
              - (1 - \varepsilon)\, c\, \langle w \dot t, \log p\rangle, \qquad
          \dot{(\nabla_o \ell)} = H \dot o + c\,(1 - \varepsilon)
              \left(\langle w, \dot t\rangle p - w \dot t\right)

with ``H v = c a (p v - p (p.v))`` (:func:`~softgrad.losses.cross_entropy_hvp`); the
``t``-terms exist for probability targets only (integer targets are not differentiable;
neither are class weights). The gradient is softgrad's, with the confident entry in its top-1
form ``sum_{j != y} q_j - a sum_{j != y} p_j``: accurate in float32 also with x64 off, where
nothing can be computed in float64 (float32 logits ``[20, 0, 0, 0]``: ``-6.18e-9``, not 0).
``jax.grad`` transposes the (linear) tangent; the JVP of the gradient uses the HVP rule.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from ..core._computes import get
from ..core._jax_rules import log_softmax, softmax
from . import _jax_fast

_OPTIONS = (3, 4, 5, 6)  # axis, ignore_index, reduction, label_smoothing: static


def _is_probabilities(target: Any) -> bool:
    return bool(jnp.issubdtype(jnp.result_type(target), jnp.floating))


def _row_share(x: Any, axis: int, reduction: str) -> float:
    """``c``: each row's share of the reduction for probability targets (mean divides by rows)."""
    if reduction != "mean":
        return 1.0
    rows = x.size // x.shape[axis] if x.shape[axis] else 0
    return 1.0 / rows if rows else 0.0


def _weighted(dt: Any, weight: Any, axis: int) -> Any:
    if weight is None:
        return dt
    shape = [1] * dt.ndim
    shape[axis] = -1
    return dt * jnp.reshape(weight, shape)


@partial(jax.custom_jvp, nondiff_argnums=_OPTIONS)
def cross_entropy(
    x: Any, target: Any, weight: Any, axis: int, ignore_index: int, reduction: str, label_smoothing: float
) -> Any:
    problem = _jax_fast.plan(x, target, weight, axis, ignore_index, reduction, label_smoothing)
    if problem is not None:
        return _jax_fast.value_and_grad(problem, want_grad=False)[0]
    return _jax_fast.reference(x, target, weight, axis, ignore_index, reduction, label_smoothing, False)


@cross_entropy.defjvp
def _loss_jvp(
    axis: int, ignore_index: int, reduction: str, eps: float, primals: tuple, tangents: tuple
) -> tuple[Any, Any]:
    """``<grad, dx>`` (plus the target's term): the gradient's own JVP (the HVP) is not needed
    here, and ``jax.grad`` of the loss transposes this, so the primal runs once, fused."""
    x, target, weight = primals
    dx, dt, _ = tangents
    loss, g = value_and_grad(x, target, weight, axis, ignore_index, reduction, eps)
    dloss = jnp.sum(g * dx, axis=axis) if reduction == "none" else jnp.sum(g * dx)
    if _is_probabilities(target):
        dloss = dloss - _target_term(x, dt, weight, axis, reduction, eps)
    return loss, jnp.astype(dloss, loss.dtype)


def _target_term(x: Any, dt: Any, weight: Any, axis: int, reduction: str, eps: float) -> Any:
    """``c (1 - eps) <w dt, log p>``: the loss's tangent in probability targets ``dt``."""
    axis = axis % x.ndim
    c = (1.0 - eps) * _row_share(x, axis, reduction)
    term = jnp.sum(_weighted(dt, weight, axis) * log_softmax(x, axis), axis=axis)
    return c * (term if reduction == "none" else jnp.sum(term))


@partial(jax.custom_jvp, nondiff_argnums=_OPTIONS)
def value_and_grad(
    x: Any, target: Any, weight: Any, axis: int, ignore_index: int, reduction: str, label_smoothing: float
) -> Any:
    """``(loss, d loss / d x)`` from one pass (for ``"none"``: every row's own gradient)."""
    problem = _jax_fast.plan(x, target, weight, axis, ignore_index, reduction, label_smoothing)
    if problem is not None:
        return _jax_fast.value_and_grad(problem)
    return _jax_fast.reference(x, target, weight, axis, ignore_index, reduction, label_smoothing, True)


@value_and_grad.defjvp
def _value_and_grad_jvp(
    axis: int, ignore_index: int, reduction: str, eps: float, primals: tuple, tangents: tuple
) -> tuple[Any, Any]:
    x, target, weight = primals
    dx, dt, _ = tangents
    loss, g = value_and_grad(x, target, weight, axis, ignore_index, reduction, eps)
    dloss = jnp.sum(g * dx, axis=axis) if reduction == "none" else jnp.sum(g * dx)
    dg = get("cross_entropy_hvp")(
        x, target, dx, axis, weight=weight, ignore_index=ignore_index,
        label_smoothing=eps, reduction=reduction,
    )
    if _is_probabilities(target):
        dloss = dloss - _target_term(x, dt, weight, axis, reduction, eps)
        axis = axis % x.ndim
        c = (1.0 - eps) * _row_share(x, axis, reduction)
        wdt = _weighted(dt, weight, axis)
        dg = dg + c * (jnp.sum(wdt, axis=axis, keepdims=True) * softmax(x, axis) - wdt)
    return (loss, g), (jnp.astype(dloss, loss.dtype), jnp.astype(dg, g.dtype))
