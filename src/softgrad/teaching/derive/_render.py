"""Printers of a :class:`Derivation`: terminal text (Rich), LaTeX, Markdown.

They only walk the records; none of them computes anything or needs SymPy.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

import numpy as np

_TEX_SPECIALS = {c: "\\" + c for c in "_&%#$"}


_GREEK_TEX = {"σ": r"\sigma", "π": r"\pi", "Σ": r"\Sigma", "θ": r"\theta", "φ": r"\phi", "δ": r"\delta"}


def rule_in_latex(rule: str) -> str:
    r"""A rule name as math-mode LaTeX: words in ``\text{...}`` (specials escaped), Greek as math.

    >>> rule_in_latex("definition of σ")
    '\\text{definition of }\\sigma'
    """
    out, words = [], ""
    for c in rule:
        if c in _GREEK_TEX:
            out += [r"\text{" + words + "}"] if words else []
            out.append(_GREEK_TEX[c])
            words = ""
        else:
            words += _TEX_SPECIALS.get(c, c)
    out += [r"\text{" + words + "}"] if words else []
    return "".join(out)


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
    elif a.ndim > 2:
        a = a.reshape(a.shape[0], -1)  # the Hessian as n × n², column j·n + k
    body = r" \\ ".join(" & ".join(fmt_number(v) for v in row) for row in a)
    return rf"\begin{{pmatrix}} {body} \end{{pmatrix}}"


def _at_names(d: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in (d.at or {}).items() if k != "where"]


_AT_LATEX = {"S": "S", "x": "x", "y": "y", "W": "W", "T": "T", "z": "z", "p": "p", "c": "c"}


def _at_name_latex(name: str) -> str:
    return _AT_LATEX.get(name, rule_in_latex(name.replace("_", " ")))


# --- Rich / text ------------------------------------------------------------------------------


class _Indented:
    """Text wrapped to the console's width with a hanging indent, no trailing blanks."""

    def __init__(self, text: str, style: str = "", indent: int = 4) -> None:
        self.text, self.style, self.indent = text, style, indent

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        pad = " " * self.indent
        for paragraph in self.text.split("\n"):
            width = max(20, options.max_width - self.indent)
            for line in textwrap.wrap(paragraph, width, break_on_hyphens=False) or [""]:
                yield Text(pad) + Text(line, style=self.style)


def rich_renderable(d: Any) -> Any:
    from rich.console import Group
    from rich.text import Text

    def indented(text: str, style: str) -> Any:
        return _Indented(text, style)

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
            parts += _at_value(name, value)
    return Group(*parts)


def _at_value(name: str, value: Any) -> list[Any]:
    """A number or vector on one line; a matrix as a grid of right-aligned numbers below its name."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    a = _as_array(value)
    if a.ndim < 2:
        return [Text(f"  {name} = {numbers_text(a)}")]
    grid = Table.grid(padding=(0, 2))
    for _ in range(a.shape[1] if a.ndim == 2 else a[0].size):
        grid.add_column(justify="right")
    for row in a.reshape(a.shape[0], -1):
        grid.add_row(*(fmt_number(v) for v in row))
    return [Text(f"  {name} ="), Padding(grid, (0, 0, 0, 4), expand=False)]


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
