"""Topics on losses built on softmax: cross-entropy, the softmax layer, the policy gradient."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np

from ...core import softmax as np_softmax
from ...losses import cross_entropy as np_cross_entropy
from ...losses import cross_entropy_grad
from ._expr import Neg, d, delta, log, summation, sym
from ._notation import VEC_S, VEC_X, VEC_Y, S, x, y
from ._render import numbers_text
from ._spec import Definition, Quantity, StepSpec, TopicSpec
from ._t_softmax import softmax_definition

B_SAMPLES = 2  # the batch size the batch steps are written out for
SUM_Y = "sum_y"
SUM_Y_TEX = r"\textstyle\sum_k y_k = 1"

L = sym("L")
L_BAR = sym("Lbar", tex=r"\bar L", text="L̄")
MAT_S = sym("SX", tex="S", text="S")  # the B × n matrix of row softmaxes
MAT_X = sym("X")
MAT_Y = sym("Y")
SIZE_B = sym("B")


def _loss(S_: Any, y_: Any) -> Any:
    import sympy as sp

    return -sp.Add(*[yk * sp.log(sk) for yk, sk in zip(y_, S_, strict=True)])


def targets_context(n: int) -> Any:
    """Logits x, targets y, and a batch X, Y of B_SAMPLES rows."""
    import sympy as sp

    from . import _sympy as Y

    xs, ys = Y.vector("x", n), Y.vector("y", n)
    Xs, Ys = Y.matrix("X", B_SAMPLES, n), Y.matrix("Y", B_SAMPLES, n)

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        point = {s: Y.log_of_rational(rng) for s in [*xs, *Xs]}
        on_simplex = SUM_Y in assumptions
        for row in [ys, *[Ys.row(b) for b in range(B_SAMPLES)]]:
            values = Y.simplex(rng, n) if on_simplex else Y.rationals(rng, n)
            point.update(zip(row, values, strict=True))
        return point

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {
            "x": 2 * rng.standard_normal(n),
            "y": rng.dirichlet(np.ones(n)),
            "X": 2 * rng.standard_normal((B_SAMPLES, n)),
            "Y": rng.dirichlet(np.ones(n), size=B_SAMPLES),
        }

    S_ = Y.softmax(xs)
    return Y.Context(
        dims={"n": n, "B": B_SAMPLES},
        symbols={"x": xs, "y": ys, "X": Xs, "Y": Ys},
        values={
            "x": xs,
            "y": ys,
            "S": S_,
            "L": _loss(S_, ys),
            "X": Xs,
            "Y": Ys,
            "SX": Y.rows_softmax(Xs),
            "B": sp.Integer(B_SAMPLES),
        },
        sample=sample,
        floats=floats,
    )


def _gradient(ctx: Any) -> Any:
    return _grad(ctx.values["L"], ctx.symbols["x"])


def _grad(f: Any, v: Any) -> Any:
    import sympy as sp

    return sp.Matrix(v.rows, v.cols, lambda r, c: sp.diff(f, v[r, c]))


def _batch_gradient(ctx: Any) -> Any:
    X, Y_, SX = ctx.values["X"], ctx.values["Y"], ctx.values["SX"]
    mean = sum((_loss(SX.row(b), Y_.row(b)) for b in range(X.rows)), 0) / X.rows
    return _grad(mean, X)


def target_text(yv: Any) -> str:
    """``target class 2 (y = e_2)`` for a one-hot ``yv``, ``soft targets y = (...)`` otherwise."""
    hot = np.flatnonzero(yv)
    if len(hot) == 1 and yv[hot[0]] == 1.0:
        return f"target class {hot[0]} (y = e_{hot[0]})"
    return f"soft targets y = {numbers_text(yv)}"


def _cross_entropy_at(xv: Any, target: Any = None) -> dict[str, Any]:
    yv = np.eye(len(xv))[0] if target is None else target
    return {
        "where": f"At x = {numbers_text(xv)} with {target_text(yv)}:",
        "x": xv,
        "y": yv,
        "S": np_softmax(xv),
        "loss": np_cross_entropy(xv, yv),
        "gradient": cross_entropy_grad(xv, yv),
    }


GRAD = Quantity("gradient", d(L, x("j")), _gradient, free=(("j", "n"),))
GRAD_Y1 = replace(GRAD, assumes=(SUM_Y,))
GRAD_VEC = replace(
    GRAD_Y1,
    lhs=d(L, VEC_X),
    free=(),
    numeric=("cross_entropy_grad", lambda p: cross_entropy_grad(p["x"], p["y"])),
)
GRAD_BATCH = Quantity(
    "batch-gradient",
    d(L_BAR, MAT_X),
    _batch_gradient,
    numeric=("cross_entropy_grad", lambda p: cross_entropy_grad(p["X"], p["Y"])),
    assumes=(SUM_Y,),
)

CROSS_ENTROPY = TopicSpec(
    name="cross_entropy",
    title="The gradient of cross-entropy",
    summary="L = −Σ_k y_k log S_k: the chain rule, the cancellation Σ_k y_k = 1, S − y, (S − Y)/B",
    definitions=(
        Definition(L, Neg(summation("k", y("k") * log(S("k")))), check=lambda ctx: ctx.values["L"]),
        softmax_definition(),
    ),
    steps=(
        StepSpec(
            "chain-rule",
            "chain rule",
            "L depends on x_j only through the probabilities S_k, and d(log u) = du/u: sum the "
            "derivative of −y_k log S_k with respect to S_k times ∂S_k/∂x_j over every k.",
            GRAD,
            Neg(summation("k", (y("k") / S("k")) * d(S("k"), x("j")))),
        ),
        StepSpec(
            "softmax-derivative",
            "softmax derivative",
            "Insert the softmax derivative ∂S_k/∂x_j = S_k(δ_kj − S_j) (topic softmax).",
            GRAD,
            Neg(summation("k", (y("k") / S("k")) * S("k") * (delta("k", "j") - S("j")))),
        ),
        StepSpec(
            "cancel",
            "cancel S_k",
            "The S_k of the derivative cancels the 1/S_k of the logarithm: no division by a "
            "probability is left, so nothing blows up when S_k is tiny.",
            GRAD,
            Neg(summation("k", y("k") * (delta("k", "j") - S("j")))),
            rule_tex=r"\text{cancel } S_k",
        ),
        StepSpec(
            "sift",
            "Kronecker delta",
            "Split the sum: the delta keeps only k = j of the first part, giving −y_j; S_j does not "
            "depend on k and comes out of the second.",
            GRAD,
            S("j") * summation("k", y("k")) - y("j"),
        ),
        StepSpec(
            "sum-y-is-one",
            "Σ y = 1",
            "The targets are a probability distribution (a one-hot label or soft labels), so "
            "Σ_k y_k = 1. Without this step you are left with S_j Σ_k y_k − y_j, which is only "
            "S_j − y_j when the targets sum to one.",
            GRAD_Y1,
            S("j") - y("j"),
            rule_tex=r"\textstyle\sum_k y_k = 1",
        ),
        StepSpec(
            "result",
            "vector form",
            "All entries at once: the gradient of cross-entropy with respect to the logits is the "
            "prediction minus the target.",
            GRAD_VEC,
            VEC_S - VEC_Y,
        ),
        StepSpec(
            "batch-mean",
            "linearity (batch mean)",
            "For a batch of B rows (logits X, targets Y, row-wise softmax S) the loss is the mean "
            "L̄ = (1/B) Σ_b L_b. Row b of X appears only in L_b, so its gradient is (S_b − y_b)/B. "
            "(The quantity changes here: from one sample to the batch mean.)",
            GRAD_BATCH,
            (MAT_S - MAT_Y) / SIZE_B,
        ),
    ),
    result="result",
    context=targets_context,
    at=_cross_entropy_at,
    options=("target",),
    assumptions={SUM_Y: SUM_Y_TEX},
)
