"""Derivations of the softmax family, step by step, every step checked by SymPy.

>>> from softgrad.teaching import derive
>>> d = derive("softmax")
>>> [s.key for s in d.steps][:5]
['quotient-rule', 'factor', 'delta-form', 'case-i-eq-j', 'case-i-ne-j']
>>> print(d.step("delta-form").text)
∂S_i/∂x_j = S_i(δ_ij − S_j)
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._model import Derivation, Step
from ._spec import TopicSpec
from ._topics import SPECS

__all__ = ["TOPICS", "Derivation", "Step", "derive"]

TOPICS: tuple[str, ...] = tuple(SPECS)


def _topic_error(topic: object) -> ValueError:
    close = difflib.get_close_matches(str(topic), TOPICS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown topic {topic!r}{hint}; the topics are: {', '.join(TOPICS)}")


def _finite(value: Any, name: str, ndim: int) -> np.ndarray:
    """``value`` as a finite float64 array of ``ndim`` dimensions, or a ValueError naming it."""
    what = "a sequence of numbers" if ndim == 1 else "a matrix (a sequence of rows of numbers)"
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} must be {what} (non-empty), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold finite numbers, got {value!r}")
    return array


def _point(at: Sequence[float]) -> np.ndarray:
    if isinstance(at, str):
        raise ValueError(f"at must be a sequence of numbers, got {at!r}")
    return _finite(at, "at", 1)


def _target(target: Any, classes: int) -> np.ndarray:
    """A class index in ``0..classes-1`` as one-hot, or probabilities over ``classes`` summing to 1."""
    if isinstance(target, bool):
        raise TypeError(f"target must be a class index or a sequence of probabilities, got {target!r}")
    if isinstance(target, int | np.integer):
        if not 0 <= target < classes:
            raise ValueError(f"target must be a class in 0..{classes - 1}, got {target}")
        return np.eye(classes)[int(target)]
    if isinstance(target, str):
        raise TypeError(f"target must be a class index or a sequence of probabilities, got {target!r}")
    y = _finite(target, "target", 1)
    if y.shape != (classes,):
        raise ValueError(f"target must hold {classes} probabilities (one per class), got {y.shape[0]}")
    if np.any(y < 0) or abs(y.sum() - 1.0) > 1e-9:
        raise ValueError(
            f"target probabilities must be >= 0 and sum to 1, got {y.tolist()} (sum {float(y.sum())!r})"
        )
    return y


def _options(spec: TopicSpec, x: np.ndarray, given: dict[str, Any]) -> dict[str, Any]:
    """The topic's keyword options (W, b, target), checked against the point ``x``."""
    options: dict[str, Any] = {}
    if given.get("W") is not None:
        w = options["W"] = _finite(given["W"], "W", 2)
        if w.shape[1] != len(x):
            raise ValueError(f"W must have one column per entry of at ({len(x)}), got shape {w.shape}")
    classes = options["W"].shape[0] if "W" in options else 3 if "W" in spec.options else len(x)
    if given.get("b") is not None:
        b = options["b"] = _finite(given["b"], "b", 1)
        if b.shape != (classes,):
            raise ValueError(f"b must hold one entry per class ({classes}), got {b.shape[0]}")
    if given.get("target") is not None:
        options["target"] = _target(given["target"], classes)
    return options


def _refuse_options(topic: str, given: dict[str, Any], has_point: bool) -> None:
    for name, value in given.items():
        if value is None:
            continue
        takers = [t for t, s in SPECS.items() if name in s.options]
        if name not in SPECS[topic].options:
            raise ValueError(f"{topic} takes no {name}= (the topics that do: {', '.join(takers)})")
        if not has_point:
            raise ValueError(f"{name}= needs at= (the point its numbers are computed at)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, str):
        return value
    return np.asarray(value, dtype=float).tolist()


def derive(
    topic: str,
    *,
    at: Sequence[float] | None = None,
    target: int | Sequence[float] | None = None,
    W: Any = None,
    b: Sequence[float] | None = None,
) -> Derivation:
    r"""The derivation of ``topic``, step by step; with ``at``, also its numbers at that point.

    Each step records the rule applied, a sentence telling a learner why, and the equation
    after it (LaTeX and Unicode). The same formula is written out in SymPy by
    ``Derivation.concrete(n)`` and checked by ``Derivation.verify()``: against SymPy's own
    differentiation of the definition, against the step before, and the result against
    softgrad's function at random points.

    Parameters
    ----------
    topic : str
        One of :data:`TOPICS`: ``softmax``, ``log_softmax``, ``logsumexp``, ``cross_entropy``,
        ``softmax_layer``, ``cross_entropy_layer``, ``softmax_temperature``,
        ``softmax_hessian``, ``sigmoid``, ``policy_gradient``, ``softmax_inverse``.
    at : sequence of float, optional
        A point: the logits (for the layer topics, the layer's input ``x``). The derivation
        then carries the numbers there (``S``, the Jacobian, the gradient...) in ``.at``.
    target : int or sequence of float, optional
        With ``at``, for ``cross_entropy`` and ``cross_entropy_layer``: the target class, or
        soft targets (probabilities summing to 1). Default: class 0.
    W : matrix of float, optional
        With ``at``, for the layer topics: the ``T x N`` weights (``N = len(at)``). Default: a
        small fixed example with ``T = 3``.
    b : sequence of float, optional
        With ``at``, for the layer topics: a bias, so ``z = Wx + b`` (the derivation is the
        same; only ``S`` moves). Default: none.

    Returns
    -------
    Derivation
        Render it with ``to_text()``, ``to_latex()``, ``to_markdown()``, ``to_json()``.

    Raises
    ------
    ValueError
        For an unknown topic (the message lists the topics), a bad point, an option the
        topic does not take, or an option whose shape does not fit the point.

    Examples
    --------
    >>> import softgrad as sg
    >>> d = sg.derive("cross_entropy")
    >>> d.step("sum-y-is-one").text
    '∂L/∂x_j = S_j − y_j'
    >>> d.result
    '\\frac{\\partial L}{\\partial x} = S - y'
    >>> [round(v, 4) for v in sg.derive("softmax", at=[1.0, 2.0, 3.0]).at["S"]]
    [0.09, 0.2447, 0.6652]
    >>> [round(v, 4) for v in sg.derive("cross_entropy", at=[1.0, 2.0, 3.0], target=2).at["gradient"]]
    [0.09, 0.2447, -0.3348]
    """
    if not isinstance(topic, str) or topic not in SPECS:
        raise _topic_error(topic)
    spec = SPECS[topic]
    given = {"target": target, "W": W, "b": b}
    _refuse_options(topic, given, at is not None)
    if at is None:
        return Derivation.from_spec(spec, None)
    x = _point(at)
    return Derivation.from_spec(spec, _jsonable(spec.at(x, **_options(spec, x, given))))
