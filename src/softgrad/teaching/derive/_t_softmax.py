"""Topics on softmax itself: its Jacobian, log_softmax, logsumexp, temperature, Hessian..."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np

from ...core import softmax as np_softmax
from ...core import softmax_jacobian, softmax_vjp
from ._expr import Ones, Paren, d, delta, diag, hadamard, summation, sym
from ._notation import VEC_G, VEC_S, VEC_X, S, Z, ex, g, x
from ._spec import Definition, Quantity, StepSpec, TopicSpec


def softmax_definition(ctx_key: str = "S") -> Definition:
    return Definition(S("i"), ex("i") / Z(), (("i", "n"),), check=lambda ctx: ctx.values[ctx_key])


def logits_context(n: int, *, with_g: bool = False) -> Any:
    """x (logits) and S = softmax(x); optionally a cotangent g."""
    from . import _sympy as Y

    xs = Y.vector("x", n)
    gs = Y.vector("g", n)
    symbols = {"x": xs, **({"g": gs} if with_g else {})}

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        point = {s: Y.log_of_rational(rng) for s in xs}
        point.update(zip(gs, Y.rationals(rng, n), strict=True))
        return point

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {"x": 2 * rng.standard_normal(n), "g": rng.standard_normal(n)}

    return Y.Context(
        dims={"n": n},
        symbols=symbols,
        values={"x": xs, "S": Y.softmax(xs), "g": gs},
        sample=sample,
        floats=floats,
    )


def _jacobian(ctx: Any) -> Any:
    return ctx.values["S"].jacobian(ctx.symbols["x"])


def _diagonal(ctx: Any) -> Any:
    jac = _jacobian(ctx)
    return jac.diagonal().T


def _off_diagonal(ctx: Any) -> Any:
    jac = _jacobian(ctx).copy()
    for i in range(jac.rows):
        jac[i, i] = 0
    return jac


def _vjp(ctx: Any) -> Any:
    return (ctx.values["g"].T * _jacobian(ctx)).T


def _softmax_at(xv: Any) -> dict[str, Any]:
    where = f"At x = {tuple(xv.tolist())}:"
    return {"where": where, "x": xv, "S": np_softmax(xv), "jacobian": softmax_jacobian(xv)}


IJ = (("i", "n"), ("j", "n"))

J = Quantity(
    "jacobian",
    d(S("i"), x("j")),
    _jacobian,
    free=IJ,
    numeric=("softmax_jacobian", lambda p: softmax_jacobian(p["x"])),
)
J_DIAG = Quantity(
    "jacobian-diagonal", d(S("i"), x("i")), _diagonal, free=(("i", "n"),), part_of=J.key
)
J_OFF = Quantity(
    "jacobian-off-diagonal", d(S("i"), x("j")), _off_diagonal, free=IJ, distinct=("i", "j"), part_of=J.key
)
J_MATRIX = replace(J, lhs=d(VEC_S, VEC_X), free=())
VJP_ENTRY = Quantity(
    "vjp", sym("gJ", "j", tex=r"(g^\top J)", text="(gᵀJ)"), _vjp, free=(("j", "n"),)
)
VJP = replace(
    VJP_ENTRY,
    lhs=sym("gJ", tex=r"g^\top J", text="gᵀJ"),
    free=(),
    numeric=("softmax_vjp", lambda p: softmax_vjp(np_softmax(p["x"]), p["g"])),
)

SOFTMAX = TopicSpec(
    name="softmax",
    title="The derivative of softmax",
    summary="∂S_i/∂x_j = S_i(δ_ij − S_j): the quotient rule, the two cases, diag(S) − SSᵀ, the VJP",
    definitions=(softmax_definition(),),
    steps=(
        StepSpec(
            "quotient-rule",
            "quotient rule",
            "S_i is a quotient u/v with u = e^{x_i} and v = Σ_k e^{x_k}, so ∂S_i/∂x_j = (u'v − uv')/v². "
            "The numerator depends on x_j only when i = j (u' = δ_ij e^{x_i}); the denominator always "
            "does, through its term k = j (v' = e^{x_j}).",
            J,
            (delta("i", "j") * ex("i") * Z() - ex("i") * ex("j")) / Z() ** 2,
        ),
        StepSpec(
            "factor",
            "factor",
            "Take e^{x_i}/Σ_k e^{x_k} out of both terms of the numerator.",
            J,
            (ex("i") / Z()) * (delta("i", "j") - ex("j") / Z()),
        ),
        StepSpec(
            "delta-form",
            "definition of S",
            "Both fractions are softmax outputs: e^{x_i}/Σ_k e^{x_k} = S_i and e^{x_j}/Σ_k e^{x_k} = S_j. "
            "This one line holds for every pair i, j.",
            J,
            S("i") * (delta("i", "j") - S("j")),
        ),
        StepSpec(
            "case-i-eq-j",
            "Kronecker delta",
            "On the diagonal (i = j) the Kronecker delta is 1: raising x_i raises S_i.",
            J_DIAG,
            S("i") * (1 - S("i")),
        ),
        StepSpec(
            "case-i-ne-j",
            "Kronecker delta",
            "Off the diagonal (i ≠ j) the Kronecker delta is 0: raising x_j lowers every other S_i, "
            "because the probabilities must still sum to 1.",
            J_OFF,
            -(S("i") * S("j")),
        ),
        StepSpec(
            "matrix-form",
            "matrix form",
            "Collect the entries into the n × n Jacobian: the δ_ij S_i part is the diagonal matrix "
            "diag(S), the S_i S_j part is the outer product SSᵀ. J is symmetric and each row sums to 0.",
            J_MATRIX,
            diag(VEC_S) - VEC_S * VEC_S.T,
        ),
        StepSpec(
            "vjp-sum",
            "vector-Jacobian product",
            "Backpropagation needs gᵀJ for an incoming gradient g, not J itself: entry j is the sum "
            "over i of g_i times ∂S_i/∂x_j. (The quantity changes here: from J to gᵀJ.)",
            VJP_ENTRY,
            summation("i", g("i") * S("i") * (delta("i", "j") - S("j"))),
        ),
        StepSpec(
            "vjp-entry",
            "Kronecker delta",
            "The delta keeps only the term i = j of the first part; the second part is S_j times the "
            "weighted mean Σ_i g_i S_i.",
            VJP_ENTRY,
            S("j") * (g("j") - summation("i", g("i") * S("i"))),
        ),
        StepSpec(
            "vjp",
            "vector form",
            "In vectors: subtract the scalar gᵀS from every entry of g and multiply by S entrywise. "
            "That is O(n) work, where forming J and multiplying costs O(n²).",
            VJP,
            hadamard(VEC_S, VEC_G - Paren(VEC_G.T * VEC_S) * Ones()),
        ),
    ),
    result="matrix-form",
    context=lambda n: logits_context(n, with_g=True),
    at=_softmax_at,
)
