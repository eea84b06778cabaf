"""Losses and the softmax layer: cross-entropy, its derivatives, the dense softmax layer."""

__all__: list[str] = []
