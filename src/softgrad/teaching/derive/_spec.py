"""The records a topic is made of: quantities, steps and the topic itself (no SymPy here).

A topic is data: its definition, the quantities it differentiates, and the steps, each a rule
name, a learner's explanation and one formula (an :mod:`._expr` tree). The same formula is
printed by the renderers and instantiated by :mod:`._sympy` for the checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._expr import Expr


@dataclass(frozen=True)
class Quantity:
    """What a run of steps computes, e.g. the Jacobian ``∂S_i/∂x_j`` over ``i, j``.

    ``free`` lists the free indices with the dimension each runs over: the first index is the
    row of the concrete matrix, the others are flattened row-major into its column (so the
    layer's ``(t, i, j)`` lands at column ``i·N + j``). Without free indices the formula is a
    matrix expression itself. ``distinct`` restricts to entries whose two indices differ (0
    elsewhere). ``reference`` is SymPy's own computation of the quantity from the definition;
    ``numeric`` names softgrad's function for it and computes it at a float point.
    """

    key: str
    lhs: Expr
    reference: Callable[[Any], Any]
    free: tuple[tuple[str, str], ...] = ()
    distinct: tuple[str, str] | None = None
    numeric: tuple[str, Callable[[dict[str, Any]], Any]] | None = None
    assumes: tuple[str, ...] = ()
    oracle: str = "SymPy's derivative"  # how the report names ``reference``
    part_of: str = ""  # the key of the quantity this one is a part of (the diagonal of J)
    tolerance: float = 1e-10  # of the numeric check, relative to the largest entry


@dataclass(frozen=True)
class StepSpec:
    key: str
    rule: str
    explanation: str
    quantity: Quantity
    expr: Expr
    rule_tex: str = ""


@dataclass(frozen=True)
class Definition:
    """``lhs = rhs`` over the free indices; ``check(ctx)`` is the value SymPy binds to it."""

    lhs: Expr
    rhs: Expr
    free: tuple[tuple[str, str], ...] = ()
    check: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class TopicSpec:
    name: str
    title: str
    summary: str
    definitions: tuple[Definition, ...]
    steps: tuple[StepSpec, ...]
    result: str  # the key of the step whose formula is the result
    context: Callable[[int], Any]  # n -> _sympy.Context
    # numbers at a point, from softgrad's functions: at(x, **options) with the keyword options
    # (target=, W=, b=) the topic names in ``options``
    at: Callable[..., dict[str, Any]]
    sizes: tuple[int, ...] = (2, 3, 4, 5)
    assumptions: dict[str, str] = field(default_factory=dict)  # name -> LaTeX, e.g. Σ y = 1
    options: tuple[str, ...] = ()  # the keywords of ``at`` besides the point: "target", "W", "b"
