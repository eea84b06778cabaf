r"""``linear_cross_entropy`` for JAX: ``cross_entropy(x @ W.T + b, target)`` chunk by chunk.

A ``jax.custom_vjp`` that scans over chunks of rows and forms each chunk's logits ``z``; the
gradient of a chunk, :math:`\bar z = \operatorname{softmax}(z) - e_y` per row (the top-1 form
at the target, :mod:`._jax_fast`), is contracted at once:

.. math:: \bar x = \bar z W, \qquad \bar W = \sum_{\text{chunks}} \bar z^\top x, \qquad
          \bar b = \sum_{\text{chunks}} \bar z^\top 1

so the full ``(N, C)`` logits exist in neither pass: the extra memory is ``O(chunk * C)``.

For ``"sum"`` and ``"mean"`` every row's cotangent is the same number, so the forward pass of
the VJP computes the gradients for a cotangent of 1 along with the loss (three products with
``W`` per chunk, as autodiff of the plain formula) and the backward pass only scales them.
For ``"none"`` the rows' cotangents differ: the forward keeps only the losses and the
backward scans again, recomputing each chunk's logits (four products).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from . import _jax_rules


def _chunks(a: Any, chunk: int, fill: Any) -> Any:
    """``a`` (N, ...) padded with ``fill`` to a multiple of ``chunk`` rows, as (K, chunk, ...)."""
    pad = -a.shape[0] % chunk
    a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), fill, a.dtype)]) if pad else a
    return jnp.reshape(a, (-1, chunk, *a.shape[1:]))


def _rows(z: Any, t: Any, ignore_index: int, want_grad: bool) -> Any:
    """Per-row losses (0 where ignored), and with ``want_grad`` also the per-row gradients, of
    one chunk of logits, through the cross-entropy's closed-form rules (:mod:`._jax_rules`):
    the HVP rule makes the result differentiable again (a Hessian of the fused loss)."""
    if not want_grad:
        return _jax_rules.cross_entropy(z, t, None, -1, ignore_index, "none", 0.0)
    return _jax_rules.value_and_grad(z, t, None, -1, ignore_index, "none", 0.0)


def _denominator(t: Any, ignore_index: int, dtype: Any) -> Any:
    return jnp.sum(jnp.astype(t != ignore_index, dtype))


def _reduce(rows: Any, t: Any, ignore_index: int, reduction: str) -> Any:
    if reduction == "none":
        return rows
    total = jnp.sum(rows)
    if reduction == "sum":
        return total
    return total / _denominator(t, ignore_index, rows.dtype)  # all ignored: NaN, as PyTorch


@partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def linear_cross_entropy(
    x: Any, W: Any, b: Any, t: Any, ignore_index: int, reduction: str, chunk: int
) -> Any:
    return _loss(x, W, b, t, ignore_index, reduction, chunk)


def _loss(x: Any, W: Any, b: Any, t: Any, ignore_index: int, reduction: str, chunk: int) -> Any:
    xs, ts = _chunks(x, chunk, 0), _chunks(t, chunk, ignore_index)

    def one(_: Any, xt: tuple[Any, Any]) -> tuple[None, Any]:
        xc, tc = xt
        return None, _rows(xc @ W.T + b, tc, ignore_index, False)

    _, rows = jax.lax.scan(one, None, (xs, ts))
    rows = jnp.reshape(rows, (-1,))[: x.shape[0]]
    return _reduce(rows, t, ignore_index, reduction)


def _grad_scan(
    x: Any, W: Any, b: Any, t: Any, ignore_index: int, chunk: int, row_ct: Any = None
) -> tuple[Any, Any, Any, Any]:
    """One scan over the chunks: the rows' losses and ``(dx, dW, db)`` of ``sum_r c_r loss_r``
    (``c = row_ct``; 1 where None)."""
    xs, ts = _chunks(x, chunk, 0), _chunks(t, chunk, ignore_index)
    cs = None if row_ct is None else _chunks(row_ct, chunk, 0)

    def one(acc: tuple[Any, Any], xtc: tuple[Any, Any, Any]) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
        xc, tc, cc = xtc
        rows, g = _rows(xc @ W.T + b, tc, ignore_index, True)
        g = g if cc is None else g * cc[:, None]
        dW, db = acc
        return (dW + g.T @ xc, db + jnp.sum(g, axis=0)), (rows, g @ W)

    (dW, db), (rows, dx) = jax.lax.scan(one, (jnp.zeros_like(W), jnp.zeros_like(b)), (xs, ts, cs))
    n = x.shape[0]
    return jnp.reshape(rows, (-1,))[:n], jnp.reshape(dx, (-1, x.shape[1]))[:n], dW, db


def _forward(x: Any, W: Any, b: Any, t: Any, ignore_index: int, reduction: str, chunk: int) -> Any:
    if reduction == "none":
        return _loss(x, W, b, t, ignore_index, reduction, chunk), (x, W, b, t)
    rows, dx, dW, db = _grad_scan(x, W, b, t, ignore_index, chunk)
    return _reduce(rows, t, ignore_index, reduction), (dx, dW, db, t)


def _backward(ignore_index: int, reduction: str, chunk: int, saved: tuple, ct: Any) -> tuple:
    if reduction == "none":  # each row its own cotangent: the scan again, weighted
        x, W, b, t = saved
        _, dx, dW, db = _grad_scan(x, W, b, t, ignore_index, chunk, ct)
        return dx, dW, db, None
    dx, dW, db, t = saved  # the gradients of the sum, from the forward pass
    if reduction == "mean":
        ct = ct / _denominator(t, ignore_index, dx.dtype)
    return dx * ct, dW * ct, db * ct, None


linear_cross_entropy.defvjp(_forward, _backward)
