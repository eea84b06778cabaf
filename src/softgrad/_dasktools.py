"""Dask helpers shared by the losses and the models: recognising a Dask collection without
importing Dask, and summing partial results in a fixed tree.

Bottom layer, like :mod:`softgrad._array`: it imports nothing from the rest of the package, and
Dask only when a Dask collection can exist (after someone else imported it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["FAN_IN", "is_dask_collection", "reduce_tree", "sum_in_order"]

FAN_IN = 8  # partials summed per task of the tree


def is_dask_collection(x: Any) -> bool:
    """True for a Dask collection (array, DataFrame, Series, Delayed), without importing Dask."""
    if "dask" not in sys.modules:  # nothing can be a Dask collection before Dask is imported
        return False
    import dask

    return bool(dask.is_dask_collection(x))


def sum_in_order(*parts: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """Elementwise sum of tuples of numbers or arrays, in float64 and in the order given.

    A fixed order makes the float64 result reproducible bit for bit, whichever worker computed
    which part. Returns new float64 arrays (0-d for numbers); the parts are not modified.
    """
    acc = [np.array(p, dtype=np.float64) for p in parts[0]]
    for part in parts[1:]:
        for a, p in zip(acc, part, strict=True):
            a += p
    return tuple(acc)


def reduce_tree(nodes: list[Any], merge: Callable[[list[Any], int, int], Any], fan_in: int = FAN_IN) -> Any:
    """Merge ``nodes`` ``fan_in`` at a time, in order, level by level, until one is left.

    ``merge(group, level, index)`` makes the node that stands for ``group`` (``index``: the
    position of the group's first node in its level), e.g. a task of ``sum_in_order``. The shape
    of the tree depends only on ``len(nodes)`` and ``fan_in``: the order of the sums is fixed.

    >>> reduce_tree(list("abcde"), lambda group, level, i: "(" + "".join(group) + ")", fan_in=2)
    '(((ab)(cd))((e)))'
    """
    level = 0
    while len(nodes) > 1:
        nodes = [merge(nodes[i : i + fan_in], level, i) for i in range(0, len(nodes), fan_in)]
        level += 1
    return nodes[0]
