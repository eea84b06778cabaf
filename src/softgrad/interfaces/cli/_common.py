"""Helpers shared by the sub-commands: number parsing, Rich console, JSON output."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


class CLIError(Exception):
    """A user error on the command line: printed as one line, exit code 2."""


def parse_numbers(values: Sequence[str], name: str = "logits") -> np.ndarray:
    """Parse the numbers given on the command line, or raise CLIError naming the bad one."""
    numbers = []
    for text in values:
        try:
            numbers.append(float(text))
        except ValueError:
            raise CLIError(f"{name}: {text!r} is not a number") from None
    if not numbers:
        raise CLIError(f"{name}: give at least one number")
    return np.asarray(numbers, dtype=np.float64)


def console() -> Any:
    from rich.console import Console

    return Console()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; "inf", "-inf", "nan"
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def print_json(payload: dict[str, Any]) -> None:
    json.dump(_jsonable(payload), sys.stdout, indent=2)
    sys.stdout.write("\n")


def fmt(value: float) -> str:
    return f"{value:.8g}"
