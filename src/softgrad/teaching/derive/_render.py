"""Printers of a :class:`Derivation`: terminal text (Rich), LaTeX, Markdown.

They only walk the records; none of them computes anything or needs SymPy.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

_TEX_SPECIALS = {c: "\\" + c for c in "_&%#$"}


def rule_in_latex(rule: str) -> str:
    """A rule name as math-mode LaTeX: ``\\text{...}`` with its specials escaped."""
    return r"\text{" + "".join(_TEX_SPECIALS.get(c, c) for c in rule) + "}"


def fmt_number(v: float) -> str:
    return f"{v:.6g}"


def _as_array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=float)


def numbers_text(value: Any) -> str:
    a = _as_array(value)
    if a.ndim == 0:
        return fmt_number(float(a))
    if a.ndim == 1:
        return "(" + ", ".join(fmt_number(v) for v in a) + ")"
    rows = [numbers_text(row) for row in a]
    return "[" + ",\n ".join(rows) + "]"


def numbers_latex(value: Any) -> str:
    a = _as_array(value)
    if a.ndim == 0:
        return fmt_number(float(a))
    if a.ndim == 1:
        a = a[:, None]  # vectors are columns
    body = r" \\ ".join(" & ".join(fmt_number(v) for v in row) for row in a)
    return rf"\begin{{pmatrix}} {body} \end{{pmatrix}}"


def _at_names(d: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in (d.at or {}).items() if k != "where"]


_AT_LATEX = {"S": "S", "x": "x", "y": "y", "W": "W", "T": "T", "z": "z", "p": "p", "c": "c"}


def _at_name_latex(name: str) -> str:
    return _AT_LATEX.get(name, rule_in_latex(name.replace("_", " ")))


# --- Rich / text ------------------------------------------------------------------------------


def rich_renderable(d: Any) -> Any:
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    def indented(text: str, style: str) -> Any:
        return Padding(Text(text, style=style), (0, 0, 0, 4))

    parts: list[Any] = [
        Text(f"{d.topic}: {d.title}", style="bold"),
        Text(d.summary, style="dim"),
        Text(""),
        Text.assemble(("Definition  ", "bold"), d.definition_text),
        Text(""),
    ]
    for number, s in enumerate(d.steps, 1):
        header = Text.assemble((f"{number:>2}. ", "bold"), (s.rule, "bold cyan"), (f"   [{s.key}]", "dim"))
        if s.new_quantity:
            header.append("   new quantity", style="yellow")
        parts += [header, indented(s.explanation, "italic"), indented(s.text, "green"), Text("")]
    parts.append(Text.assemble(("Result  ", "bold"), (d.result_text, "bold green")))
    if d.at:
        parts += [Text(""), Text(d.at.get("where", "At the point:"), style="bold")]
        for name, value in _at_names(d):
            block = numbers_text(value).replace("\n", "\n" + " " * (len(name) + 3))
            parts.append(Padding(Text(f"{name} = {block}"), (0, 0, 0, 2)))
    return Group(*parts)


def text(d: Any, width: int = 100) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(rich_renderable(d))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


# --- LaTeX ------------------------------------------------------------------------------------


def _rows(d: Any) -> list[str]:
    rows = [rf"{tex.replace(' = ', ' &= ', 1)} && \text{{definition}}" for tex, _ in d.definitions]
    shown_lhs = None
    for s in d.steps:
        lhs = s.lhs_latex if (s.lhs_latex, s.condition) != shown_lhs else ""
        shown_lhs = (s.lhs_latex, s.condition)
        cond = rf" \quad ({s.condition_latex})" if s.condition_latex else ""
        rows.append(rf"{lhs} &= {s.rhs_latex}{cond} && {s.rule_latex}")
    if d.at:
        for name, value in _at_names(d):
            rows.append(rf"{_at_name_latex(name)} &= {numbers_latex(value)} && \text{{at the point}}")
    return rows


def latex(d: Any) -> str:
    r"""A complete ``align`` environment (amsmath): one row per definition and step."""
    return "\\begin{align}\n" + " \\\\\n".join(_rows(d)) + "\n\\end{align}"


# --- Markdown ---------------------------------------------------------------------------------


def markdown(d: Any) -> str:
    lines = [f"### {d.topic}: {d.title}", "", f"*{d.summary}*", "", "**Definition.**", ""]
    lines += [f"$$ {tex} $$" for tex, _ in d.definitions]
    lines.append("")
    for number, s in enumerate(d.steps, 1):
        note = " *(new quantity)*" if s.new_quantity else ""
        lines += [f"**{number}. {s.rule}** (`{s.key}`){note}. {s.explanation}", "", f"$$ {s.latex} $$", ""]
    lines += ["**Result.**", "", f"$$ {d.result} $$", ""]
    if d.at:
        lines += [f"**{d.at.get('where', 'At the point:')}**", "", "| quantity | value |", "|---|---|"]
        for name, value in _at_names(d):
            lines.append(f"| `{name}` | `{numbers_text(value).replace(chr(10), ' ')}` |")
        lines.append("")
    return "\n".join(lines)
