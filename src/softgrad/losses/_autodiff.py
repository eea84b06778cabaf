"""Hand-off of :func:`~softgrad.losses.cross_entropy` to the closed-form autodiff rules.

A floating torch tensor goes to :mod:`._torch_rules` (PyTorch's class dimension 1: the class
axis is moved there first), a JAX array or tracer to :mod:`._jax_rules`. For cross-entropy a
torch tensor that does not require grad goes there too: the op is the fast path (NumPy kernels
on zero-copy views) where the generic array-API code would run dozens of torch operations.
Which one is decided from ``sys.modules`` (:func:`softgrad.core._autodiff.adapter`), without
importing either library. Options of unexpected types go to the reference path, which
validates them with its own messages.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any

from .._array import normalize_axis
from ..core import _autodiff, _computes

__all__ = ["adapter", "cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def adapter(logits: Any) -> str | None:
    """:func:`softgrad.core._autodiff.adapter`, and ``"torch"`` for a CPU float32/float64 tensor
    that does not require grad (the op's NumPy kernels; other tensors compute as before, and
    the op computes those with the reference, which must not hand them back)."""
    kind = _autodiff.adapter(logits)
    torch = sys.modules.get("torch")
    if kind is None and torch is not None and isinstance(logits, torch.Tensor):
        if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64):
            return "torch"
    return kind


def _plain_torch_options(
    target: Any, weight: Any, ignore_index: Any, label_smoothing: Any, reduction: Any
) -> bool:
    """Whether the torch op can take these options as they are (else the reference validates)."""
    import numpy as np
    import torch

    arrays = (torch.Tensor, np.ndarray, list, tuple)
    return (
        isinstance(target, arrays)
        and (weight is None or isinstance(weight, arrays))
        and isinstance(ignore_index, numbers.Integral) and not isinstance(ignore_index, bool)
        and isinstance(label_smoothing, numbers.Real) and not isinstance(label_smoothing, bool)
        and isinstance(reduction, str) and reduction in _REDUCTIONS
    )


def cross_entropy(
    logits: Any, target: Any, axis: Any, weight: Any, ignore_index: Any, label_smoothing: Any, reduction: Any
) -> Any:
    if adapter(logits) == "torch":
        if not _plain_torch_options(target, weight, ignore_index, label_smoothing, reduction):
            return _computes.get("cross_entropy_reference")(
                logits, target, axis, weight, ignore_index, label_smoothing, reduction
            )
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
