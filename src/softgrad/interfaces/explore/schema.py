"""The JSON API's requests: parsed and checked here, once, before anything is computed.

Every check raises :class:`RequestError` with the HTTP status and a message naming the field
and the value received; the server sends it as ``{"error": message}``. docs/explore.md lists
the fields.

>>> parse_compute(b'{"logits": [1, 2, 3], "temperature": 0.5, "target": 2}')
{'logits': [1.0, 2.0, 3.0], 'temperature': 0.5, 'target': 2, 'jacobian': None}
>>> parse_compute(b'{"logits": [], "target": 0}')
Traceback (most recent call last):
...
softgrad.interfaces.explore.schema.RequestError: logits: give at least one number
"""

from __future__ import annotations

import json
import math
from typing import Any

from .compute import JACOBIAN_MAX_N, LAYER_MAX, MAX_LOGITS, TIMING_MAX_N, TIMING_MAX_SIZES

__all__ = [
    "DERIVE_OPTIONS",
    "MAX_BODY_BYTES",
    "TOPICS_SHOWN",
    "RequestError",
    "parse_compute",
    "parse_derive",
    "parse_layer",
    "parse_timing",
]

MAX_BODY_BYTES = 256 * 1024  # 4096 logits written out in full take about 100 KB
# the page's derivation topics: those evaluated at the page's own point (softmax_temperature, say,
# fixes its own T, so it is left to `softgrad derive`)
TOPICS_SHOWN = ("softmax", "log_softmax", "cross_entropy", "softmax_layer", "cross_entropy_layer")


class RequestError(Exception):
    """A request the API refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _invalid(message: str) -> RequestError:
    return RequestError(422, message)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_object(body: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object with no keys outside ``fields`` (a typo is an error, not ignored)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise _invalid(f"the body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _invalid(f"unknown field {unknown[0]!r}; the fields are {', '.join(fields)}")
    return data


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} must be a number, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise _invalid(f"{name} must be a finite number, got {_short(value)}")
    return number


def _numbers(value: Any, name: str, max_len: int) -> list[float]:
    if not isinstance(value, list):
        raise _invalid(f"{name} must be a list of numbers, got {_short(value)}")
    if not value:
        raise _invalid(f"{name}: give at least one number")
    if len(value) > max_len:
        raise RequestError(413, f"{name}: at most {max_len} numbers, got {len(value)}")
    return [_float(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _index(value: Any, name: str, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{name} must be an integer class index, got {_short(value)}")
    if not 0 <= value < n:
        raise _invalid(f"{name} must be in 0..{n - 1} for {n} classes, got {value}")
    return value


def _temperature(value: Any) -> float:
    t = _float(value, "temperature")
    if t <= 0:
        raise _invalid(f"temperature must be positive, got {_short(value)}")
    return t


def parse_compute(body: bytes) -> dict[str, Any]:
    """``{"logits": [...], "temperature": T = 1, "target": k = 0, "jacobian": null|bool}``."""
    data = parse_object(body, ("logits", "temperature", "target", "jacobian"))
    if "logits" not in data:
        raise _invalid("logits: missing (a list of numbers)")
    logits = _numbers(data["logits"], "logits", MAX_LOGITS)
    n = len(logits)
    jacobian = data.get("jacobian")
    if jacobian is not None and not isinstance(jacobian, bool):
        raise _invalid(f"jacobian must be true, false or null, got {_short(jacobian)}")
    if jacobian and n > JACOBIAN_MAX_N:
        raise RequestError(413, f"jacobian: sent for at most {JACOBIAN_MAX_N} logits, got {n}")
    return {
        "logits": logits,
        "temperature": _temperature(data.get("temperature", 1.0)),
        "target": _index(data.get("target", 0), "target", n),
        "jacobian": jacobian,
    }


def _weights(data: dict[str, Any], n_inputs: int) -> tuple[list[list[float]], list[float] | None]:
    """``W`` (rows of ``n_inputs`` numbers, at most LAYER_MAX) and the optional ``b`` (one per row)."""
    rows = data["W"]
    if not isinstance(rows, list) or not rows:
        raise _invalid(f"W must be a non-empty list of rows (one per class), got {_short(rows)}")
    if len(rows) > LAYER_MAX:
        raise RequestError(413, f"W: at most {LAYER_MAX} rows (classes), got {len(rows)}")
    W = [_numbers(row, f"W[{i}]", LAYER_MAX) for i, row in enumerate(rows)]
    bad = [i for i, row in enumerate(W) if len(row) != n_inputs]
    if bad:
        i = bad[0]
        raise _invalid(f"W[{i}] has {len(W[i])} entries; every row of W needs len(x) = {n_inputs}")
    b = data.get("b")
    if b is not None:
        b = _numbers(b, "b", LAYER_MAX)
        if len(b) != len(W):
            raise _invalid(f"b has {len(b)} entries; it needs one per row of W ({len(W)})")
    return W, b


def parse_layer(body: bytes) -> dict[str, Any]:
    """``{"x": [N numbers], "W": [T rows of N], "b": [T] | null, "target": k = 0}``."""
    data = parse_object(body, ("x", "W", "b", "target"))
    for name in ("x", "W"):
        if name not in data:
            raise _invalid(f"{name}: missing")
    x = _numbers(data["x"], "x", LAYER_MAX)
    W, b = _weights(data, len(x))
    return {"x": x, "W": W, "b": b, "target": _index(data.get("target", 0), "target", len(W))}


def parse_timing(body: bytes) -> dict[str, Any]:
    """``{"sizes": [n, ...]}``: at most :data:`TIMING_MAX_SIZES` sizes, each in 1..TIMING_MAX_N."""
    data = parse_object(body, ("sizes",))
    sizes = data.get("sizes")
    if not isinstance(sizes, list) or not sizes:
        raise _invalid(f"sizes must be a non-empty list of integers, got {_short(sizes)}")
    if len(sizes) > TIMING_MAX_SIZES:
        raise RequestError(413, f"sizes: at most {TIMING_MAX_SIZES}, got {len(sizes)}")
    for i, n in enumerate(sizes):
        if isinstance(n, bool) or not isinstance(n, int):
            raise _invalid(f"sizes[{i}] must be an integer, got {_short(n)}")
        if not 1 <= n <= TIMING_MAX_N:
            raise RequestError(
                413 if n > TIMING_MAX_N else 422, f"sizes[{i}] must be in 1..{TIMING_MAX_N}, got {n}"
            )
    return {"sizes": sizes}


# the options each shown topic takes besides its point (see softgrad.teaching.derive)
DERIVE_OPTIONS = {
    "cross_entropy": ("target",),
    "softmax_layer": ("W", "b"),
    "cross_entropy_layer": ("target", "W", "b"),
}


def parse_derive(body: bytes, topics: tuple[str, ...]) -> dict[str, Any]:
    """``{"topic": one of topics, "logits": [...] | null, "temperature": T = 1}``, and the page's
    own ``target`` (cross-entropy topics), ``W`` and ``b`` (layer topics), which need ``logits``."""
    data = parse_object(body, ("topic", "logits", "temperature", "target", "W", "b"))
    topic = data.get("topic")
    if topic not in topics:
        raise _invalid(f"topic must be one of {', '.join(topics)}; got {_short(topic)}")
    logits = data.get("logits")
    if logits is not None:
        logits = _numbers(logits, "logits", MAX_LOGITS)
    options = _derive_options(topic, data, logits)
    return {
        "topic": topic,
        "logits": logits,
        "temperature": _temperature(data.get("temperature", 1.0)),
        **options,
    }


def _derive_options(topic: str, data: dict[str, Any], logits: list[float] | None) -> dict[str, Any]:
    given = [name for name in ("target", "W", "b") if data.get(name) is not None]
    for name in given:
        if name not in DERIVE_OPTIONS.get(topic, ()):
            raise _invalid(f"{topic} takes no {name}")
        if logits is None:
            raise _invalid(f"{name} needs logits (the point the derivation's numbers are computed at)")
    if "b" in given and "W" not in given:
        raise _invalid("b needs W")
    options: dict[str, Any] = {"target": None, "W": None, "b": None}
    if "W" in given:
        if len(logits or ()) > LAYER_MAX:
            raise RequestError(
                413, f"logits: at most {LAYER_MAX} inputs for a layer, got {len(logits or ())}"
            )
        options["W"], options["b"] = _weights(data, len(logits or ()))
    if "target" in given:
        target = data["target"]
        if isinstance(target, bool) or not isinstance(target, int):
            raise _invalid(f"target must be a class index (an integer), got {_short(target)}")
        options["target"] = target  # its range is the derivation's to check (it knows the classes)
    return options
