"""softmax, log_softmax and logsumexp as PyTorch operators with closed-form derivatives.

Each function is one ``torch.library.custom_op`` (one autograd node). Its forward is softgrad's
own computation: CPU float32/float64 tensors go to the NumPy kernels through zero-copy views
(``Tensor.numpy()`` in, ``out=`` into a preallocated tensor), other devices and dtypes through
the array-API reference. Its backward is the closed form, written in differentiable torch
operations on the saved output, so the double backward (HVP), ``torch.func`` and
``torch.compile`` need nothing more:

.. math:: \\bar x = s \\odot (g - \\langle g, s\\rangle), \\quad
          \\bar x = g - e^{\\log s} \\textstyle\\sum g, \\quad
          \\bar x = g\\, e^{x - \\operatorname{lse}(x)}

for softmax, log_softmax and logsumexp. This module imports torch: only the adapters and the
public functions' torch dispatch (:mod:`softgrad.core._autodiff`) import it, lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._computes import get

NUMPY_DTYPES = (torch.float32, torch.float64)


def numpy_view(t: Tensor) -> Any:
    """A NumPy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().contiguous().numpy()


def on_numpy(*tensors: Tensor) -> bool:
    """Whether the NumPy kernels can take these tensors as views: CPU float32/float64."""
    return all(t.device.type == "cpu" and t.dtype in NUMPY_DTYPES for t in tensors)


def as_tensor(result: Any, like: Tensor) -> Tensor:
    """A NumPy result (array or scalar) as a tensor of ``like``'s dtype and device."""
    if isinstance(result, Tensor):
        return result
    import numpy as np

    return torch.from_numpy(np.array(result, dtype=np.dtype(str(like.dtype).split(".")[-1]), copy=None))


def loop_vmap(op: Any) -> Callable[..., tuple[Any, Any]]:
    """A vmap rule that applies ``op`` sample by sample (for ops without a cheaper rule).

    ``op`` returns a tensor or a tuple of tensors; each is stacked along a new dimension 0.
    """

    def rule(info: Any, in_dims: tuple[int | None, ...], *args: Any) -> tuple[Any, Any]:
        outs = []
        for i in range(info.batch_size):
            sample = [a.select(d, i) if d is not None else a for a, d in zip(args, in_dims, strict=True)]
            outs.append(op(*sample))
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outs, strict=True)), (0,) * len(outs[0])
        return torch.stack(outs), 0

    return rule


def batched(t: Tensor, dim: int | None, size: int) -> Tensor:
    """``t`` with its vmapped dimension first (expanded to ``size`` when it has none)."""
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def autograd_node(name: str, forward: Any, setup_context: Any, backward: Any) -> Any:
    """One autograd node: ``forward`` calls a custom op, ``setup_context`` saves what
    ``backward`` (the closed form) needs; ``generate_vmap_rule`` hands ``torch.func`` the op's
    own vmap rule. ``forward`` spells out the op's parameters: torch.compile fails on a node
    with a ``*args`` forward applied inside another node's backward."""
    members = dict(
        generate_vmap_rule=True,
        forward=staticmethod(forward),
        setup_context=staticmethod(setup_context),
        backward=staticmethod(backward),
    )
    return type(name, (torch.autograd.Function,), members)


def _rowwise_vmap(op: Any) -> Callable[..., tuple[Tensor, int]]:
    """vmap of a row-wise op: the batch axis becomes one more batch axis of the input."""

    def rule(info: Any, in_dims: tuple[Any, ...], x: Tensor, dim: int, *rest: Any) -> tuple[Any, int]:
        x = x.movedim(in_dims[0], 0)  # type: ignore[arg-type]
        return op(x, dim % (x.ndim - 1) + 1, *rest), 0

    return rule


def _same_shape(name: str, x: Tensor, dim: int) -> Tensor:
    """softgrad's ``name`` (a result of ``x``'s shape): into a new tensor's memory on the CPU."""
    if on_numpy(x):
        out = torch.empty(x.shape, dtype=x.dtype)
        get(name)(numpy_view(x), dim, out=out.numpy())
        return out
    return get(name)(x.detach(), dim)  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------
# softmax


@torch.library.custom_op("softgrad::softmax", mutates_args=())
def softmax_op(x: Tensor, dim: int) -> Tensor:
    return _same_shape("softmax", x, dim)


@softmax_op.register_fake
def _(x: Tensor, dim: int) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _save_output(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.dim = inputs[1]
    ctx.save_for_backward(output)


def _softmax_backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
    (s,) = ctx.saved_tensors
    return s * (g - (g * s).sum(ctx.dim, keepdim=True)), None


softmax_op.register_vmap(_rowwise_vmap(softmax_op))


def _call_softmax(x: Tensor, dim: int) -> Tensor:
    return torch.ops.softgrad.softmax(x, dim)  # type: ignore[no-any-return]


softmax = autograd_node("Softmax", _call_softmax, _save_output, _softmax_backward).apply


# ----------------------------------------------------------------------------------------------
# log_softmax


@torch.library.custom_op("softgrad::log_softmax", mutates_args=())
def log_softmax_op(x: Tensor, dim: int) -> Tensor:
    return _same_shape("log_softmax", x, dim)


@log_softmax_op.register_fake
def _(x: Tensor, dim: int) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _log_softmax_backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
    (logp,) = ctx.saved_tensors
    return g - logp.exp() * g.sum(ctx.dim, keepdim=True), None


log_softmax_op.register_vmap(_rowwise_vmap(log_softmax_op))


def _call_log_softmax(x: Tensor, dim: int) -> Tensor:
    return torch.ops.softgrad.log_softmax(x, dim)  # type: ignore[no-any-return]


log_softmax = autograd_node("LogSoftmax", _call_log_softmax, _save_output, _log_softmax_backward).apply


# ----------------------------------------------------------------------------------------------
# logsumexp


@torch.library.custom_op("softgrad::logsumexp", mutates_args=())
def logsumexp_op(x: Tensor, dim: int, keepdim: bool) -> Tensor:
    if on_numpy(x):
        shape = list(x.shape)
        if keepdim:
            shape[dim] = 1
        else:
            del shape[dim]
        out = torch.empty(shape, dtype=x.dtype)
        get("logsumexp")(numpy_view(x), dim, keepdims=keepdim, out=out.numpy())
        return out
    return as_tensor(get("logsumexp")(x.detach(), dim, keepdims=keepdim), x)


@logsumexp_op.register_fake
def _(x: Tensor, dim: int, keepdim: bool) -> Tensor:
    shape = list(x.shape)
    if keepdim:
        shape[dim] = 1
    else:
        del shape[dim]
    return x.new_empty(shape)


def _save_input_output(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, ctx.dim, ctx.keepdim = inputs
    ctx.save_for_backward(x, output)


def _logsumexp_backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
    x, lse = ctx.saved_tensors
    if not ctx.keepdim:
        g, lse = g.unsqueeze(ctx.dim), lse.unsqueeze(ctx.dim)
    return g * (x - lse).exp(), None, None


logsumexp_op.register_vmap(_rowwise_vmap(logsumexp_op))


def _call_logsumexp(x: Tensor, dim: int, keepdim: bool) -> Tensor:
    return torch.ops.softgrad.logsumexp(x, dim, keepdim)  # type: ignore[no-any-return]


logsumexp = autograd_node("LogSumExp", _call_logsumexp, _save_input_output, _logsumexp_backward).apply


def positive_dim(dim: int, ndim: int, name: str = "dim") -> int:
    """``dim`` as a non-negative axis of an ``ndim``-dimensional input (0-d counts as 1-d)."""
    n = max(ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int, got {dim!r}")
    if not -n <= dim < n:
        raise ValueError(f"{name}={dim} is out of range for an input of {ndim} dimensions")
    return dim % n
