"""Run-time switches. Bottom layer: imports nothing from softgrad.

The fused CPU kernels run automatically for NumPy input where they apply. Switch them off to
debug or to compare with the reference code::

    SOFTGRAD_DISABLE_KERNELS=1 python script.py      # for a whole process

    import softgrad as sg
    sg.config.set_kernels(False)                     # from here on
    with sg.config.kernels(False):                   # inside a block
        ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["kernels", "kernels_enabled", "set_kernels"]

_ENV = "SOFTGRAD_DISABLE_KERNELS"
_state = {"kernels": os.environ.get(_ENV, "").strip().lower() not in ("1", "true", "yes", "on")}


def kernels_enabled() -> bool:
    """Whether the fused CPU kernels may run (see ``SOFTGRAD_DISABLE_KERNELS``)."""
    return _state["kernels"]


def set_kernels(enabled: bool) -> None:
    """Allow (True) or forbid (False) the fused CPU kernels from now on."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    _state["kernels"] = enabled


@contextlib.contextmanager
def kernels(enabled: bool) -> Iterator[None]:
    """Context manager: allow or forbid the fused CPU kernels inside a ``with`` block."""
    before = _state["kernels"]
    set_kernels(enabled)
    try:
        yield
    finally:
        _state["kernels"] = before
