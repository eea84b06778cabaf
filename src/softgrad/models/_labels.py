"""The one rule about labels that every way of fitting shares: at least two classes."""

from __future__ import annotations

from typing import Any

__all__ = ["check_two_classes"]


def check_two_classes(classes: Any, source: str = "the data") -> None:
    """A ``ValueError`` naming the class found when ``classes`` (the distinct labels) has fewer than two.

    Used by :meth:`SoftmaxRegression.fit` in memory and on Dask, and by ``softgrad train`` before
    it splits the data (``source``: where the labels came from).
    """
    if len(classes) < 2:
        found = f": {classes[0]!r}" if len(classes) else ""
        raise ValueError(
            f"SoftmaxRegression needs samples of at least 2 classes in {source}, "
            f"but {source} contains only one class{found}"
        )
