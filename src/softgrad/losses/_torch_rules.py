r"""Cross-entropy as PyTorch operators with the closed-form gradient and Hessian-vector product.

Five ``torch.library.custom_op``\ s:

* ``softgrad::cross_entropy``: the loss (softgrad's :func:`~softgrad.losses.cross_entropy`);
  it saves only references to its inputs, no ``(N, C)`` buffer;
* ``softgrad::cross_entropy_backward``: ``g * dl/do``, computed by softgrad's gradient kernel
  from the logits (the confident entry in its top-1 form, ``-3 e^{-40}/(1 + 3 e^{-40})`` for
  float32 logits ``[40, 0, 0, 0]``), written straight into the result's memory;
* ``softgrad::cross_entropy_hvp``: ``H v`` (:func:`~softgrad.losses.cross_entropy_hvp`), the
  derivative of the backward, so the loss is twice differentiable;
* ``softgrad::linear_cross_entropy`` and ``softgrad::linear_cross_entropy_hvp``: the fused
  linear layer + loss and its second derivative, chunk by chunk (the ``(N, C)`` logits never
  exist).

PyTorch's conventions: the class dimension is 1 (0 for an unbatched ``(C,)`` input); targets are
class indices or probabilities. With :math:`\ell_i = \sum_c w_c q'_{ic} (-\log p_{ic})`,
:math:`q' = (1-\varepsilon) q + \varepsilon / C` (``q`` one-hot for index targets, zero on
ignored rows) and the row scale :math:`s_i` of the reduction (``g``, ``g / D``, ``g_i``), the
target and the class weights get their gradients in closed form:

.. math:: \frac{\partial L}{\partial q_{ic}} = s_i (1-\varepsilon) w_c (-\log p_{ic}), \qquad
          \frac{\partial L}{\partial w_c} = \sum_i s_i q'_{ic} (-\log p_{ic})
          - [\text{mean}]\, s\, L\, n_c

(:math:`n_c` the non-ignored rows of class ``c``: the mean's denominator
:math:`D = \sum_i w_{y_i}` depends on the weights).

Under ``torch.func.vmap`` the cross-entropy ops fold the vmapped dimension into the row
dimension (one call for the whole batch); the ``"mean"``/``"sum"`` reductions are computed per
batch member from the per-row losses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core import _torch_rules as _core
from ..core._computes import get
from ..core._torch_rules import as_tensor, autograd_node, batched, loop_vmap, numpy_view, on_numpy

_HVP_CHUNK_SHARE = 4  # the HVP holds four (chunk, C) arrays where the forward holds one


def class_dim(x: Tensor) -> int:
    """PyTorch's class dimension: 1 for (N, C, d1, ...), 0 for an unbatched (C,) input."""
    return 1 if x.ndim >= 2 else 0


def _compute(name: str, kernels: bool, *args: Any, **kwargs: Any) -> Any:
    """softgrad's computation ``name`` on an op's arguments: its tensors as NumPy views where
    ``kernels`` (CPU float32/float64 logits), detached tensors elsewhere; the rest as it is."""

    def operand(a: Any) -> Any:
        if not isinstance(a, Tensor):
            return a
        a = a.detach()
        return numpy_view(a) if kernels and a.device.type == "cpu" and a.dtype != torch.bfloat16 else a

    return get(name)(*map(operand, args), **{key: operand(a) for key, a in kwargs.items()})


def _options(weight: Tensor | None, ignore_index: int, reduction: str, smoothing: float) -> dict:
    return dict(weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing)


def _batch_shape(x: Tensor) -> list[int]:
    shape = list(x.shape)
    del shape[class_dim(x)]
    return shape


# ----------------------------------------------------------------------------------------------
# helpers of the batching rules and of the target/weight derivatives


def _rows(t: Tensor, sample_ndim: int) -> Tensor:
    """A batched ``(B, ...)`` operand as one call's operand: ``(B, N, ...)`` -> ``(B N, ...)``."""
    return t.flatten(0, 1) if sample_ndim >= 2 else t


def _denominators(
    target: Tensor, weight: Tensor | None, ignore_index: int, n_classes: int, dtype: Any
) -> Tensor:
    """The ``"mean"`` denominator of each member of a batched ``(B, ...)`` target."""
    size = target.shape[0]
    if target.is_floating_point():  # probability targets: the number of rows
        rows = target[0].numel() // max(n_classes, 1)
        return torch.full((size,), rows, dtype=dtype, device=target.device)
    kept = (target != ignore_index).to(dtype)
    if weight is not None:
        kept = kept * weight.to(dtype)[target.clamp(0, n_classes - 1)]
    return kept.reshape(size, -1).sum(1)


def _safe_inverse(d: Tensor) -> Tensor:
    """``1 / d``, 0 where ``d`` is 0 (all rows ignored: no row moves the mean)."""
    safe = torch.where(d == 0, torch.ones_like(d), d)
    return torch.where(d == 0, torch.zeros_like(d), 1 / safe)


def _member_view(t: Tensor, ndim: int) -> Tensor:
    """A per-member ``(B,)`` tensor shaped to broadcast against ``(B, ...)`` of ``ndim`` dims."""
    return t.reshape(t.shape[0], *([1] * (ndim - 1)))


def _sum_but(t: Tensor, dim: int) -> Tensor:
    dims = [d for d in range(t.ndim) if d != dim]
    return t.sum(dims) if dims else t


def _class_view(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` ``(C,)`` shaped to broadcast along ``x``'s class dimension."""
    return weight.reshape([-1 if d == class_dim(x) else 1 for d in range(x.ndim)])


def _kept_one_hot(x: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """One-hot index targets (zero rows where ignored) on ``x``'s class dim, and the kept mask."""
    dim, n_classes = class_dim(x), x.shape[class_dim(x)]
    kept = (target != ignore_index).unsqueeze(dim).to(x.dtype)
    one_hot = torch.nn.functional.one_hot(target.clamp(0, n_classes - 1), n_classes)
    return one_hot.movedim(-1, dim).to(x.dtype) * kept, kept


def _smoothed_target(
    x: Tensor, target: Tensor, ignore_index: int, eps: float
) -> tuple[Tensor, Tensor | None]:
    """``q'`` (dense, ``x``'s shape) and, for index targets, the kept one-hot targets."""
    n_classes = x.shape[class_dim(x)]
    if target.is_floating_point():
        return target * (1 - eps) + eps / n_classes, None
    one_hot, kept = _kept_one_hot(x, target, ignore_index)
    return one_hot * (1 - eps) + kept * (eps / n_classes), one_hot


def _row_scale(
    g: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, options: tuple
) -> tuple[Tensor, Tensor | None]:
    """The cotangent as a factor of each row (broadcasting against ``x``), and the mean's
    denominator when it depends on the class weights (index targets, ``"mean"``)."""
    ignore_index, reduction, _ = options
    dim = class_dim(x)
    if reduction == "none":
        return g.unsqueeze(dim), None
    if reduction == "sum":
        return g, None
    if target.is_floating_point():
        return g / max(x.numel() // max(x.shape[dim], 1), 1), None
    kept = (target != ignore_index).to(x.dtype)
    if weight is not None:
        kept = kept * weight[target.clamp(0, x.shape[dim] - 1)]
    denom = kept.sum()
    safe = torch.where(denom == 0, torch.ones_like(denom), denom)
    return torch.where(denom == 0, torch.zeros_like(denom), g / safe), denom


def _target_and_weight_grads(
    g: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, options: tuple, direction: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    r"""Derivatives of ``g * <direction-weighted loss>`` with respect to the target and the weights.

    With ``direction = -log p`` these are the loss's own gradients; with ``direction = p.v - v``
    they are the mixed second derivatives of ``<v, dL/dx>`` (the loss is linear in ``q'`` and
    ``w`` given its row factors, so both share one formula).
    """
    eps = options[2]
    scale, denom = _row_scale(g, x, target, weight, options)
    wv = 1.0 if weight is None else _class_view(weight, x)
    d_target = scale * (1 - eps) * wv * direction if target.is_floating_point() else None
    if weight is None:
        return d_target, None
    q, one_hot = _smoothed_target(x, target, options[0], eps)
    d_weight = _sum_but(scale * q * direction, class_dim(x))
    if denom is not None and one_hot is not None:  # index "mean": D = sum_i w_{y_i} moves too
        total = (wv * q * direction).sum()  # the mean times D
        d_weight = d_weight - scale * _sum_but(one_hot, class_dim(x)) * total * _safe_inverse(denom)
    return d_target, d_weight


# ----------------------------------------------------------------------------------------------
# the loss


@torch.library.custom_op("softgrad::cross_entropy", mutates_args=())
def cross_entropy_op(
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    opts = _options(weight, ignore_index, reduction, label_smoothing)
    return as_tensor(_compute("cross_entropy", on_numpy(x), x, target, class_dim(x), **opts), x).clone()


@cross_entropy_op.register_fake
def _(x: Tensor, target: Tensor, weight: Tensor | None, ignore: int, reduction: str, eps: float) -> Tensor:
    return x.new_empty(_batch_shape(x) if reduction == "none" else [])


@cross_entropy_op.register_vmap
def _(info: Any, in_dims: tuple, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any) -> Any:
    """One call on all members' rows (``"none"``), then each member's sum or mean."""
    if in_dims[2] is not None:  # per-member class weights: no shared call
        return loop_vmap(cross_entropy_op)(info, in_dims, x, target, weight, *options)
    ignore_index, reduction, eps = options
    size = info.batch_size
    xb, tb = batched(x, in_dims[0], size), batched(target, in_dims[1], size)
    sample_ndim = xb.ndim - 1
    rows = cross_entropy_op(_rows(xb, sample_ndim), _rows(tb, sample_ndim), weight, ignore_index, "none", eps)
    per_member = rows.reshape(size, -1)
    if reduction == "none":
        return rows.reshape(size, *_batch_shape(xb[0])), 0
    total = per_member.sum(1)
    if reduction == "sum":
        return total, 0
    n_classes = xb.shape[1 + class_dim(xb[0])]
    return total / _denominators(tb, weight, ignore_index, n_classes, total.dtype), 0


def _save_inputs(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, target, weight, *options = inputs
    ctx.options = tuple(options)
    ctx.save_for_backward(x, target, weight)


def _loss_backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
    x, target, weight = ctx.saved_tensors
    dx = cross_entropy_backward(g, x, target, weight, *ctx.options) if ctx.needs_input_grad[0] else None
    d_target = d_weight = None
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        neg_log_p = -_core.log_softmax(x, class_dim(x))
        d_target, d_weight = _target_and_weight_grads(g, x, target, weight, ctx.options, neg_log_p)
    return dx, d_target, d_weight, None, None, None


def _call_loss_op(
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    return torch.ops.softgrad.cross_entropy(  # type: ignore[no-any-return]
        x, target, weight, ignore_index, reduction, label_smoothing
    )


# One autograd node: the loss forward, the gradient kernel backward; torch.func-ready.
cross_entropy = autograd_node("CrossEntropy", _call_loss_op, _save_inputs, _loss_backward).apply


# ----------------------------------------------------------------------------------------------
# its gradient


def _scale(grad: Tensor, g: Tensor, x: Tensor, reduction: str) -> Tensor:
    """``g * grad`` in place: ``g`` is the loss's cotangent (one per row for ``"none"``)."""
    if reduction == "none":
        return grad.mul_(g.unsqueeze(class_dim(x)))
    if g.device.type == "cpu" and float(g) == 1.0:  # the usual loss.backward(): nothing to do
        return grad
    return grad.mul_(g)


@torch.library.custom_op("softgrad::cross_entropy_backward", mutates_args=())
def cross_entropy_backward_op(
    g: Tensor,
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    opts = _options(weight, ignore_index, reduction, label_smoothing)
    if on_numpy(x):  # straight into the result's memory
        grad = torch.empty(x.shape, dtype=x.dtype)
        _compute("cross_entropy_grad", True, x, target, class_dim(x), **opts, out=grad.numpy())
    else:
        grad = _compute("cross_entropy_grad", False, x, target, class_dim(x), **opts).clone()
    return _scale(grad, g.detach(), x, reduction)


@cross_entropy_backward_op.register_fake
def _(g: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _per_row_cotangent(g: Tensor, xb: Tensor, tb: Tensor, weight: Tensor | None, options: tuple) -> Tensor:
    """A batched loss cotangent ``(B, ...)`` as one factor per row of all members (``"none"``)."""
    ignore_index, reduction, _ = options
    sample_ndim = xb.ndim - 1
    if reduction == "none":
        return _rows(g, sample_ndim)
    if reduction == "mean":
        n_classes = xb.shape[1 + class_dim(xb[0])]
        g = g * _safe_inverse(_denominators(tb, weight, ignore_index, n_classes, xb.dtype))
    sample_rows = _batch_shape(xb[0])
    return _rows(_member_view(g, len(sample_rows) + 1).expand(g.shape[0], *sample_rows), sample_ndim)


@cross_entropy_backward_op.register_vmap
def _(
    info: Any, in_dims: tuple, g: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any
) -> Any:
    """All members' rows in one call with a per-row cotangent (the mean's ``1/D`` per member)."""
    if in_dims[3] is not None:
        return loop_vmap(cross_entropy_backward_op)(info, in_dims, g, x, target, weight, *options)
    size = info.batch_size
    xb, tb, gb = batched(x, in_dims[1], size), batched(target, in_dims[2], size), batched(g, in_dims[0], size)
    sample_ndim = xb.ndim - 1
    rows_g = _per_row_cotangent(gb, xb, tb, weight, tuple(options))
    ignore_index, _, eps = options
    grad = cross_entropy_backward_op(
        rows_g.contiguous(), _rows(xb, sample_ndim), _rows(tb, sample_ndim), weight, ignore_index, "none", eps
    )
    return grad.reshape(xb.shape), 0


def _save_backward_inputs(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    g, x, target, weight, *options = inputs
    ctx.options = tuple(options)
    ctx.save_for_backward(g, x, target, weight)


def _backward_backward(ctx: Any, v: Tensor) -> tuple[Any, ...]:
    """Derivatives of ``<v, g * dl/do>``: ``<v, dl/do>`` for ``g``, ``H (g v)`` for the logits,
    and the mixed terms for a probability target and the class weights."""
    g, x, target, weight = ctx.saved_tensors
    reduction = ctx.options[1]
    one = torch.ones_like(g)
    unit = cross_entropy_backward(one, x, target, weight, *ctx.options)
    if reduction == "none":
        dg = (v * unit).sum(class_dim(x))
        gv = v * g.unsqueeze(class_dim(x))
    else:
        dg = (v * unit).sum()
        gv = v * g
    hv = cross_entropy_hvp(gv, x, target, weight, *ctx.options)
    d_target = d_weight = None
    if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
        p = _core.softmax(x, class_dim(x))
        direction = (p * v).sum(class_dim(x), keepdim=True) - v
        d_target, d_weight = _target_and_weight_grads(g, x, target, weight, ctx.options, direction)
    return (dg, hv, d_target, d_weight, None, None, None)


def _call_backward_op(
    g: Tensor,
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    return torch.ops.softgrad.cross_entropy_backward(  # type: ignore[no-any-return]
        g, x, target, weight, ignore_index, reduction, label_smoothing
    )


# ``g * dl/do`` as one node whose own backward is the HVP: the loss is twice differentiable.
cross_entropy_backward = autograd_node(
    "CrossEntropyBackward", _call_backward_op, _save_backward_inputs, _backward_backward
).apply


# ----------------------------------------------------------------------------------------------
# its Hessian-vector product


@torch.library.custom_op("softgrad::cross_entropy_hvp", mutates_args=())
def cross_entropy_hvp(
    v: Tensor,
    x: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    """``H v`` of the loss; for ``"none"`` that of the sum of the rows (``v`` already scaled)."""
    opts = _options(weight, ignore_index, "sum" if reduction == "none" else reduction, label_smoothing)
    hv = _compute("cross_entropy_hvp", on_numpy(x, v), x, target, v, class_dim(x), **opts)
    return as_tensor(hv, x).clone()


@cross_entropy_hvp.register_fake
def _(v: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@cross_entropy_hvp.register_vmap
def _(
    info: Any, in_dims: tuple, v: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any
) -> Any:
    """The HVP is row-wise: all members' rows in one call, ``v`` scaled by each member's ``1/D``."""
    if in_dims[3] is not None:
        return loop_vmap(cross_entropy_hvp)(info, in_dims, v, x, target, weight, *options)
    ignore_index, reduction, eps = options
    size = info.batch_size
    xb, tb, vb = batched(x, in_dims[1], size), batched(target, in_dims[2], size), batched(v, in_dims[0], size)
    if reduction == "mean":
        n_classes = xb.shape[1 + class_dim(xb[0])]
        inverse = _safe_inverse(_denominators(tb, weight, ignore_index, n_classes, xb.dtype))
        vb = vb * _member_view(inverse, vb.ndim)
    sample_ndim = xb.ndim - 1
    hv = cross_entropy_hvp(
        _rows(vb, sample_ndim).contiguous(), _rows(xb, sample_ndim), _rows(tb, sample_ndim), weight,
        ignore_index, "sum", eps,
    )
    return hv.reshape(xb.shape), 0


# ----------------------------------------------------------------------------------------------
# linear layer + cross-entropy, chunk by chunk (the (N, C) logits never exist)


@torch.library.custom_op("softgrad::linear_cross_entropy", mutates_args=())
def linear_cross_entropy_op(
    x: Tensor,
    W: Tensor,
    target: Tensor,
    b: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    sample_weight: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loss and, with ``want_grad``, ``(dx, dW, db)`` from one chunked pass (else empty)."""
    opts = _options(weight, ignore_index, reduction, label_smoothing)
    result = _compute(
        "linear_cross_entropy", on_numpy(x, W), x, W, target, b, **opts,
        sample_weight=sample_weight, return_grad=want_grad,
    )
    if not want_grad:
        empty = x.new_empty(0)
        return as_tensor(result, x).clone(), empty, empty.clone(), empty.clone()
    loss, grads = result
    dx, dW, db = (as_tensor(g, x) for g in grads)
    return as_tensor(loss, x).clone(), dx, dW, db


@linear_cross_entropy_op.register_fake
def _(x: Tensor, W: Tensor, target: Tensor, b: Tensor | None, *rest: Any) -> tuple[Tensor, ...]:
    reduction, want_grad = rest[2], rest[-1]
    loss = x.new_empty(list(x.shape[:-1]) if reduction == "none" else [])
    if not want_grad:
        return loss, x.new_empty(0), x.new_empty(0), x.new_empty(0)
    return loss, torch.empty_like(x), torch.empty_like(W), W.new_empty(W.shape[0])


@linear_cross_entropy_op.register_vmap
def _(info: Any, in_dims: tuple, x: Tensor, W: Tensor, target: Tensor, b: Tensor | None, *rest: Any) -> Any:
    """The loss alone: all members' rows in one chunked call, reduced per member. With the
    gradients, or a per-member ``W``, member by member (each needs its own ``dW``)."""
    weight, ignore_index, reduction, eps, sample_weight, want_grad = rest
    shared = all(in_dims[i] is None for i in (1, 3, 4, 8))
    if want_grad or not shared or (sample_weight is not None and reduction == "mean"):
        return loop_vmap(linear_cross_entropy_op)(info, in_dims, x, W, target, b, *rest)
    size = info.batch_size
    xb, tb = batched(x, in_dims[0], size), batched(target, in_dims[2], size)
    sample_ndim = xb.ndim - 1
    rows = linear_cross_entropy_op(
        _rows(xb, sample_ndim), W, _rows(tb, sample_ndim), b, weight,
        ignore_index, "none", eps, sample_weight, False,
    )[0]
    if reduction == "none":
        loss = rows.reshape(size, *xb.shape[1:-1])
    elif reduction == "sum":
        loss = rows.reshape(size, -1).sum(1)
    else:
        loss = rows.reshape(size, -1).sum(1) / _denominators(tb, weight, ignore_index, W.shape[0], rows.dtype)
    empty = x.new_empty(size, 0)
    return (loss, empty, empty.clone(), empty.clone()), (0, 0, 0, 0)


def _call_linear_op(
    x: Tensor,
    W: Tensor,
    target: Tensor,
    b: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    sample_weight: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return torch.ops.softgrad.linear_cross_entropy(  # type: ignore[no-any-return]
        x, W, target, b, weight, ignore_index, reduction, label_smoothing, sample_weight, want_grad
    )


def _save_linear(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, W, target, b, weight, *options = inputs
    ctx.options = tuple(options)
    ctx.has_bias = b is not None
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(x, W, target, b, weight, *output[1:])


def _linear_backward(ctx: Any, g: Tensor, *unused: Any) -> tuple[Any, ...]:
    """For ``"mean"``/``"sum"`` the forward's gradients scaled, for ``"none"`` the chunked pass
    again with the cotangent as row weights; one node whose backward is the chunked HVP."""
    ignore_index, reduction, label_smoothing, _, in_forward = ctx.options
    x, W, target, b, weight, dx, dW, db = ctx.saved_tensors
    dx, dW, db = LinearCrossEntropyBackward.apply(
        g, x, W, target, b, weight, ignore_index, reduction, label_smoothing, dx, dW, db, in_forward
    )
    return dx, dW, None, db if ctx.has_bias else None, None, None, None, None, None, None


class LinearCrossEntropyBackward(torch.autograd.Function):
    """``(dx, dW, db)`` for the loss cotangent ``g``; its backward is the chunked HVP."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        g: Tensor, x: Tensor, W: Tensor, target: Tensor, b: Tensor | None, weight: Tensor | None,
        ignore_index: int, reduction: str, label_smoothing: float,
        dx: Tensor, dW: Tensor, db: Tensor, in_forward: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        if in_forward:  # the forward pass computed the gradients for g = 1
            return dx * g, dW * g, db * g
        if reduction == "none":  # the cotangent weighs the rows
            _, dx, dW, db = torch.ops.softgrad.linear_cross_entropy(
                x, W, target, b, weight, ignore_index, "sum", label_smoothing, g, True
            )
            return dx, dW, db
        _, dx, dW, db = torch.ops.softgrad.linear_cross_entropy(
            x, W, target, b, weight, ignore_index, reduction, label_smoothing, None, True
        )
        return dx * g, dW * g, db * g

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        g, x, W, target, b, weight, *options = inputs
        ctx.options = tuple(options[:3])
        ctx.has_bias = b is not None
        ctx.save_for_backward(g, x, W, target, b, weight)

    @staticmethod
    def backward(ctx: Any, ux: Tensor, uW: Tensor, ub: Tensor) -> tuple[Any, ...]:
        g, x, W, target, b, weight = ctx.saved_tensors
        dg, dx, dW, db = torch.ops.softgrad.linear_cross_entropy_hvp(
            g, x, W, target, b, weight, *ctx.options, ux, uW, ub
        )
        return (dg, dx, dW, None, db if ctx.has_bias else None) + (None,) * 8


# The loss forward (with the gradients when wanted); the backward is itself a node
# (LinearCrossEntropyBackward) whose backward is the chunked HVP: twice differentiable.
_linear_node = autograd_node("LinearCrossEntropy", _call_linear_op, _save_linear, _linear_backward).apply


@torch.library.custom_op("softgrad::linear_cross_entropy_hvp", mutates_args=())
def linear_cross_entropy_hvp_op(
    g: Tensor,
    x: Tensor,
    W: Tensor,
    target: Tensor,
    b: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    ux: Tensor,
    uW: Tensor,
    ub: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Derivatives of :math:`S = \langle u_x, dx\rangle + \langle u_W, dW\rangle + \langle u_b, db\rangle`.

    With :math:`\bar Z = G(Z)` the logits' gradient (``g`` included), :math:`S = \langle \bar Z, V\rangle`
    for the logits' tangent :math:`V = u_x W^\top + x u_W^\top + u_b`, so

    .. math:: \partial_x S = R W + \bar Z u_W, \quad \partial_W S = R^\top x + \bar Z^\top u_x, \quad
              \partial_b S = \textstyle\sum_i R_i, \quad \partial_g S = \langle G(Z)/g, V\rangle

    with :math:`R = H V` the loss's HVP in the logits. Chunk by chunk: ``Z``, ``V``, ``G``, ``R``
    exist for one chunk of rows at a time.
    """
    single = x.ndim == 1
    if single:
        x, ux, target = x[None], ux[None], target[None]
    n_rows, n_classes = x.shape[0], W.shape[0]
    options = (ignore_index, reduction, label_smoothing)
    row_g, inverse = _linear_row_cotangent(g, x, target, weight, options, n_classes)
    chunk = _hvp_chunk(n_classes, x.element_size())
    row_options = (ignore_index, "none", label_smoothing)  # the row factors carry the reduction
    dx, dW, db = torch.empty_like(x), torch.zeros_like(W), W.new_zeros(n_classes)
    dg_rows = x.new_empty(n_rows)
    for start in range(0, n_rows, chunk):
        rows = slice(start, start + chunk)
        xs, us, ys, gs = x[rows], ux[rows], target[rows], row_g[rows]
        z = xs @ W.T if b is None else torch.addmm(b, xs, W.T)
        tangent = torch.addmm(ub, us, W.T).addmm_(xs, uW.T)
        unit = cross_entropy_backward_op(torch.ones_like(gs), z, ys, weight, *row_options)
        dg_rows[rows] = (unit * tangent).sum(1)
        hv = cross_entropy_hvp(tangent.mul_(gs[:, None]), z, ys, weight, *row_options)
        grad_z = unit.mul_(gs[:, None])
        torch.mm(hv, W, out=dx[rows]).addmm_(grad_z, uW)
        dW.addmm_(hv.T, xs).addmm_(grad_z.T, us)
        db += hv.sum(0)
    dg = dg_rows.reshape(g.shape) if reduction == "none" else dg_rows.sum() * inverse
    return dg, dx[0] if single else dx, dW, db


def _hvp_chunk(n_classes: int, itemsize: int) -> int:
    """Rows per chunk: the forward's rule (through the table: no import cycle), shared by four."""
    return max(1, get("linear_chunk_size")(None, n_classes, itemsize) // _HVP_CHUNK_SHARE)


def _linear_row_cotangent(
    g: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, options: tuple, n_classes: int
) -> tuple[Tensor, Tensor]:
    """The loss cotangent as one factor per row (the mean's ``1/D`` included), and that ``1/D``."""
    ignore_index, reduction, _ = options
    if reduction == "none":
        return g.reshape(-1), g.new_ones(())
    inverse = g.new_ones(())
    if reduction == "mean":
        inverse = _safe_inverse(_denominators(target[None], weight, ignore_index, n_classes, x.dtype))[0]
    return (g * inverse).expand(x.shape[0]), inverse


@linear_cross_entropy_hvp_op.register_fake
def _(g: Tensor, x: Tensor, W: Tensor, target: Tensor, b: Tensor | None, *rest: Any) -> tuple[Tensor, ...]:
    return torch.empty_like(g), torch.empty_like(x), torch.empty_like(W), W.new_empty(W.shape[0])


linear_cross_entropy_hvp_op.register_vmap(loop_vmap(linear_cross_entropy_hvp_op))


def linear_cross_entropy(
    x: Tensor,
    W: Tensor,
    target: Tensor,
    b: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    wants = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, W, b))
    in_forward = wants and reduction != "none"
    outputs = _linear_node(
        x, W, target, b, weight, ignore_index, reduction, label_smoothing, None, in_forward
    )
    return outputs[0]  # type: ignore[no-any-return]
