"""The computations the autodiff rules call, registered by the modules that define them.

The public functions hand torch and JAX input off to the rules (:mod:`._autodiff`), so the
rules cannot import those modules back without an import cycle. Each module registers its own
computation here when it is imported (``softmax.py``, ``losses/cross_entropy.py``); the rules
look it up when they run. Importing any part of softgrad imports both modules first, so the
table is always filled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_TABLE: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[F], F]:
    """Decorator: make ``fn`` the rules' computation called ``name``."""

    def put(fn: F) -> F:
        _TABLE[name] = fn
        return fn

    return put


def get(name: str) -> Callable[..., Any]:
    return _TABLE[name]
