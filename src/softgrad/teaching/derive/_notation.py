"""The letters the derivations are written in: ``S(i)`` is ``S_i``, ``Z`` is ``Σ_k e^{x_k}``."""

from __future__ import annotations

from ._expr import Expr, Sym, exp, summation, sym


def x(i: str) -> Sym:
    return sym("x", i)


def S(i: str = "") -> Sym:
    return sym("S", i) if i else sym("S")


def y(i: str = "") -> Sym:
    return sym("y", i) if i else sym("y")


def g(i: str = "") -> Sym:
    return sym("g", i) if i else sym("g")


def ex(i: str) -> Expr:
    """``e^{x_i}``."""
    return exp(x(i))


def Z(k: str = "k") -> Expr:
    """``Σ_k e^{x_k}``."""
    return summation(k, ex(k))


VEC_X = sym("x")
VEC_S = sym("S")
VEC_Y = sym("y")
VEC_G = sym("g")
