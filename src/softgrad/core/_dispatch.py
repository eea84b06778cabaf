"""Dispatch to the fused CPU kernels (Numba) for NumPy input.

Each function returns the result when a kernel applies (NumPy float32/float64 input, kernels
enabled in :mod:`softgrad.config`) and ``None`` otherwise, in which case the caller runs the
reference code. The reference code is the oracle the kernels are tested against.
"""

from __future__ import annotations

from typing import Any

__all__ = ["log_softmax", "log_softmax_vjp", "logsumexp", "softmax", "softmax_vjp"]


def softmax(x: Any, axis: Any, temperature: Any, where: Any, out: Any) -> Any:
    return None


def log_softmax(x: Any, axis: Any, temperature: Any, where: Any, out: Any) -> Any:
    return None


def logsumexp(x: Any, axis: Any, keepdims: Any, where: Any, out: Any) -> Any:
    return None


def softmax_vjp(s: Any, g: Any, axis: Any, temperature: Any, out: Any) -> Any:
    return None


def log_softmax_vjp(logp: Any, g: Any, axis: Any, temperature: Any, out: Any) -> Any:
    return None
