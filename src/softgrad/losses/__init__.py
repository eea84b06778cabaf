"""Losses and the softmax layer: cross-entropy, its derivatives, the dense softmax layer."""

from .cross_entropy import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_hvp,
    cross_entropy_value_and_grad,
)

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_hvp",
    "cross_entropy_value_and_grad",
]
