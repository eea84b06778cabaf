"""Hand-off of :func:`~softgrad.losses.cross_entropy` to the closed-form autodiff rules.

A torch tensor that requires grad goes to :mod:`._torch_rules` (PyTorch's class dimension 1:
the class axis is moved there first), a JAX array or tracer to :mod:`._jax_rules`. Which one
is decided by :func:`softgrad.core._autodiff.adapter` without importing either library.
"""

from __future__ import annotations

from typing import Any

from .._array import normalize_axis
from ..core._autodiff import adapter

__all__ = ["adapter", "cross_entropy"]


def cross_entropy(
    logits: Any, target: Any, axis: Any, weight: Any, ignore_index: Any, label_smoothing: Any, reduction: Any
) -> Any:
    if adapter(logits) == "torch":
        return _torch_cross_entropy(logits, target, axis, weight, ignore_index, label_smoothing, reduction)
    from . import _jax_rules

    return _jax_rules.cross_entropy(
        logits, target, weight, axis, ignore_index, reduction, label_smoothing
    )


def _torch_cross_entropy(
    x: Any, target: Any, axis: Any, weight: Any, ignore_index: Any, label_smoothing: Any, reduction: Any
) -> Any:
    import torch

    from . import _torch_rules

    axis = normalize_axis(axis, max(x.ndim, 1), "axis")
    dim = _torch_rules.class_dim(x)
    if axis != dim:
        if isinstance(target, torch.Tensor) and target.is_floating_point() and target.shape == x.shape:
            target = target.movedim(axis, dim)
        x = x.movedim(axis, dim)
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target, device=x.device)
    if weight is not None and not isinstance(weight, torch.Tensor):
        weight = torch.as_tensor(weight, dtype=x.dtype, device=x.device)
    return _torch_rules.cross_entropy(
        x, target, weight, int(ignore_index), str(reduction), float(label_smoothing)
    )
