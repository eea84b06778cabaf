"""SymPy's reading of the formula trees: a step's formula, written out for ``n`` classes.

Imported only by ``concrete()`` and ``verify()``: printing a derivation never loads SymPy.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from . import _expr as E
from ._spec import Quantity


@dataclass
class Context:
    """A topic written out for one size.

    ``symbols`` are the public inputs (``x``, ``y``, ``W``...), ``values`` binds every name a
    formula uses (``S`` is the softmax of ``x`` written in those symbols), ``dims`` the sizes
    the indices run over. ``intermediates`` maps stand-in symbols (``z = Wx``) to their values,
    substituted after differentiating. ``sample(rng, assumptions)`` gives an exact point (SymPy
    numbers) satisfying the named assumptions; ``floats(rng)`` a float point for NumPy, keyed by
    the names of ``symbols``.
    """

    dims: dict[str, int]
    symbols: dict[str, sp.Matrix]
    values: dict[str, Any]
    sample: Callable[[random.Random, tuple[str, ...]], dict[sp.Symbol, Any]]
    floats: Callable[[Any], dict[str, Any]]
    intermediates: dict[sp.Symbol, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def reference(self, q: Quantity) -> Any:
        """SymPy's independent computation of ``q``, computed once per context."""
        if q.key not in self.cache:
            value = q.reference(self)
            value = value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])
            self.cache[q.key] = value.xreplace(self.intermediates) if self.intermediates else value
        return self.cache[q.key]


def evaluate(e: E.Expr, ctx: Context, index: dict[str, int]) -> Any:
    return _RULES[type(e)](e, ctx, index)


def _scalar(v: Any) -> Any:
    if isinstance(v, sp.MatrixBase) and v.shape == (1, 1):
        return v[0, 0]
    return v


def _sym(e: E.Sym, ctx: Context, index: dict[str, int]) -> Any:
    value = ctx.values[e.key]
    if not e.idx:
        return value
    pos = [index[i] if i in index else int(i) for i in e.idx]
    if len(pos) == 1 and isinstance(value, sp.MatrixBase):
        return value[pos[0]]  # flat position: a column vector's entry
    return value[tuple(pos)]


def _mul(e: E.Mul, ctx: Context, index: dict[str, int]) -> Any:
    out = evaluate(e.factors[0], ctx, index)
    for f in e.factors[1:]:
        out = _scalar(out * evaluate(f, ctx, index))
    return out


def _add(e: E.Add, ctx: Context, index: dict[str, int]) -> Any:
    out = evaluate(e.terms[0], ctx, index)
    for t in e.terms[1:]:
        out = out + evaluate(t, ctx, index)
    return out


def _sum(e: E.Sum, ctx: Context, index: dict[str, int]) -> Any:
    terms = [evaluate(e.body, ctx, {**index, e.index: k}) for k in range(ctx.dims[e.dim])]
    return sp.Add(*terms) if not isinstance(terms[0], sp.MatrixBase) else sum(terms[1:], terms[0])


def _deriv(e: E.Deriv, ctx: Context, index: dict[str, int]) -> Any:
    f = evaluate(e.f, ctx, index)
    v = evaluate(e.v, ctx, index)
    if v in ctx.intermediates:  # ∂S_t/∂z_k: z held as its own variable
        return sp.diff(f, v)
    return sp.diff(sp.sympify(f).xreplace(ctx.intermediates), v)


_FUNCS: dict[str, Callable[[Any], Any]] = {
    "sigma": lambda a: 1 / (1 + sp.exp(-a)),
    "softplus": lambda a: sp.log(1 + sp.exp(a)),
    "diag": lambda a: sp.diag(*a),
}

_RULES: dict[type, Callable[[Any, Context, dict[str, int]], Any]] = {
    E.Num: lambda e, c, i: (
        sp.Rational(e.value.numerator, e.value.denominator)
        if not isinstance(e.value, int)
        else sp.Integer(e.value)
    ),
    E.Sym: _sym,
    E.Add: _add,
    E.Mul: _mul,
    E.Div: lambda e, c, i: evaluate(e.num, c, i) / _scalar(evaluate(e.den, c, i)),
    E.Neg: lambda e, c, i: -evaluate(e.arg, c, i),
    E.Pow: lambda e, c, i: evaluate(e.base, c, i) ** evaluate(e.exp, c, i),
    E.Exp: lambda e, c, i: sp.exp(evaluate(e.arg, c, i)),
    E.Log: lambda e, c, i: sp.log(evaluate(e.arg, c, i)),
    E.Func: lambda e, c, i: _FUNCS[e.name](evaluate(e.arg, c, i)),
    E.Sum: _sum,
    E.Delta: lambda e, c, i: sp.Integer(int(i[e.a] == i[e.b])),
    E.Deriv: _deriv,
    E.Transpose: lambda e, c, i: evaluate(e.arg, c, i).T,
    E.Hadamard: lambda e, c, i: evaluate(e.a, c, i).multiply_elementwise(evaluate(e.b, c, i)),
    E.Kron: lambda e, c, i: sp.kronecker_product(evaluate(e.a, c, i), evaluate(e.b, c, i)),
    E.Paren: lambda e, c, i: evaluate(e.arg, c, i),
    E.Ones: lambda e, c, i: sp.ones(c.dims[e.dim], 1),
    E.Eye: lambda e, c, i: sp.eye(c.dims[e.dim]),
}


def instantiate(expr: E.Expr, q: Quantity | Any, ctx: Context) -> Any:
    """The formula ``expr`` for quantity ``q``, as a SymPy Matrix in the context's symbols."""
    free = getattr(q, "free", ())
    if not free:
        value = evaluate(expr, ctx, {})
        value = value if isinstance(value, sp.MatrixBase) else sp.Matrix([[value]])
    else:
        names = [name for name, _ in free]
        sizes = [ctx.dims[dim] for _, dim in free]
        value = sp.zeros(sizes[0], math.prod(sizes[1:]))
        distinct = getattr(q, "distinct", None)
        for combo in itertools.product(*map(range, sizes)):
            index = dict(zip(names, combo, strict=True))
            if distinct and index[distinct[0]] == index[distinct[1]]:
                continue
            column = 0
            for k, size in zip(combo[1:], sizes[1:], strict=True):
                column = column * size + k
            value[combo[0], column] = evaluate(expr, ctx, index)
    return value.xreplace(ctx.intermediates) if ctx.intermediates else value


# --- helpers for the topics -------------------------------------------------------------------


def vector(name: str, n: int, **assumptions: Any) -> sp.Matrix:
    return sp.Matrix(sp.symbols(f"{name}0:{n}", real=True, **assumptions))


def matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda r, c: sp.Symbol(f"{name}{r}{c}", real=True))


def softmax(z: sp.Matrix) -> sp.Matrix:
    e = z.applyfunc(sp.exp)
    return e / sum(e)


def rows_softmax(Z: sp.Matrix) -> sp.Matrix:
    return sp.Matrix.vstack(*[softmax(Z.row(r).T).T for r in range(Z.rows)])


def log_of_rational(rng: random.Random) -> Any:
    """log(q) for a random rational q: exp() of it is exact, so the checks stay rational."""
    return sp.log(sp.Rational(rng.randint(1, 9), rng.randint(1, 9)))


def simplex(rng: random.Random, n: int) -> list[Any]:
    """n positive rationals summing to 1."""
    w = [rng.randint(1, 9) for _ in range(n)]
    return [sp.Rational(v, sum(w)) for v in w]


def rationals(rng: random.Random, n: int) -> list[Any]:
    return [sp.Rational(rng.randint(-9, 9), rng.randint(1, 5)) for _ in range(n)]
