"""Core layer: the softmax family and its exact derivatives."""

from .derivatives import (
    log_softmax_jacobian,
    log_softmax_jvp,
    log_softmax_vjp,
    softmax_hessian,
    softmax_jacobian,
    softmax_jvp,
    softmax_vjp,
)
from .softmax import log_softmax, logsumexp, softmax

__all__ = [
    "log_softmax",
    "log_softmax_jacobian",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "logsumexp",
    "softmax",
    "softmax_hessian",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]
