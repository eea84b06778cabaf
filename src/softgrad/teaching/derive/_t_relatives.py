"""Softmax's relatives: the sigmoid (two classes) and the inverse of softmax."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from ...core import logsumexp as np_logsumexp
from ...core import softmax as np_softmax
from ...core import softmax_jacobian
from ._expr import Num, d, exp, log, sigma, softplus, summation, sym
from ._notation import S, Z, ex, x
from ._render import numbers_text
from ._spec import Definition, Quantity, StepSpec, TopicSpec
from ._t_softmax import softmax_definition

# --- sigmoid ------------------------------------------------------------------------------------

Z_DIFF = sym("z")


def sigmoid_context(n: int) -> Any:
    import sympy as sp

    from . import _sympy as Y

    xs = Y.vector("x", n)
    z = sp.Symbol("z", real=True)

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        return {s: Y.log_of_rational(rng) for s in xs}

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {"x": 3 * rng.standard_normal(n)}

    return Y.Context(
        dims={"n": n},
        symbols={"x": xs},
        values={"x": xs, "S": Y.softmax(xs), "z": z},
        sample=sample,
        floats=floats,
        intermediates={z: xs[1] - xs[0]},
    )


def _log_one_plus_exp(z: Any) -> Any:
    """SymPy's log(e^0 + e^z), written from the definition of logsumexp."""
    import sympy as sp

    return sp.log(sp.exp(0) + sp.exp(z))


def _z_of(p: dict[str, Any]) -> float:
    return float(p["x"][1] - p["x"][0])


def _sigmoid_at(xv: Any) -> dict[str, Any]:
    if xv.shape != (2,):
        raise ValueError(f"at must hold the two logits (x_0, x_1) for topic 'sigmoid', got {len(xv)} numbers")
    z = float(xv[1] - xv[0])
    s = np_softmax(xv)
    return {
        "where": f"At x = {numbers_text(xv)}, z = x_1 − x_0 = {z:g}:",
        "x": xv,
        "z": z,
        "S": s,
        "sigma(z)": s[1],
        "dS_1/dx_1": softmax_jacobian(xv)[1, 1],
        "softplus(z)": np_logsumexp(np.array([0.0, z])),
    }


TWO_CLASS = Quantity("S1", S("1"), lambda ctx: ctx.values["S"][1], oracle="SymPy's softmax")
D_S1 = Quantity(
    "dS1",
    d(S("1"), x("1")),
    lambda ctx: ctx.values["S"][1].diff(ctx.symbols["x"][1]),
    numeric=("softmax_jacobian [1, 1]", lambda p: softmax_jacobian(p["x"])[1, 1]),
)
LSE_0Z = Quantity(
    "lse0z",
    sym("lse0z", tex=r"\operatorname{lse}(0, z)", text="lse(0, z)"),
    lambda ctx: _log_one_plus_exp(ctx.values["z"]),
    numeric=("logsumexp([0, z])", lambda p: np_logsumexp(np.array([0.0, _z_of(p)]))),
    oracle="SymPy's log(e^0 + e^z)",
)
D_SOFTPLUS = Quantity(
    "dsoftplus",
    d(softplus(Z_DIFF), Z_DIFF),
    lambda ctx: _log_one_plus_exp(ctx.values["z"]).diff(ctx.values["z"]),
    numeric=("softmax([0, z])[1]", lambda p: np_softmax(np.array([0.0, _z_of(p)]))[1]),
)

SIGMOID = TopicSpec(
    name="sigmoid",
    title="Two classes: softmax is the sigmoid",
    summary="S_1 = σ(x_1 − x_0), σ' = σ(1 − σ), and logsumexp(0, z) = softplus(z)",
    definitions=(
        softmax_definition(),
        Definition(sigma(Z_DIFF), 1 / (1 + exp(-Z_DIFF))),
        Definition(Z_DIFF, x("1") - x("0"), check=lambda ctx: ctx.values["z"]),
    ),
    steps=(
        StepSpec(
            "two-class",
            "two classes",
            "With n = 2 the sum in the denominator has two terms.",
            TWO_CLASS,
            ex("1") / (ex("0") + ex("1")),
        ),
        StepSpec(
            "divide",
            "divide by exp(x_1)",
            "Divide numerator and denominator by exp(x_1): only the difference of the logits is left.",
            TWO_CLASS,
            1 / (1 + exp(-(x("1") - x("0")))),
        ),
        StepSpec(
            "sigmoid",
            "definition of σ",
            "That is the logistic sigmoid σ(z) = 1/(1 + exp(−z)) of z = x_1 − x_0: logistic regression "
            "is softmax regression with two classes and one of the two weight vectors fixed at 0.",
            TWO_CLASS,
            sigma(Z_DIFF),
        ),
        StepSpec(
            "chain-rule",
            "chain rule",
            "S_1 depends on x_1 through z = x_1 − x_0, and ∂z/∂x_1 = 1. (The quantity changes here: "
            "from S_1 to its derivative.)",
            D_S1,
            d(sigma(Z_DIFF), Z_DIFF) * d(Z_DIFF, x("1")),
        ),
        StepSpec(
            "sigmoid-derivative",
            "derivative of σ",
            "σ'(z) = exp(−z)/(1 + exp(−z))², and exp(−z)/(1 + exp(−z)) = 1 − σ(z): σ' = σ(1 − σ).",
            D_S1,
            sigma(Z_DIFF) * (1 - sigma(Z_DIFF)),
        ),
        StepSpec(
            "same-as-softmax",
            "σ(z) = S_1",
            "The same as the softmax case i = j, S_i(1 − S_i): the sigmoid's derivative is a special "
            "case of the softmax Jacobian.",
            D_S1,
            S("1") * (1 - S("1")),
            rule_tex=r"\sigma(z) = S_1",
        ),
        StepSpec(
            "logsumexp-two",
            "definition of lse",
            "The normalizer of the two classes, shifted so that x_0 = 0: logsumexp of (0, z). "
            "(The quantity changes here: to the log-normalizer.)",
            LSE_0Z,
            log(exp(Num(0)) + exp(Z_DIFF)),
        ),
        StepSpec(
            "softplus",
            "definition of softplus",
            "exp(0) = 1, and log(1 + exp(z)) is the softplus function: the log-normalizer of two "
            "classes is softplus, a smooth max(0, z).",
            LSE_0Z,
            softplus(Z_DIFF),
        ),
        StepSpec(
            "softplus-derivative",
            "chain rule",
            "d log(1 + exp(z))/dz = exp(z)/(1 + exp(z)) = σ(z): as the gradient of logsumexp is "
            "softmax, the derivative of softplus is the sigmoid. (The quantity changes here.)",
            D_SOFTPLUS,
            sigma(Z_DIFF),
        ),
    ),
    result="sigmoid",
    context=sigmoid_context,
    at=_sigmoid_at,
    sizes=(2,),
)


# --- softmax_inverse ----------------------------------------------------------------------------

C = sym("c")
SUM_P = "sum_p"


def inverse_context(n: int) -> Any:
    import sympy as sp

    from . import _sympy as Y

    xs = Y.vector("x", n)
    ps = Y.vector("p", n, positive=True)
    c = sp.Symbol("c", real=True)

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        point = {s: Y.log_of_rational(rng) for s in [*xs, c]}
        w = Y.simplex(rng, n) if SUM_P in assumptions else [abs(v) + 1 for v in Y.rationals(rng, n)]
        point.update(zip(ps, w, strict=True))
        return point

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {
            "x": 2 * rng.standard_normal(n),
            "c": 5 * rng.standard_normal(1),
            "p": rng.dirichlet(np.ones(n)),
        }

    return Y.Context(
        dims={"n": n},
        symbols={"x": xs, "c": sp.Matrix([c]), "p": ps},
        values={"x": xs, "c": c, "p": ps, "S": Y.softmax(xs)},
        sample=sample,
        floats=floats,
    )


def _shifted(ctx: Any) -> Any:
    import sympy as sp

    from ._sympy import softmax

    return softmax(ctx.values["x"] + ctx.values["c"] * sp.ones(len(ctx.values["x"]), 1))


def _of_log_p(ctx: Any) -> Any:
    import sympy as sp

    from ._sympy import softmax

    p = ctx.values["p"]
    return softmax(p.applyfunc(sp.log) + ctx.values["c"] * sp.ones(len(p), 1))


def _log_softmax_values(ctx: Any) -> Any:
    import sympy as sp

    return ctx.values["S"].applyfunc(sp.log)


def _inverse_at(xv: Any) -> dict[str, Any]:
    s = np_softmax(xv)
    with np.errstate(divide="ignore"):
        log_s = np.log(s)
    return {
        "where": f"At x = {numbers_text(xv)}:",
        "x": xv,
        "S": s,
        "log S": log_s,
        "c = logsumexp(x)": np_logsumexp(xv),
        "log S + c": log_s + np_logsumexp(xv),
        "S(x - max x)": np_softmax(xv - np.max(xv)),
    }


SHIFTED = Quantity(
    "shifted",
    sym("Sc", "i", tex_fmt=r"S_{{{0}}}(x + c\mathbf{{1}})", text_fmt="S_{0}(x + c𝟏)"),
    _shifted,
    free=(("i", "n"),),
    numeric=("softmax(x + c)", lambda p: np_softmax(p["x"] + p["c"][0])),
    oracle="SymPy's softmax(x + c)",
)
LOG_P = Quantity(
    "log-S",
    log(S("i")),
    _log_softmax_values,
    free=(("i", "n"),),
    oracle="SymPy's log(softmax)",
)
LOGITS = Quantity("logits", x("i"), lambda ctx: ctx.values["x"], free=(("i", "n"),), oracle="x itself")
OF_LOG_P = Quantity(
    "of-log-p",
    sym("Sp", "i", tex_fmt=r"S_{{{0}}}(\log p + c\mathbf{{1}})", text_fmt="S_{0}(log p + c𝟏)"),
    _of_log_p,
    free=(("i", "n"),),
    oracle="SymPy's softmax(log p + c)",
)
OF_LOG_P_SIMPLEX = Quantity(
    "of-log-p",
    OF_LOG_P.lhs,
    _of_log_p,
    free=(("i", "n"),),
    numeric=("softmax(log p + c)", lambda p: np_softmax(np.log(p["p"]) + p["c"][0])),
    assumes=(SUM_P,),
    oracle=OF_LOG_P.oracle,
)


def _ec(k: str) -> Any:
    return exp(x(k) + C)


SOFTMAX_INVERSE = TopicSpec(
    name="softmax_inverse",
    title="Inverting softmax: only up to a constant",
    summary="S(x + c𝟏) = S(x), so x = log p + c: the logits are known only up to an additive constant",
    definitions=(softmax_definition(),),
    steps=(
        StepSpec(
            "shift",
            "definition of S",
            "Add the same constant c to every logit.",
            SHIFTED,
            _ec("i") / summation("k", _ec("k")),
        ),
        StepSpec(
            "factor-out",
            "exp(a + b) = exp(a) exp(b)",
            "Every exponential carries the same factor exp(c).",
            SHIFTED,
            (exp(C) * ex("i")) / (exp(C) * Z()),
            rule_tex=r"e^{a + b} = e^{a} e^{b}",
        ),
        StepSpec(
            "shift-invariance",
            "cancel exp(c)",
            "exp(c) cancels: softmax does not change when a constant is added to all logits. That is "
            "why subtracting max x first is free, and it is what keeps exp from overflowing: "
            "softmax(1000, 2000, 3000) = softmax(−2000, −1000, 0).",
            SHIFTED,
            S("i"),
            rule_tex=r"\text{cancel } e^{c}",
        ),
        StepSpec(
            "log-probabilities",
            "log of a quotient",
            "Take logarithms of p = S(x) to go back towards the logits. (The quantity changes here: "
            "to log S_i.)",
            LOG_P,
            x("i") - log(Z()),
        ),
        StepSpec(
            "inverse",
            "solve for x_i",
            "Solve for x_i. The second term is the same for every i, and p = S(x) alone does not tell "
            "it: the inverse is x = log p + c𝟏 for an unknown constant c (here c = logsumexp(x)).",
            LOGITS,
            log(S("i")) + log(Z()),
        ),
        StepSpec(
            "any-constant",
            "exp(log p) = p",
            "Check the other way round: any c gives back p. exp(log p_i + c) = exp(c) p_i, and exp(c) "
            "cancels. (The quantity changes here: to the softmax of log p + c.)",
            OF_LOG_P,
            sym("p", "i") / summation("k", sym("p", "k")),
            rule_tex=r"e^{\log p} = p",
        ),
        StepSpec(
            "sum-p-is-one",
            "Σ p = 1",
            "p is a probability vector, Σ_k p_k = 1: softmax(log p + c) = p for every c, so softmax "
            "maps every line x + c𝟏 to one point p.",
            OF_LOG_P_SIMPLEX,
            sym("p", "i"),
            rule_tex=r"\textstyle\sum_k p_k = 1",
        ),
    ),
    result="inverse",
    context=inverse_context,
    at=_inverse_at,
    assumptions={SUM_P: r"\textstyle\sum_k p_k = 1"},
)
