r"""The lean primal of the JAX cross-entropy with class indices: one XLA pass structure, top-1 form.

:mod:`._jax_rules` keeps the rules (``custom_jvp``); this module computes their primal,
``(loss, d loss / d o)`` together, for float32/float64 logits with integer targets, in the
fewest XLA operations that keep softgrad's accuracy:

.. math:: m = \max_j o_j, \quad e = e^{o - m}, \quad Z = \sum_j e_j, \quad
          S = \sum_{j \ne y} e_j, \qquad
          \ell = \begin{cases} \operatorname{log1p}(S) & o_y = m \\ \log Z - (o_y - m) & \text{else}
          \end{cases}, \qquad
          \frac{\partial \ell}{\partial o_j} = \frac{e_j}{Z}\ (j \ne y), \quad
          \frac{\partial \ell}{\partial o_y} = -\frac{S}{Z}

``e`` without its target entry is the one (R, C) temporary: computed once, its target entries
zeroed in place, summed, then scaled into the gradient, whose target entries are written in
place too (XLA's CPU reductions read a materialized input, so a masked second array for ``S``
would cost a full extra pass; a select against an ``iota`` in the elementwise passes cost
about 25% at (4096, 32000)). The same passes as XLA's autodiff of optax's formula. The target
entry is :math:`-S/Z`, never ``p_y - 1``, and a confident row's loss comes through ``log1p``:
accurate in float32 with x64 off (float32 logits ``[20, 0, 0, 0]``: ``-6.18e-9``, where
autodiff of ``log_softmax`` gives 0). Class weights, ``ignore_index`` and the three reductions
follow :func:`~softgrad.cross_entropy`; ``label_smoothing`` (and probability targets) take
softgrad's array-API reference instead.

Rows of 2 to 32 classes without class weights on CPU (``jax.lax.platform_dependent``) go to
softgrad's fused Numba kernel instead, called in place through XLA's FFI (:mod:`._jax_ffi`);
``jax.pure_callback`` would copy every argument and result, which at (65536, 10) costs more than
XLA's whole forward+backward (``benchmarks/bench_autodiff.py --callback-cost``). At many classes
the kernel has no such edge over this XLA code, which meets its goal there.

A class index outside ``[0, C)`` that is not ``ignore_index`` (nothing checks it under ``jit``)
gives its row a NaN loss and gradient (and so a NaN sum or mean), as the reference does.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..core._computes import get
from . import _jax_ffi

_Problem = Any  # cross_entropy._Problem, validated by cross_entropy._prepare (looked up: no import cycle)

SELECT_MAX = 64
"""Up to this many classes the target entries of ``e`` are zeroed by a select against an
``iota`` in its elementwise pass, above it by an in-place scatter: measured (interleaved, CPU)
select 4.3 ms vs scatter 5.1 ms at (65536, 10), and 1242 ms vs 1016 ms at (4096, 32000)."""


def plan(
    x: Any, target: Any, weight: Any, axis: int, ignore_index: int, reduction: str, eps: float
) -> _Problem | None:
    """The validated problem when the lean path takes it (float32/float64 logits, class indices,
    no label smoothing, no empty axis), else None: the caller runs the reference."""
    problem = get("cross_entropy_prepare")(x, target, axis, weight, ignore_index, eps, reduction, None)
    if not problem.opts.by_index or problem.opts.smoothing != 0.0:
        return None
    if problem.x.dtype not in (jnp.float32, jnp.float64) or problem.x.size == 0:
        return None
    return problem


def value_and_grad(problem: _Problem, want_grad: bool = True) -> tuple[Any, Any]:
    """``(loss, grad)`` of a planned problem in the logits' layout; ``grad`` is None unless
    ``want_grad`` (for ``"none"``: every row's own gradient)."""
    loss, g = _short_rows(problem, want_grad) if _jax_ffi.takes(problem) else _rows(problem, want_grad)
    if problem.opts.reduction == "none":
        loss = jnp.reshape(loss, problem.batch_shape)
    if g is None:
        return loss, None
    g = jnp.reshape(g, (*problem.batch_shape, problem.opts.n_classes))
    return loss, jnp.moveaxis(g, -1, problem.axis)


def reference(
    x: Any, target: Any, weight: Any, axis: int, ignore_index: int, reduction: str, eps: float,
    want_grad: bool,
) -> Any:
    """softgrad's array-API reference (every other case): the loss, or ``(loss, grad)``."""
    if not want_grad:
        return get("cross_entropy_reference")(x, target, axis, weight, ignore_index, eps, reduction)
    return get("cross_entropy_value_and_grad")(
        x, target, axis, weight=weight, ignore_index=ignore_index, label_smoothing=eps, reduction=reduction
    )


def _short_rows(problem: _Problem, want_grad: bool) -> tuple[Any, Any]:
    """Rows of a few classes: softgrad's Numba kernel through XLA's FFI on CPU
    (:mod:`._jax_ffi`), this module's XLA code on other platforms."""
    import jax

    def kernel() -> tuple[Any, Any]:
        return _jax_ffi.rows(problem, want_grad)

    def lean() -> tuple[Any, Any]:
        return _rows(problem, want_grad)

    return jax.lax.platform_dependent(cpu=kernel, default=lean)


def _rows(problem: _Problem, want_grad: bool) -> tuple[Any, Any]:
    """Loss and gradient of the rows ``problem.x`` (R, C) with class indices ``problem.target``."""
    x, y, n = problem.x, problem.target, problem.opts.n_classes
    top = jnp.max(x, axis=-1, keepdims=True)
    # rows holding +inf (no NaN): the reference's limit, 1/k on the k infinite entries and 0
    # elsewhere, is the softmax of 0 there and -inf elsewhere
    x = jnp.where(top == jnp.inf, jnp.where(x == jnp.inf, jnp.zeros_like(x), jnp.full_like(x, -jnp.inf)), x)
    top = jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))  # all -inf rows: e = 0
    valid = y != problem.opts.ignore_index
    in_range = (y >= 0) & (y < n)
    col = jnp.where(valid & in_range, y, jnp.zeros_like(y))  # ignored rows: any column will do
    rows = jnp.arange(x.shape[0])
    wy = _row_weights(problem, col, valid, in_range, x.dtype)
    outside = (wy == 0)[:, None]  # rows outside the loss: gradient 0, even at NaN logits
    # e without its target entry: the one (R, C) temporary, reduced and scaled in place
    if n <= SELECT_MAX:  # short rows: a select in the exp pass is cheaper than a scatter per row
        drop = (jnp.arange(n, dtype=col.dtype) == col[:, None]) | outside
        e = jnp.where(drop, jnp.zeros_like(x), jnp.exp(x - top))
    else:
        e = jnp.where(outside, jnp.zeros_like(x), jnp.exp(x - top))
        e = _put(e, rows, col, jnp.zeros(col.shape, x.dtype))
    s_y = jnp.take_along_axis(x, col[:, None], axis=-1)[:, 0] - top[:, 0]
    others = jnp.sum(e, axis=-1)
    total = others + jnp.exp(s_y)
    row_loss = jnp.where(s_y == 0, jnp.log1p(others), jnp.log(total) - s_y)
    row_loss = jnp.where(s_y == -jnp.inf, jnp.full_like(row_loss, jnp.inf), row_loss)  # also all -inf rows
    loss, scale = _reduce(problem, wy, row_loss)
    if not want_grad:
        return loss, None
    safe = jnp.where(total == 0, jnp.ones_like(total), total)  # all -inf rows: no direction
    factor = jnp.where(outside[:, 0], jnp.zeros_like(total), scale / safe)  # e is 0 there; NaN / NaN is not
    return loss, _put(e * factor[:, None], rows, col, -others * factor)


def _put(a: Any, rows: Any, col: Any, values: Any) -> Any:
    """``a`` with ``a[i, col[i]] = values[i]``: one entry per row, written in place by XLA."""
    return a.at[rows, col].set(values, indices_are_sorted=True, unique_indices=True)


def _row_weights(problem: _Problem, col: Any, valid: Any, in_range: Any, dtype: Any) -> Any:
    """``w_y`` of each row: 0 where ignored, NaN where the class index is out of range."""
    w = problem.opts.weight
    wy = jnp.ones(col.shape, dtype) if w is None else jnp.astype(w[col], dtype)
    wy = jnp.where(valid, wy, jnp.zeros_like(wy))
    return jnp.where(valid & ~in_range, jnp.full_like(wy, jnp.nan), wy)


def _reduce(problem: _Problem, wy: Any, row_loss: Any) -> tuple[Any, Any]:
    """The reduced loss in the logits' dtype and each row's gradient scale (``w_y / D`` for the mean)."""
    rows = jnp.where(wy == 0, jnp.zeros_like(row_loss), wy * row_loss)  # ignored: 0, even at inf
    dtype, compute = problem.x.dtype, problem.compute_dtype
    reduction = problem.opts.reduction
    if reduction == "none":
        return rows, wy
    total = jnp.sum(jnp.astype(rows, compute))
    if reduction == "sum":
        return jnp.astype(total, dtype), wy
    # a row with a bad class index counts as the reference counts it: 1 without class weights
    # (the other rows' gradients stay finite), NaN with them (its weight is unknown)
    counted = wy if problem.opts.weight is not None else jnp.where(jnp.isnan(wy), jnp.ones_like(wy), wy)
    denom = jnp.sum(jnp.astype(counted, compute))
    safe = jnp.where(denom == 0, jnp.ones_like(denom), denom)
    loss = jnp.where(denom == 0, jnp.full_like(denom, jnp.nan), total / safe)  # all ignored: NaN
    scale = jnp.where(denom == 0, jnp.zeros_like(wy), wy / jnp.astype(safe, wy.dtype))
    return jnp.astype(loss, dtype), scale
