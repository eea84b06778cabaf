"""A small expression tree for derivation steps, and its LaTeX and Unicode printers.

A step's formula is written once, as a tree of these nodes (``S(i) * (delta(i, j) - S(j))``).
The printers here turn the tree into LaTeX and terminal text without SymPy; ``_sympy.py``
instantiates the *same* tree for a concrete number of classes, so the formula that is shown
is the formula that is checked.

Indices are names (``"i"``, ``"j"``); a :class:`Sum` binds one and says which dimension it
runs over (``"n"`` classes, ``"N"`` inputs, ``"B"`` samples, ``"d"`` features).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

# Binding strength, loosest first: a child looser than its context gets parentheses.
ADD, MUL, NEG, POW, ATOM = 1, 2, 3, 4, 5


class Expr:
    """Base of the tree: arithmetic operators build new nodes."""

    prec = ATOM

    def __add__(self, other: object) -> Expr:
        return Add((self, wrap(other)))

    def __radd__(self, other: object) -> Expr:
        return Add((wrap(other), self))

    def __sub__(self, other: object) -> Expr:
        return Add((self, Neg(wrap(other))))

    def __rsub__(self, other: object) -> Expr:
        return Add((wrap(other), Neg(self)))

    def __mul__(self, other: object) -> Expr:
        return Mul((self, wrap(other)))

    def __rmul__(self, other: object) -> Expr:
        return Mul((wrap(other), self))

    def __truediv__(self, other: object) -> Expr:
        return Div(self, wrap(other))

    def __rtruediv__(self, other: object) -> Expr:
        return Div(wrap(other), self)

    def __neg__(self) -> Expr:
        return Neg(self)

    def __pow__(self, other: object) -> Expr:
        return Pow(self, wrap(other))

    @property
    def T(self) -> Expr:
        return Transpose(self)


def wrap(value: object) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, int | Fraction):
        return Num(value)
    raise TypeError(f"cannot use {value!r} in a formula")


@dataclass(frozen=True, eq=False)
class Num(Expr):
    value: int | Fraction


@dataclass(frozen=True, eq=False)
class Sym(Expr):
    """A named quantity: ``key`` is what SymPy binds, ``tex``/``text`` how it is printed."""

    key: str
    idx: tuple[str, ...] = ()
    tex: str = ""
    text: str = ""
    tex_fmt: str = ""  # with indices filled in by str.format: r"\pi({0} \mid s)"
    text_fmt: str = ""


@dataclass(frozen=True, eq=False)
class Add(Expr):
    terms: tuple[Expr, ...]
    prec = ADD


@dataclass(frozen=True, eq=False)
class Mul(Expr):
    factors: tuple[Expr, ...]
    prec = MUL


@dataclass(frozen=True, eq=False)
class Div(Expr):
    num: Expr
    den: Expr
    prec = MUL


@dataclass(frozen=True, eq=False)
class Neg(Expr):
    arg: Expr
    prec = MUL  # a negative factor inside a product gets parentheses: a·(−b)


@dataclass(frozen=True, eq=False)
class Pow(Expr):
    base: Expr
    exp: Expr
    prec = POW


@dataclass(frozen=True, eq=False)
class Exp(Expr):
    arg: Expr
    prec = POW


@dataclass(frozen=True, eq=False)
class Log(Expr):
    arg: Expr

    @property
    def prec(self) -> int:  # type: ignore[override]
        # log S_k binds like a function call; log Σ_k ... extends to the right, like the sum
        return ATOM if _is_atomic(self.arg) else MUL


@dataclass(frozen=True, eq=False)
class Func(Expr):
    """A named function with its argument in parentheses: ``σ(z)``, ``diag(S)``."""

    name: str
    arg: Expr
    tex: str = ""


@dataclass(frozen=True, eq=False)
class Sum(Expr):
    index: str
    body: Expr
    dim: str = "n"
    prec = MUL


@dataclass(frozen=True, eq=False)
class Delta(Expr):
    a: str
    b: str


@dataclass(frozen=True, eq=False)
class Deriv(Expr):
    """``∂f/∂v``; for an intermediate ``v`` (such as ``z = Wx``) the derivative is taken
    with ``v`` held as its own variable, then ``v`` is replaced by its value."""

    f: Expr
    v: Expr

    @property
    def prec(self) -> int:  # type: ignore[override]
        return ATOM if _is_atomic(self.f) else MUL


@dataclass(frozen=True, eq=False)
class Transpose(Expr):
    arg: Expr
    prec = POW


@dataclass(frozen=True, eq=False)
class Hadamard(Expr):
    a: Expr
    b: Expr
    prec = MUL


@dataclass(frozen=True, eq=False)
class Kron(Expr):
    a: Expr
    b: Expr
    prec = MUL


@dataclass(frozen=True, eq=False)
class Paren(Expr):
    """Parentheses the reader needs though precedence does not: ``(gᵀS)𝟏``."""

    arg: Expr


@dataclass(frozen=True, eq=False)
class Ones(Expr):
    dim: str = "n"


@dataclass(frozen=True, eq=False)
class Eye(Expr):
    dim: str = "n"


# --- builders ---------------------------------------------------------------------------------


def sym(key: str, *idx: str, tex: str = "", text: str = "", tex_fmt: str = "", text_fmt: str = "") -> Sym:
    """``key`` with indices ``idx`` (index names, or digits for a fixed entry such as ``x_1``)."""
    return Sym(key, tuple(idx), tex or key, text or tex or key, tex_fmt, text_fmt or tex_fmt)


def delta(a: str, b: str) -> Delta:
    return Delta(a, b)


def exp(arg: Expr) -> Exp:
    return Exp(arg)


def log(arg: Expr) -> Log:
    return Log(arg)


def summation(index: str, body: Expr, dim: str = "n") -> Sum:
    return Sum(index, body, dim)


def d(f: Expr, v: Expr) -> Deriv:
    return Deriv(f, v)


def sigma(arg: Expr) -> Func:
    return Func("sigma", arg, r"\sigma")


def softplus(arg: Expr) -> Func:
    return Func("softplus", arg, r"\operatorname{softplus}")


def diag(arg: Expr) -> Func:
    return Func("diag", arg, r"\operatorname{diag}")


def hadamard(a: Expr, b: Expr) -> Hadamard:
    return Hadamard(a, b)


def kron(a: Expr, b: Expr) -> Kron:
    return Kron(a, b)


# --- printers ---------------------------------------------------------------------------------

_GREEK = {"sigma": "σ", "theta": "θ", "phi": "φ", "pi": "π", "delta": "δ"}
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _is_atomic(e: Expr) -> bool:
    return isinstance(e, Sym | Num | Delta | Ones | Eye) and not (isinstance(e, Num) and e.value < 0)


def _last_extends_right(e: Expr) -> bool:
    """Sums, logs and ∂/∂v(...) swallow what follows them: parenthesize them unless last."""
    if isinstance(e, Log):
        return not _is_atomic(e.arg)
    return isinstance(e, Sum) or (isinstance(e, Deriv) and not _is_atomic(e.f))


class _Printer:
    """Shared walk of the tree; the subclasses give the notation."""

    def __call__(self, e: Expr) -> str:
        method: Callable[[Expr], str] = getattr(self, "_" + type(e).__name__.lower())
        return method(e)

    # True while nothing follows the expression being printed in its enclosing context: a sum
    # (or log Σ, ∂/∂v [...]) may then stay bare, Σ_k a_k, else it needs (Σ_k a_k) − b.
    _tail = True

    def paren(self, s: str) -> str:
        raise NotImplementedError

    def closed(self, e: Expr) -> str:
        """``e`` where it is delimited on both sides: a fraction's part, an exponent, (...)."""
        return self._with_tail(e, True)

    def _with_tail(self, e: Expr, tail: bool) -> str:
        saved, self._tail = self._tail, tail
        try:
            return self(e)
        finally:
            self._tail = saved

    def child(self, e: Expr, ctx: int, last: bool = True) -> str:
        tail = last and self._tail
        if _last_extends_right(e):  # binds tightly on its left, swallows all on its right
            needs = not tail or ctx > MUL + 1
        else:
            needs = e.prec < ctx
        if needs:
            return self.paren(self.closed(e))
        return self._with_tail(e, tail)

    def _add(self, e: Add) -> str:
        out = ""
        for k, t in enumerate(e.terms):
            last = k == len(e.terms) - 1
            if isinstance(t, Neg):
                out += self.minus + self.child(t.arg, MUL, last)
            else:
                out += ("" if k == 0 else " + ") + self.child(t, ADD + 1, last)
        return out.removeprefix(" ")

    minus = " - "

    def _neg(self, e: Neg) -> str:
        return self.minus.strip() + self.child(e.arg, MUL)

    def _num(self, e: Num) -> str:
        return str(e.value)


class LatexPrinter(_Printer):
    minus = " - "

    def paren(self, s: str) -> str:
        return rf"\left({s}\right)"

    def _sym(self, e: Sym) -> str:
        if e.tex_fmt:
            return e.tex_fmt.format(*e.idx)
        if not e.idx:
            return e.tex
        return f"{e.tex}_{{{''.join(e.idx)}}}"

    def _mul(self, e: Mul) -> str:
        n = len(e.factors)
        parts = [self.child(f, MUL + 1 if k else MUL, k == n - 1) for k, f in enumerate(e.factors)]
        out = parts[0]
        for part in parts[1:]:  # a thin space between symbols (S_i \, S_j), none before a bracket
            out += " " + part if part.startswith(r"\left") else r" \, " + part
        return out

    def _div(self, e: Div) -> str:
        return rf"\frac{{{self.closed(e.num)}}}{{{self.closed(e.den)}}}"

    def _pow(self, e: Pow) -> str:
        return f"{self.child(e.base, ATOM)}^{{{self.closed(e.exp)}}}"

    def _exp(self, e: Exp) -> str:
        return f"e^{{{self.closed(e.arg)}}}"

    def _log(self, e: Log) -> str:
        if _is_atomic(e.arg) or isinstance(e.arg, Sum):
            return rf"\log {self(e.arg)}"
        return rf"\log {self.paren(self.closed(e.arg))}"

    def _func(self, e: Func) -> str:
        return f"{e.tex or e.name}{self.paren(self.closed(e.arg))}"

    def _sum(self, e: Sum) -> str:
        return rf"\sum_{{{e.index}}} {self.child(e.body, MUL)}"

    def _delta(self, e: Delta) -> str:
        return rf"\delta_{{{e.a}{e.b}}}"

    def _deriv(self, e: Deriv) -> str:
        if _is_atomic(e.f):
            return rf"\frac{{\partial {self.closed(e.f)}}}{{\partial {self.closed(e.v)}}}"
        return rf"\frac{{\partial}}{{\partial {self.closed(e.v)}}} \left[{self.closed(e.f)}\right]"

    def _transpose(self, e: Transpose) -> str:
        return rf"{self.child(e.arg, ATOM)}^\top"

    def _hadamard(self, e: Hadamard) -> str:
        return rf"{self.child(e.a, MUL + 1, False)} \odot {self.child(e.b, MUL + 1)}"

    def _kron(self, e: Kron) -> str:
        return rf"{self.child(e.a, MUL + 1, False)} \otimes {self.child(e.b, MUL + 1)}"

    def _ones(self, e: Ones) -> str:
        return r"\mathbf{1}"

    def _paren(self, e: Paren) -> str:
        return self.paren(self.closed(e.arg))

    def _eye(self, e: Eye) -> str:
        return "I"

    def _num(self, e: Num) -> str:
        v = e.value
        if isinstance(v, Fraction) and v.denominator != 1:
            return rf"\frac{{{v.numerator}}}{{{v.denominator}}}"
        return str(v)


class TextPrinter(_Printer):
    """Unicode for a terminal: ``S_i(δ_ij − S_j)``, ``Σ_k exp(x_k)``, ``SSᵀ``."""

    minus = " − "

    def paren(self, s: str) -> str:
        return f"({s})"

    def _sym(self, e: Sym) -> str:
        if e.text_fmt:
            return e.text_fmt.format(*e.idx)
        name = e.text
        if not e.idx:
            return name
        return f"{name}_{''.join(e.idx)}"

    def _mul(self, e: Mul) -> str:
        n = len(e.factors)
        parts = []
        for k, f in enumerate(e.factors):
            if isinstance(f, Div) and n > 1:  # "a / b·c" would be ambiguous
                parts.append(self.paren(self.closed(f)))
            else:
                parts.append(self.child(f, MUL + 1 if k else MUL, k == n - 1))
        out = parts[0]
        for prev, part in itertools.pairwise(parts):
            # juxtapose where it reads unambiguously (S_i(...), SSᵀ, (gᵀS)𝟏), else a middle dot
            plain = "_" not in prev and "/" not in prev and " " not in prev
            out += "" if part.startswith("(") or prev.endswith(")") or plain else "·"
            out += part
        return out

    def _div(self, e: Div) -> str:
        if isinstance(e.num, Div):
            num = self.paren(self.closed(e.num))
        else:
            num = self.child(e.num, MUL, last=False)
        if isinstance(e.den, Sum) and self._tail:
            return f"{num} / {self(e.den)}"  # a / Σ_k b_k: the sum ends where the line does
        return f"{num} / {self.child(e.den, POW)}"

    def _pow(self, e: Pow) -> str:
        base = self.child(e.base, ATOM)
        if isinstance(e.exp, Num) and isinstance(e.exp.value, int):
            return base + str(e.exp.value).translate(_SUPERSCRIPT)
        return f"{base}^({self.closed(e.exp)})"

    def _exp(self, e: Exp) -> str:
        return f"exp({self.closed(e.arg)})"

    def _log(self, e: Log) -> str:
        if _is_atomic(e.arg) or isinstance(e.arg, Sum):
            return f"log {self(e.arg)}"
        return f"log{self.paren(self.closed(e.arg))}"

    def _func(self, e: Func) -> str:
        return f"{_GREEK.get(e.name, e.name)}({self.closed(e.arg)})"

    def _sum(self, e: Sum) -> str:
        return f"Σ_{e.index} {self.child(e.body, MUL)}"

    def _delta(self, e: Delta) -> str:
        return f"δ_{e.a}{e.b}"

    def _deriv(self, e: Deriv) -> str:
        if _is_atomic(e.f):
            return f"∂{self.closed(e.f)}/∂{self.closed(e.v)}"
        return f"∂/∂{self.closed(e.v)} [{self.closed(e.f)}]"

    def _transpose(self, e: Transpose) -> str:
        return f"{self.child(e.arg, ATOM)}ᵀ"

    def _hadamard(self, e: Hadamard) -> str:
        return f"{self.child(e.a, MUL + 1, False)} ⊙ {self.child(e.b, MUL + 1)}"

    def _kron(self, e: Kron) -> str:
        return f"{self.child(e.a, MUL + 1, False)} ⊗ {self.child(e.b, MUL + 1)}"

    def _ones(self, e: Ones) -> str:
        return "𝟏"

    def _paren(self, e: Paren) -> str:
        return self.paren(self.closed(e.arg))

    def _eye(self, e: Eye) -> str:
        return "I"


def to_latex(e: Expr) -> str:
    """``e`` in LaTeX (a fresh printer per call: the printers keep state while they walk)."""
    return LatexPrinter()(e)


def to_text(e: Expr) -> str:
    """``e`` in Unicode for a terminal."""
    return TextPrinter()(e)
