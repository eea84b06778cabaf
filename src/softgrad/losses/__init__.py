"""Losses and the softmax layer: cross-entropy, its derivatives, the dense softmax layer."""

from .cross_entropy import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_hvp,
    cross_entropy_value_and_grad,
)
from .gradcheck import GradcheckResult, gradcheck, numerical_jacobian
from .layer import dense_softmax, dense_softmax_jacobian, dense_softmax_vjp
from .linear import linear_cross_entropy

__all__ = [
    "GradcheckResult",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_hvp",
    "cross_entropy_value_and_grad",
    "dense_softmax",
    "dense_softmax_jacobian",
    "dense_softmax_vjp",
    "gradcheck",
    "linear_cross_entropy",
    "numerical_jacobian",
]
