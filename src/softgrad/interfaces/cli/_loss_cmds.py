"""Sub-commands added by a later issue; this module only registers what exists."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add this module's sub-commands to ``sub`` (none yet)."""
