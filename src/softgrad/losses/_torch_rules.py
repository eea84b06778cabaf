r"""Cross-entropy as PyTorch operators with the closed-form gradient and Hessian-vector product.

Three ``torch.library.custom_op``\ s, each one node:

* ``softgrad::cross_entropy``: the loss (softgrad's :func:`~softgrad.losses.cross_entropy`);
  it saves only references to its inputs, no ``(N, C)`` buffer;
* ``softgrad::cross_entropy_backward``: ``g * dl/do``, computed by softgrad's gradient kernel
  from the logits (the confident entry in its top-1 form, ``-3 e^{-40}/(1 + 3 e^{-40})`` for
  float32 logits ``[40, 0, 0, 0]``), written straight into the result's memory;
* ``softgrad::cross_entropy_hvp``: ``H v`` (:func:`~softgrad.losses.cross_entropy_hvp`), the
  derivative of the backward, so the loss is twice differentiable.

PyTorch's conventions: the class dimension is 1 (0 for an unbatched ``(C,)`` input); targets are
class indices or probabilities. The target and the class weights are not differentiated.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core._computes import get
from ..core._torch_rules import as_tensor, loop_vmap, numpy_view, on_numpy


def class_dim(x: Tensor) -> int:
    """PyTorch's class dimension: 1 for (N, C, d1, ...), 0 for an unbatched (C,) input."""
    return 1 if x.ndim >= 2 else 0


def _options(weight: Tensor | None, ignore_index: int, reduction: str, smoothing: float) -> dict:
    return dict(
        weight=None if weight is None else _operand(weight),
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=smoothing,
    )


def _operand(t: Tensor) -> Any:
    """A tensor as softgrad computes on it: a NumPy view on the CPU, the tensor elsewhere."""
    t = t.detach()
    if t.device.type == "cpu" and t.dtype != torch.bfloat16:
        return numpy_view(t)
    return t


def _batch_shape(x: Tensor) -> list[int]:
    shape = list(x.shape)
    del shape[class_dim(x)]
    return shape


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
    logits = _operand(x) if on_numpy(x) else x.detach()
    tgt = _operand(target) if on_numpy(x) else target.detach()
    if not on_numpy(x) and weight is not None:
        opts["weight"] = weight.detach()
    return as_tensor(get("cross_entropy")(logits, tgt, class_dim(x), **opts), x).clone()


@cross_entropy_op.register_fake
def _(x: Tensor, target: Tensor, weight: Tensor | None, ignore: int, reduction: str, eps: float) -> Tensor:
    return x.new_empty(_batch_shape(x) if reduction == "none" else [])


def _save_inputs(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, target, weight, *ctx.options = inputs
    ctx.save_for_backward(x, target, weight)


def _loss_backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None, None, None]:
    x, target, weight = ctx.saved_tensors
    return cross_entropy_backward(g, x, target, weight, *ctx.options), None, None, None, None, None


cross_entropy_op.register_vmap(loop_vmap(cross_entropy_op))


class CrossEntropy(torch.autograd.Function):
    """One autograd node: the loss forward, the gradient kernel backward; torch.func-ready."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, target: Tensor, weight: Tensor | None, *options: Any) -> Tensor:
        return torch.ops.softgrad.cross_entropy(x, target, weight, *options)  # type: ignore[no-any-return]

    setup_context = staticmethod(_save_inputs)
    backward = staticmethod(_loss_backward)


cross_entropy = CrossEntropy.apply


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
    if on_numpy(x):
        grad = torch.empty(x.shape, dtype=x.dtype)
        get("cross_entropy_grad")(_operand(x), _operand(target), class_dim(x), **opts, out=grad.numpy())
    else:
        if weight is not None:
            opts["weight"] = weight.detach()
        grad = get("cross_entropy_grad")(x.detach(), target.detach(), class_dim(x), **opts).clone()
    return _scale(grad, g.detach(), x, reduction)


@cross_entropy_backward_op.register_fake
def _(g: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _save_backward_inputs(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    g, x, target, weight, *ctx.options = inputs
    ctx.save_for_backward(g, x, target, weight)


def _backward_backward(ctx: Any, v: Tensor) -> tuple[Any, ...]:
    """Derivatives of ``<v, g * dl/do>``: ``<v, dl/do>`` for ``g``, ``H (g v)`` for the logits."""
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
    return (dg, cross_entropy_hvp(gv, x, target, weight, *ctx.options), None, None, None, None, None)


cross_entropy_backward_op.register_vmap(loop_vmap(cross_entropy_backward_op))


class CrossEntropyBackward(torch.autograd.Function):
    """``g * dl/do`` as one node whose own backward is the HVP: the loss is twice differentiable."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
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

    setup_context = staticmethod(_save_backward_inputs)
    backward = staticmethod(_backward_backward)


cross_entropy_backward = CrossEntropyBackward.apply


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
    rule = "sum" if reduction == "none" else reduction
    opts = _options(weight, ignore_index, rule, label_smoothing)
    if on_numpy(x, v):
        hv = get("cross_entropy_hvp")(_operand(x), _operand(target), _operand(v), class_dim(x), **opts)
        return as_tensor(hv, x).clone()
    if weight is not None:
        opts["weight"] = weight.detach()
    return get("cross_entropy_hvp")(x.detach(), target.detach(), v.detach(), class_dim(x), **opts).clone()


@cross_entropy_hvp.register_fake
def _(v: Tensor, x: Tensor, target: Tensor, weight: Tensor | None, *options: Any) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


cross_entropy_hvp.register_vmap(loop_vmap(cross_entropy_hvp))


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
    if not on_numpy(x, W):
        opts["weight"] = None if weight is None else weight.detach()
    operand = _operand if on_numpy(x, W) else (lambda t: t.detach())
    result = get("linear_cross_entropy")(
        operand(x), operand(W), operand(target), None if b is None else operand(b), **opts,
        sample_weight=None if sample_weight is None else operand(sample_weight), return_grad=want_grad,
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


class LinearCrossEntropy(torch.autograd.Function):
    """The loss forward; for ``"mean"``/``"sum"`` the gradients come from the same chunked pass
    and the backward only scales them, for ``"none"`` the backward runs the pass again with the
    cotangent as row weights. Once differentiable (no HVP)."""

    @staticmethod
    def forward(
        x: Tensor, W: Tensor, target: Tensor, b: Tensor | None, weight: Tensor | None, *options: Any
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return torch.ops.softgrad.linear_cross_entropy(  # type: ignore[no-any-return]
            x, W, target, b, weight, *options
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, W, target, b, weight, *ctx.options = inputs
        ctx.has_bias = b is not None
        ctx.mark_non_differentiable(*output[1:])
        if ctx.options[-1]:  # the gradients were computed in the forward
            ctx.save_for_backward(*output[1:])
        else:
            ctx.save_for_backward(x, W, target, b, weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: Tensor, *unused: Any) -> tuple[Any, ...]:
        ignore_index, _, label_smoothing, _, want_grad = ctx.options
        if want_grad:
            dx, dW, db = (d * g for d in ctx.saved_tensors)
        else:  # "none": the cotangent weighs the rows
            x, W, target, b, weight = ctx.saved_tensors
            _, dx, dW, db = torch.ops.softgrad.linear_cross_entropy(
                x, W, target, b, weight, ignore_index, "sum", label_smoothing, g.detach(), True
            )
        return dx, dW, None, db if ctx.has_bias else None, None, None, None, None, None, None


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
    outputs = LinearCrossEntropy.apply(
        x, W, target, b, weight, ignore_index, reduction, label_smoothing, None, in_forward
    )
    return outputs[0]  # type: ignore[no-any-return]
