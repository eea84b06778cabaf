"""``Step`` and ``Derivation``: the records the renderers walk and the checks instantiate."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import _expr as E
from ._render import rule_in_latex
from ._spec import Definition, Quantity, StepSpec, TopicSpec


@dataclass(frozen=True)
class Step:
    """One step of a derivation: the rule applied, why, and the equation after it.

    ``latex`` and ``text`` are the whole equation (``lhs = rhs``, with its condition such as
    ``i ≠ j``), ``lhs_*``/``rhs_*`` its two sides. ``new_quantity`` is true where the step moves
    on to another quantity (from ``J`` to ``gᵀJ``, from one sample to a batch); it is then checked
    against SymPy's computation of the new quantity, not against the step before.
    """

    key: str
    rule: str
    explanation: str
    latex: str
    text: str
    lhs_latex: str
    rhs_latex: str
    lhs_text: str
    rhs_text: str
    rule_latex: str
    quantity: str
    new_quantity: bool
    condition: str = ""
    condition_latex: str = ""
    assumes: tuple[str, ...] = ()
    spec: StepSpec | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rule": self.rule,
            "explanation": self.explanation,
            "latex": self.latex,
            "text": self.text,
            "quantity": self.quantity,
            "new_quantity": self.new_quantity,
            "assumes": list(self.assumes),
        }


def _condition(q: Quantity) -> tuple[str, str]:
    if q.distinct:
        a, b = q.distinct
        return f"{a} ≠ {b}", rf"{a} \ne {b}"
    return "", ""


def build_step(spec: StepSpec, seen: set[str]) -> Step:
    q = spec.quantity
    lhs_tex, rhs_tex = E.to_latex(q.lhs), E.to_latex(spec.expr)
    lhs_txt, rhs_txt = E.to_text(q.lhs), E.to_text(spec.expr)
    cond_txt, cond_tex = _condition(q)
    latex = f"{lhs_tex} = {rhs_tex}" + (rf" \quad ({cond_tex})" if cond_tex else "")
    text = f"{lhs_txt} = {rhs_txt}" + (f"   ({cond_txt})" if cond_txt else "")
    return Step(
        key=spec.key,
        rule=spec.rule,
        explanation=spec.explanation,
        latex=latex,
        text=text,
        lhs_latex=lhs_tex,
        rhs_latex=rhs_tex,
        lhs_text=lhs_txt,
        rhs_text=rhs_txt,
        rule_latex=spec.rule_tex or rule_in_latex(spec.rule),
        quantity=q.key,
        new_quantity=bool(seen) and q.key not in seen and q.part_of not in seen,
        condition=cond_txt,
        condition_latex=cond_tex,
        assumes=q.assumes,
        spec=spec,
    )


def _equation(definition: Definition) -> tuple[str, str]:
    return (
        f"{E.to_latex(definition.lhs)} = {E.to_latex(definition.rhs)}",
        f"{E.to_text(definition.lhs)} = {E.to_text(definition.rhs)}",
    )


@dataclass(frozen=True)
class Derivation:
    """A derivation, step by step: build it with :func:`softgrad.teaching.derive`.

    ``definition`` and ``result`` are LaTeX (``definition_text`` and ``result_text`` their
    Unicode forms), ``steps`` the :class:`Step` records in order, ``at`` the numbers at a point
    (or None). ``concrete(n)`` writes every step out in SymPy for ``n`` classes; ``verify()``
    checks them; ``to_text``/``to_latex``/``to_markdown``/``to_json`` render it.
    """

    topic: str
    title: str
    summary: str
    definition: str
    definition_text: str
    definitions: tuple[tuple[str, str], ...]
    steps: tuple[Step, ...]
    result: str
    result_text: str
    result_key: str
    assumptions: dict[str, str]
    at: dict[str, Any] | None = None
    spec: TopicSpec | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_spec(cls, spec: TopicSpec, at: dict[str, Any] | None = None) -> Derivation:
        steps: list[Step] = []
        seen: set[str] = set()
        for s in spec.steps:
            steps.append(build_step(s, seen))
            seen.add(s.quantity.key)
        equations = tuple(_equation(dfn) for dfn in spec.definitions)
        result = next(s for s in steps if s.key == spec.result)
        return cls(
            topic=spec.name,
            title=spec.title,
            summary=spec.summary,
            definition=r",\qquad ".join(tex for tex, _ in equations),
            definition_text=",   ".join(txt for _, txt in equations),
            definitions=equations,
            steps=tuple(steps),
            result=result.latex,
            result_text=result.text,
            result_key=spec.result,
            assumptions=dict(spec.assumptions),
            at=at,
            spec=spec,
        )

    # --- lookup -------------------------------------------------------------------------------

    def step(self, key: str) -> Step:
        """The step named ``key``; KeyError listing the keys if there is none.

        >>> from softgrad.teaching import derive
        >>> derive("softmax").step("case-i-ne-j").text
        '∂S_i/∂x_j = −S_i·S_j   (i ≠ j)'
        """
        for s in self.steps:
            if s.key == key:
                return s
        keys = ", ".join(s.key for s in self.steps)
        raise KeyError(f"topic {self.topic!r} has no step {key!r}; its steps are: {keys}")

    # --- the checks (SymPy) ---------------------------------------------------------------------

    def concrete(self, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every step written out for ``n`` classes: ``(symbols, steps)``.

        ``symbols`` maps the inputs' names (``"x"`` logits or the layer's input, ``"y"``
        targets, ``"W"`` weights, ...) to SymPy symbol matrices; ``steps`` maps each step's key
        to the quantity as it stands after that step, a SymPy Matrix in those symbols (a scalar
        is 1 × 1; the layer Jacobian is T × NT; the Hessian is n × n² with column j·n + k).
        """
        from ._verify import concrete

        return concrete(self._spec(), self._check_size(n))

    def verify(self, sizes: tuple[int, ...] | None = None, *, points: int = 3) -> Any:
        """Check every step: see :func:`softgrad.teaching.derive.verify_derivation`."""
        from ._verify import verify

        spec = self._spec()
        checked = spec.sizes if sizes is None else tuple(self._check_size(n) for n in sizes)
        return verify(spec, [s.key for s in self.steps], checked, points=points)

    def _spec(self) -> TopicSpec:
        if self.spec is None:
            raise ValueError(f"derivation {self.topic!r} was not built by derive(): nothing to check")
        return self.spec

    def _check_size(self, n: Any) -> int:
        sizes = self._spec().sizes
        if isinstance(n, bool) or not isinstance(n, int) or not sizes[0] <= n <= 12:
            raise ValueError(
                f"n must be an integer from {sizes[0]} to 12 for topic {self.topic!r}, got {n!r}"
            )
        if self.topic == "sigmoid" and n != 2:
            raise ValueError(f"n must be 2 for topic 'sigmoid' (two classes), got {n!r}")
        return n

    # --- renderers ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "title": self.title,
            "summary": self.summary,
            "definition": self.definition,
            "definition_text": self.definition_text,
            "steps": [s.to_dict() for s in self.steps],
            "result": self.result,
            "result_text": self.result_text,
            "assumptions": dict(self.assumptions),
            "at": self.at,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_text(self, width: int = 100) -> str:
        from ._render import text

        return text(self, width)

    def to_latex(self) -> str:
        from ._render import latex

        return latex(self)

    def to_markdown(self) -> str:
        from ._render import markdown

        return markdown(self)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_latex_(self) -> str:
        return self.to_latex()  # MathJax typesets a bare align environment

    def __rich__(self) -> Any:
        from ._render import rich_renderable

        return rich_renderable(self)

    def __str__(self) -> str:
        return self.to_text()
