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
import math
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


def _point(spec: TopicSpec, at: Sequence[float]) -> dict[str, Any]:
    try:
        values = [float(v) for v in at]
    except (TypeError, ValueError):
        raise ValueError(f"at must be a sequence of numbers, got {at!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"at must hold finite numbers (at least one), got {values!r}")
    return spec.at(np.asarray(values, dtype=np.float64))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, str):
        return value
    return np.asarray(value, dtype=float).tolist()


def derive(topic: str, *, at: Sequence[float] | None = None) -> Derivation:
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

    Returns
    -------
    Derivation
        Render it with ``to_text()``, ``to_latex()``, ``to_markdown()``, ``to_json()``.

    Raises
    ------
    ValueError
        For an unknown topic (the message lists the topics) or a bad point.

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
    """
    if not isinstance(topic, str) or topic not in SPECS:
        raise _topic_error(topic)
    spec = SPECS[topic]
    numbers = None if at is None else _jsonable(_point(spec, at))
    return Derivation.from_spec(spec, numbers)
