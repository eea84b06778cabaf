r"""``linear_cross_entropy`` for JAX: ``cross_entropy(x @ W.T + b, target)`` chunk by chunk.

A ``jax.custom_vjp``: the forward pass scans over chunks of rows, forms each chunk's logits,
keeps only its per-row losses (:mod:`._jax_fast`); the backward pass scans again, recomputes
each chunk's logits and gradient :math:`\bar z = c\,(\operatorname{softmax}(z) - e_y)` (the
top-1 form at the target) and contracts it at once:

.. math:: \bar x = \bar z W, \qquad \bar W = \sum_{\text{chunks}} \bar z^\top x, \qquad
          \bar b = \sum_{\text{chunks}} \bar z^\top 1

so the full ``(N, C)`` logits exist in neither pass: the extra memory is ``O(chunk * C)``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from . import _jax_fast


def _chunks(a: Any, chunk: int, fill: Any) -> Any:
    """``a`` (N, ...) padded with ``fill`` to a multiple of ``chunk`` rows, as (K, chunk, ...)."""
    pad = -a.shape[0] % chunk
    a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), fill, a.dtype)]) if pad else a
    return jnp.reshape(a, (-1, chunk, *a.shape[1:]))


def _rows(z: Any, t: Any, ignore_index: int, want_grad: bool) -> tuple[Any, Any]:
    """Per-row losses (0 where ignored) and per-row gradients of one chunk of logits."""
    problem = _jax_fast.plan(z, t, None, -1, ignore_index, "none", 0.0)
    assert problem is not None  # float logits, class indices, no smoothing: always planned
    return _jax_fast.value_and_grad(problem, want_grad)


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
    return _forward(x, W, b, t, ignore_index, reduction, chunk)[0]


def _forward(x: Any, W: Any, b: Any, t: Any, ignore_index: int, reduction: str, chunk: int) -> Any:
    xs, ts = _chunks(x, chunk, 0), _chunks(t, chunk, ignore_index)

    def one(_: Any, xt: tuple[Any, Any]) -> tuple[None, Any]:
        xc, tc = xt
        return None, _rows(xc @ W.T + b, tc, ignore_index, False)[0]

    _, rows = jax.lax.scan(one, None, (xs, ts))
    rows = jnp.reshape(rows, (-1,))[: x.shape[0]]
    return _reduce(rows, t, ignore_index, reduction), (x, W, b, t)


def _backward(ignore_index: int, reduction: str, chunk: int, saved: tuple, ct: Any) -> tuple:
    x, W, b, t = saved
    n = x.shape[0]
    if reduction == "none":
        row_ct = ct
    elif reduction == "sum":
        row_ct = jnp.broadcast_to(ct, (n,))
    else:
        row_ct = jnp.broadcast_to(ct / _denominator(t, ignore_index, x.dtype), (n,))
    xs, ts, cs = _chunks(x, chunk, 0), _chunks(t, chunk, ignore_index), _chunks(row_ct, chunk, 0)

    def one(acc: tuple[Any, Any], xtc: tuple[Any, Any, Any]) -> tuple[tuple[Any, Any], Any]:
        xc, tc, cc = xtc
        g = _rows(xc @ W.T + b, tc, ignore_index, True)[1] * cc[:, None]
        dW, db = acc
        return (dW + g.T @ xc, db + jnp.sum(g, axis=0)), g @ W

    (dW, db), dx = jax.lax.scan(one, (jnp.zeros_like(W), jnp.zeros_like(b)), (xs, ts, cs))
    return jnp.reshape(dx, (-1, x.shape[1]))[:n], dW, db, None


linear_cross_entropy.defvjp(_forward, _backward)
