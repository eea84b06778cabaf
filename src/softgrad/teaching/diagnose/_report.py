"""The result of a diagnosis and its presentations: text (Rich in a terminal), dict and JSON."""

from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any

_STEP_UNKNOWN: dict[str, str] = {}


@cache
def step_text(topic: str, key: str) -> dict[str, str]:
    """The rule, LaTeX and Unicode text of a step of :func:`softgrad.derive` (empty if absent)."""
    from ..derive import derive

    try:
        step = derive(topic).step(key)
    except (KeyError, ValueError):
        return _STEP_UNKNOWN
    return {"rule": str(step.rule), "latex": str(step.latex), "text": str(step.text)}


@dataclass(frozen=True)
class Finding:
    """One mistake found: its catalog id, the evidence, why it is wrong and how to fix it.

    ``step`` is the derivation step it gets wrong, as ``(topic, key)`` of
    :func:`softgrad.derive`, or None for the failures that are not a derivation mistake.
    """

    id: str
    title: str
    evidence: str
    explanation: str
    fix: str
    step: tuple[str, str] | None
    probe: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        step = None
        if self.step is not None:
            step = {"topic": self.step[0], "key": self.step[1], **step_text(*self.step)}
        return {
            "id": self.id,
            "title": self.title,
            "evidence": self.evidence,
            "probe": self.probe,
            "numbers": _jsonable(self.numbers),
            "explanation": self.explanation,
            "fix": self.fix,
            "step": step,
        }


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`softgrad.diagnose` found. ``ok`` when no mistake was found.

    ``str(diagnosis)`` is a readable report (styled by Rich when standard output is a
    terminal); ``to_dict()``/``to_json()`` give the same content for programs.
    """

    function: str
    kind: str
    takes: str
    reduction: str | None
    findings: tuple[Finding, ...]
    probes: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def ids(self) -> list[str]:
        return [f.id for f in self.findings]

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "kind": self.kind,
            "takes": self.takes,
            "reduction": self.reduction,
            "ok": self.ok,
            "ids": self.ids,
            "findings": [f.to_dict() for f in self.findings],
            "probes": self.probes,
            "seconds": round(self.seconds, 4),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def __rich__(self) -> Any:
        return _renderable(self)

    def __str__(self) -> str:
        from rich.console import Console

        buf = io.StringIO()
        tty = sys.stdout.isatty()
        Console(file=buf, force_terminal=tty, no_color=not tty, width=100, highlight=False).print(
            _renderable(self)
        )
        return buf.getvalue().rstrip() + "\n"

    def __repr__(self) -> str:
        return f"Diagnosis(function={self.function!r}, kind={self.kind!r}, ok={self.ok}, ids={self.ids})"


def _headline(d: Diagnosis) -> str:
    how = f"takes={d.takes}" + (f", reduction={d.reduction}" if d.reduction else "")
    verdict = "correct" if d.ok else f"{len(d.findings)} mistake(s): {', '.join(d.ids)}"
    return f"{d.function} as {d.kind} ({how}): {verdict}   [{d.probes} probes, {d.seconds:.2f} s]"


def _renderable(d: Diagnosis) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    parts: list[Any] = [Text(_headline(d), style="bold green" if d.ok else "bold red")]
    if d.ok:
        parts.append(Text("Matches softgrad's exact answer on every probe, large logits included."))
    for f in d.findings:
        parts.append(Text(""))
        parts.append(Text(f"✗ {f.id}: {f.title}", style="bold yellow"))
        for label, body in (("evidence", f.evidence), ("why", f.explanation), ("fix", f.fix)):
            line = Text(f"  {label}: ", style="bold")
            line.append(body)
            parts.append(line)
        if f.step is not None:
            info = step_text(*f.step)
            line = Text("  step: ", style="bold")
            line.append(f"derive({f.step[0]!r}).step({f.step[1]!r})")
            if info:
                line.append(f" {info['rule']}: {info['text']}")  # a terminal shows Unicode, not LaTeX
            parts.append(line)
    return Panel(Group(*parts), title="softgrad diagnose", expand=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan: "inf", "-inf", "nan"
    return value
