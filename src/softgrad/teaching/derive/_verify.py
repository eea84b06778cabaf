"""``verify()``: every step against SymPy's own derivative and the step before, the result
against softgrad's function.

Exact identity testing: each step and SymPy's reference are written out for ``n`` classes and
evaluated at random points whose exponentials are rational (logits ``log q`` for rational
``q``), so both sides become exact rationals, plus logarithms of rationals that are expanded
into logarithms of primes. Two rational functions that agree at random points of this kind
are equal with overwhelming probability (Schwartz-Zippel); a wrong step differs at the first
point. Where an entry is still not exactly 0 after expanding logarithms it is evaluated with
60 digits (reported as such).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ._spec import Quantity, StepSpec, TopicSpec
from ._sympy import Context, instantiate

EXACT, LOGS, DIGITS = "exact", "exact (logs expanded)", "60 digits"


@dataclass
class Check:
    """One line of the report: ``step`` compared with ``against`` for the sizes ``sizes``."""

    step: str
    against: str
    ok: bool = True
    sizes: list[int] = field(default_factory=list)
    methods: set[str] = field(default_factory=set)
    error: float | None = None  # numeric checks: the largest relative error
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "against": self.against,
            "ok": self.ok,
            "sizes": self.sizes,
            "methods": sorted(self.methods),
            "error": self.error,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    """What ``Derivation.verify()`` found; ``str()`` is the printed report, ``ok`` the verdict."""

    topic: str
    sizes: tuple[int, ...]
    points: int
    checks: list[Check]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "ok": self.ok,
            "sizes": list(self.sizes),
            "points": self.points,
            "seconds": self.seconds,
            "checks": [c.to_dict() for c in self.checks],
        }

    def __str__(self) -> str:
        sizes = ", ".join(map(str, self.sizes))
        lines = [
            f"verify {self.topic}: n = {sizes}; {self.points} random points per n "
            f"(SymPy, exact arithmetic; numeric checks in float64)"
        ]
        width = max(len(c.step) for c in self.checks) + 2
        for c in self.checks:
            how = ", ".join(sorted(c.methods))
            if c.error is not None:
                how = f"max rel. error {c.error:.1e}"
            status = "ok  " if c.ok else "FAIL"
            line = f"  {status} {c.step:<{width}} = {c.against:<34} {how}"
            lines.append(line.rstrip() + (f"  ({c.detail})" if c.detail else ""))
        passed = sum(c.ok for c in self.checks)
        verdict = "all passed" if self.ok else "FAILED"
        lines.append(f"  {passed}/{len(self.checks)} checks {verdict} in {self.seconds:.1f} s")
        return "\n".join(lines)


def concrete(spec: TopicSpec, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    ctx = spec.context(n)
    return dict(ctx.symbols), {s.key: instantiate(s.expr, s.quantity, ctx) for s in spec.steps}


def _at(matrix: Any, point: dict[Any, Any]) -> Any:
    """``matrix`` at ``point``; an exp whose argument only became 0 there is re-evaluated."""
    return matrix.xreplace(point).applyfunc(lambda e: e if e.is_Rational else e.replace(sp.exp, sp.exp))


def _equal(a: Any, b: Any) -> str | None:
    """How the numbers ``a`` and ``b`` were found equal, or None if they differ."""
    diff = sp.sympify(a - b)
    if diff == 0:
        return EXACT
    if diff.has(sp.log) and sp.expand(sp.expand_log(diff, force=True, factor=True)) == 0:
        return LOGS
    scale = max(1, abs(sp.N(b, 30)))
    value = abs(sp.N(diff, 60))
    if value.is_number and value < sp.Float(10) ** -45 * scale:
        return DIGITS
    return None


def _compare(check: Check, a: Any, b: Any, n: int) -> None:
    if a.shape != b.shape:
        check.ok, check.detail = False, f"shape {a.shape} != {b.shape} at n={n}"
        return
    for u, v in zip(a, b, strict=True):
        method = _equal(u, v)
        if method is None:
            check.ok = False
            check.detail = f"differs at n={n}: {sp.N(u, 8)} vs {sp.N(v, 8)}"
            return
        check.methods.add(method)
    if n not in check.sizes:
        check.sizes.append(n)


class _Values:
    """Each step's matrix at each sample point, evaluated once."""

    def __init__(self, ctx: Context, steps: Sequence[StepSpec]) -> None:
        self.ctx = ctx
        self.matrices = {s.key: instantiate(s.expr, s.quantity, ctx) for s in steps}
        self.cache: dict[tuple[str, int], Any] = {}

    def at(self, key: str, point_id: int, point: dict[Any, Any]) -> Any:
        if (key, point_id) not in self.cache:
            self.cache[key, point_id] = _at(self.matrices[key], point)
        return self.cache[key, point_id]


def _check_definitions(
    spec: TopicSpec, ctx: Context, points: list[Any], checks: dict[Any, Check], n: int
) -> None:
    for k, dfn in enumerate(spec.definitions):
        if dfn.check is None:
            continue
        check = checks.setdefault(("definition", k), Check(f"definition {k + 1}", "SymPy's definition"))
        printed = instantiate(dfn.rhs, dfn, ctx)
        value = dfn.check(ctx)
        bound = value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])
        bound = bound.xreplace(ctx.intermediates) if ctx.intermediates else bound
        if bound.shape != printed.shape and bound.T.shape == printed.shape:
            bound = bound.T
        for point in points:
            _compare(check, _at(printed, point), _at(bound, point), n)


def _check_steps(
    spec: TopicSpec, ctx: Context, rng: random.Random, points: int, checks: dict[Any, Check], n: int
) -> _Values:
    values = _Values(ctx, spec.steps)
    all_assumptions = tuple(spec.assumptions)
    samples = [(ctx.sample(rng, ()), ctx.sample(rng, all_assumptions)) for _ in range(points)]
    _check_definitions(spec, ctx, [general for general, _ in samples], checks, n)
    last_of: dict[str, StepSpec] = {}
    for step in spec.steps:
        q = step.quantity
        reference = ctx.reference(q)
        previous = last_of.get(q.key)
        for p, (general, constrained) in enumerate(samples):
            which = 2 * p + (1 if q.assumes else 0)
            point = constrained if q.assumes else general
            mine = values.at(step.key, which, point)
            check = checks.setdefault((step.key, "ref"), Check(step.key, q.oracle))
            _compare(check, mine, _at(reference, point), n)
            if previous is not None:
                label = f"previous step ({previous.key})"
                check = checks.setdefault((step.key, "prev"), Check(step.key, label))
                _compare(check, mine, values.at(previous.key, which, point), n)
        last_of[q.key] = step
    return values


def _check_numeric(
    spec: TopicSpec,
    values: _Values,
    np_rng: np.random.Generator,
    points: int,
    checks: dict[Any, Check],
    n: int,
) -> None:
    ctx = values.ctx
    last: dict[str, tuple[StepSpec, Quantity]] = {}
    for step in spec.steps:
        if step.quantity.numeric is not None:
            last[step.quantity.key] = (step, step.quantity)
    names = list(ctx.symbols)
    flat = [s for name in names for s in ctx.symbols[name]]
    for step, q in last.values():
        assert q.numeric is not None
        fname, fn = q.numeric
        check = checks.setdefault((step.key, "numeric"), Check(step.key, f"softgrad.{fname}"))
        matrix = values.matrices[step.key]
        f = sp.lambdify(flat, matrix, "numpy")
        for _ in range(points):
            point = ctx.floats(np_rng)
            args = [v for name in names for v in np.asarray(point[name], dtype=float).ravel()]
            mine = np.asarray(f(*args), dtype=float)
            theirs = np.asarray(fn(point), dtype=float).reshape(mine.shape)
            error = float(np.max(np.abs(mine - theirs)) / max(np.max(np.abs(theirs)), 1e-300))
            check.error = max(check.error or 0.0, error)
            if not error < q.tolerance:
                check.ok, check.detail = False, f"relative error {error:.2e} at n={n}"
        if n not in check.sizes:
            check.sizes.append(n)


def verify(spec: TopicSpec, keys: Sequence[str], sizes: Sequence[int], *, points: int = 3) -> VerifyReport:
    start = time.perf_counter()
    checks: dict[Any, Check] = {}
    for n in sizes:
        ctx = spec.context(n)
        seed = f"{spec.name}-{n}"
        values = _check_steps(spec, ctx, random.Random(seed), points, checks, n)
        _check_numeric(spec, values, np.random.default_rng(list(seed.encode())), points, checks, n)
    order = {key: k for k, key in enumerate(keys)}
    ordered = sorted(checks.values(), key=lambda c: (order.get(c.step, -1), c.against))
    return VerifyReport(spec.name, tuple(sizes), points, ordered, time.perf_counter() - start)
