r"""softgrad inside PyTorch training code: drop-in functions with closed-form derivatives.

``import softgrad.torch as sgt`` and replace ``F.cross_entropy`` with ``sgt.cross_entropy``
(the signatures copy :mod:`torch.nn.functional`). Each function is one autograd node (a
``torch.library.custom_op``) whose forward is softgrad's computation and whose backward is the
closed form:

.. math:: \frac{\partial \ell}{\partial o} = c\,(a\,\operatorname{softmax}(o) - q), \qquad
          H v = c\, a\,(p \odot v - p\, (p \cdot v))

so it keeps softgrad's accuracy (the confident gradient: float32 logits ``[40, 0, 0, 0]``,
target 0 give ``-1.2745e-17``, where autograd through ``softmax`` gives 0), saves no ``(N, C)``
buffer for the backward, is twice differentiable (reverse over reverse), and works under
``torch.compile(fullgraph=True)`` and ``torch.func`` (``grad``, ``vmap``: the cross-entropy ops
fold the vmapped dimension into their rows). CPU float32/float64 tensors reach the NumPy kernels as
zero-copy views; other devices take the array-API path on the tensor itself.

Examples
--------
>>> import torch
>>> import softgrad.torch as sgt
>>> x = torch.tensor([[40.0, 0.0, 0.0, 0.0]], requires_grad=True)
>>> sgt.cross_entropy(x, torch.tensor([0])).backward()
>>> float(x.grad[0, 0])
-1.2745...e-17
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .core import _torch_rules as _core_rules
from .losses import _torch_rules as _loss_rules

__all__ = [
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "cross_entropy",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
]

_REDUCTIONS = ("mean", "sum", "none")


def _floating(x: object, name: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def softmax(input: Tensor, dim: int) -> Tensor:
    r"""``torch.nn.functional.softmax(input, dim)`` computed by softgrad, one autograd node.

    .. math:: S_i = e^{x_i} / \textstyle\sum_j e^{x_j}, \qquad \bar x = S \odot (g - \langle g, S\rangle)

    Examples
    --------
    >>> import torch, softgrad.torch as sgt
    >>> sgt.softmax(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), dim=0)
    tensor([0.0900, 0.2447, 0.6652], dtype=torch.float64)
    """
    x = _floating(input)
    return _core_rules.softmax(x, _core_rules.positive_dim(dim, x.ndim))


def log_softmax(input: Tensor, dim: int) -> Tensor:
    r"""``torch.nn.functional.log_softmax(input, dim)`` computed by softgrad, one autograd node.

    .. math:: \log S_i = x_i - \operatorname{logsumexp}(x), \qquad \bar x = g - S \textstyle\sum g

    Examples
    --------
    >>> import torch, softgrad.torch as sgt
    >>> sgt.log_softmax(torch.tensor([0.0, -1000.0]), dim=0)
    tensor([    0., -1000.])
    """
    x = _floating(input)
    return _core_rules.log_softmax(x, _core_rules.positive_dim(dim, x.ndim))


def logsumexp(input: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    r"""``torch.logsumexp(input, dim, keepdim)`` computed by softgrad, one autograd node.

    .. math:: \operatorname{lse}(x) = m + \log \textstyle\sum_i e^{x_i - m}, \qquad \bar x = g\, S

    Examples
    --------
    >>> import torch, softgrad.torch as sgt
    >>> float(sgt.logsumexp(torch.tensor([0.0, -30.0], dtype=torch.float64), dim=0))
    9.357622968839737e-14
    """
    x = _floating(input)
    return _core_rules.logsumexp(x, _core_rules.positive_dim(dim, x.ndim), bool(keepdim))


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""``torch.nn.functional.cross_entropy`` computed by softgrad, with its closed-form derivatives.

    .. math:: \ell_i = a_i \operatorname{logsumexp}(o_i) - q_i \cdot o_i, \qquad
              \frac{\partial \ell}{\partial o_i} = c_i (a_i \operatorname{softmax}(o_i) - q_i)

    PyTorch's conventions throughout: ``input`` of shape ``(C,)``, ``(N, C)`` or
    ``(N, C, d1, ...)`` (classes on dimension 1); ``target`` class indices (the shape without
    the class dimension) or probabilities (``input``'s shape); ``weight`` of shape ``(C,)``;
    ``"mean"`` divides by the total weight of the non-ignored targets (index targets) or by
    the number of rows (probability targets). Out-of-range class indices raise ``ValueError``
    when the kernel runs (CPU); nothing is checked while tracing, so ``torch.compile`` sees one
    graph. The gradient is computed from the logits in the backward (top-1 form for the
    confident class); only references to the inputs are kept. Probability targets and
    ``weight`` are differentiated too, in closed form (:math:`s_i` the reduction's row factor,
    :math:`q' = (1-\varepsilon) q + \varepsilon/C`, :math:`n_c` the kept rows of class ``c``):

    .. math:: \frac{\partial \ell}{\partial q_{ic}} = -s_i (1-\varepsilon) w_c \log p_{ic}, \qquad
              \frac{\partial \ell}{\partial w_c} = -\textstyle\sum_i s_i q'_{ic} \log p_{ic}
              - [\text{mean, index targets}]\; s\, \ell\, n_c

    Twice differentiable in all three (reverse over reverse: ``torch.autograd.grad`` with
    ``create_graph=True``). Under ``torch.func.vmap`` the batch is folded into the rows: one
    kernel call for all samples.

    Examples
    --------
    >>> import torch, softgrad.torch as sgt
    >>> x = torch.tensor([[2.0, 1.0, 0.1]], dtype=torch.float64, requires_grad=True)
    >>> loss = sgt.cross_entropy(x, torch.tensor([0]))
    >>> loss.backward()
    >>> x.grad
    tensor([[-0.3410,  0.2424,  0.0986]], dtype=torch.float64)
    """
    x = _floating(input)
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if weight is not None:
        _floating(weight, "weight")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return _loss_rules.cross_entropy(
        x, target, weight, int(ignore_index), str(reduction), float(label_smoothing)
    )


def linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    class_weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""``cross_entropy(F.linear(input, weight, bias), target, ...)`` without the ``(N, C)`` logits.

    .. math:: \ell = \operatorname{reduce}_i \ell_i(W x_i + b), \qquad
              \frac{\partial \ell}{\partial W} = \textstyle\sum_i \bar z_i x_i^\top, \quad
              \bar z_i = c_i (a_i \operatorname{softmax}(W x_i + b) - q_i)

    softgrad's :func:`~softgrad.linear_cross_entropy` runs chunk by chunk (one chunk's logits at
    a time) in the forward; for ``"mean"``/``"sum"`` it computes ``dx``, ``dW``, ``db`` in the
    same pass when a gradient is wanted, and the backward only scales them; for ``"none"`` the
    backward runs the chunked pass again, with the cotangent as row weights. ``input`` is
    ``(N, in_features)``, ``weight`` ``(C, in_features)`` as for ``F.linear``; ``class_weight``
    is ``F.cross_entropy``'s ``weight``. Twice differentiable in ``input``, ``weight`` and
    ``bias``: the backward is itself a node whose backward is the chunked Hessian-vector product
    (the logits' tangent ``u_x W^T + x u_W^T + u_b`` and their HVP formed chunk by chunk, so the
    double backward never holds the ``(N, C)`` logits either). ``target`` and ``class_weight``
    are not differentiated (``ValueError`` if they require grad). Under ``torch.func.vmap`` the
    loss alone folds the batch into the rows (one chunked pass); gradients (``vmap(grad(...))``)
    run member by member, since each member needs its own ``dW``.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, softgrad.torch as sgt
    >>> x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    >>> W = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([0, 3, 9, 2, 2, 5])
    >>> loss = sgt.linear_cross_entropy(x, W, y)
    >>> bool(torch.isclose(loss, F.cross_entropy(F.linear(x, W), y)))
    True
    >>> loss.backward()
    >>> W.grad.shape
    torch.Size([10, 4])
    """
    x = _floating(input)
    _floating(weight, "weight")
    if bias is not None:
        _floating(bias, "bias")
    if class_weight is not None:
        _floating(class_weight, "class_weight")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    for name, t in (("target", target), ("class_weight", class_weight)):
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            raise ValueError(
                f"{name} must not require grad: linear_cross_entropy differentiates input, weight and bias"
            )
    return _loss_rules.linear_cross_entropy(
        x, weight, target, bias, class_weight, int(ignore_index), str(reduction), float(label_smoothing)
    )


class LinearCrossEntropyLoss(torch.nn.Module):
    """A linear output layer and its cross-entropy in one (:func:`linear_cross_entropy`).

    Holds ``weight`` ``(num_classes, in_features)`` and ``bias`` as ``torch.nn.Linear`` does
    (same initialization); ``forward(input, target)`` returns the loss.

    Examples
    --------
    >>> import torch, softgrad.torch as sgt
    >>> head = sgt.LinearCrossEntropyLoss(8, 100)
    >>> loss = head(torch.randn(4, 8), torch.tensor([1, 2, 3, 99]))
    >>> loss.backward()
    >>> head.weight.grad.shape
    torch.Size([100, 8])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bias: bool = True,
        class_weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        linear = torch.nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)
        self.weight = linear.weight
        self.bias = linear.bias
        self.register_buffer("class_weight", class_weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        class_weight: Tensor | None = self.class_weight  # type: ignore[assignment]
        return linear_cross_entropy(
            input, self.weight, target, self.bias, class_weight,
            self.ignore_index, self.reduction, self.label_smoothing,
        )


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`cross_entropy`.

    Examples
    --------
    >>> import torch, softgrad.torch as sgt
    >>> loss = sgt.CrossEntropyLoss(reduction="sum")
    >>> float(loss(torch.zeros(2, 4), torch.tensor([0, 3])))  # 2 log 4
    2.772588...
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        weight: Tensor | None = self.weight  # type: ignore[assignment]
        return cross_entropy(input, target, weight, self.ignore_index, self.reduction, self.label_smoothing)
