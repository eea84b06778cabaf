"""Topics on softmax itself: its Jacobian, log_softmax, logsumexp, temperature, Hessian..."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np

from ...core import log_softmax as np_log_softmax
from ...core import log_softmax_jacobian, log_softmax_vjp, softmax_jacobian, softmax_vjp
from ...core import logsumexp as np_logsumexp
from ...core import softmax as np_softmax
from ...core import softmax_hessian as np_softmax_hessian
from ._expr import Eye, Ones, Paren, d, delta, diag, exp, hadamard, log, summation, sym
from ._notation import VEC_G, VEC_S, VEC_X, S, Z, ex, g, x
from ._render import numbers_text
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
    where = f"At x = {numbers_text(xv)}:"
    return {"where": where, "x": xv, "S": np_softmax(xv), "jacobian": softmax_jacobian(xv)}


IJ = (("i", "n"), ("j", "n"))

J = Quantity(
    "jacobian",
    d(S("i"), x("j")),
    _jacobian,
    free=IJ,
    numeric=("softmax_jacobian", lambda p: softmax_jacobian(p["x"])),
)
J_DIAG = Quantity("jacobian-diagonal", d(S("i"), x("i")), _diagonal, free=(("i", "n"),), part_of=J.key)
J_OFF = Quantity(
    "jacobian-off-diagonal", d(S("i"), x("j")), _off_diagonal, free=IJ, distinct=("i", "j"), part_of=J.key
)
J_MATRIX = replace(J, lhs=d(VEC_S, VEC_X), free=())
VJP_ENTRY = Quantity("vjp", sym("gJ", "j", tex=r"(g^\top J)", text="(gᵀJ)"), _vjp, free=(("j", "n"),))
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
            "S_i is a quotient u/v with u = exp(x_i) and v = Σ_k exp(x_k), so ∂S_i/∂x_j = (u'v − uv')/v². "
            "The numerator depends on x_j only when i = j (u' = δ_ij exp(x_i)); the denominator always "
            "does, through its term k = j (v' = exp(x_j)).",
            J,
            (delta("i", "j") * ex("i") * Z() - ex("i") * ex("j")) / Z() ** 2,
        ),
        StepSpec(
            "factor",
            "factor",
            "Take exp(x_i)/Σ_k exp(x_k) out of both terms of the numerator: one factor of the squared "
            "denominator goes with it.",
            J,
            (ex("i") / Z()) * (delta("i", "j") - ex("j") / Z()),
        ),
        StepSpec(
            "delta-form",
            "definition of S",
            "Both fractions are softmax outputs: exp(x_i)/Σ_k exp(x_k) = S_i and "
            "exp(x_j)/Σ_k exp(x_k) = S_j. This one line holds for every pair i, j.",
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


# --- log_softmax --------------------------------------------------------------------------------

LOG_S = sym("logS", tex=r"\log S", text="log S")


def _log_values(ctx: Any) -> Any:
    import sympy as sp

    return ctx.values["S"].applyfunc(sp.log)


def _log_jacobian(ctx: Any) -> Any:
    return _log_values(ctx).jacobian(ctx.symbols["x"])


def _log_softmax_at(xv: Any) -> dict[str, Any]:
    return {
        "where": f"At x = {numbers_text(xv)}:",
        "x": xv,
        "log_softmax": np_log_softmax(xv),
        "jacobian": log_softmax_jacobian(xv),
    }


LOG_VALUE = Quantity(
    "log-softmax", log(S("i")), _log_values, free=(("i", "n"),), oracle="SymPy's log(softmax)"
)
LOG_J = Quantity(
    "log-jacobian",
    d(sym("logS", "i", tex=r"\log S", text="log S"), x("j")),
    _log_jacobian,
    free=IJ,
)
LOG_J_MATRIX = replace(
    LOG_J,
    lhs=d(LOG_S, VEC_X),
    free=(),
    numeric=("log_softmax_jacobian", lambda p: log_softmax_jacobian(p["x"])),
)
LOG_VJP = Quantity(
    "log-vjp",
    sym("gJ", tex=r"g^\top J", text="gᵀJ"),
    lambda ctx: (ctx.values["g"].T * _log_jacobian(ctx)).T,
    numeric=("log_softmax_vjp", lambda p: log_softmax_vjp(np_log_softmax(p["x"]), p["g"])),
)

LOG_SOFTMAX = TopicSpec(
    name="log_softmax",
    title="The derivative of log_softmax",
    summary="log S_i = x_i − log Σ_k exp(x_k), so ∂ log S_i/∂x_j = δ_ij − S_j",
    definitions=(softmax_definition(),),
    steps=(
        StepSpec(
            "log-of-quotient",
            "log of a quotient",
            "log(u/v) = log u − log v and log exp(x_i) = x_i. Compute log_softmax this way, never as "
            "log(softmax(x)): where S_i underflows to 0 the logarithm gives −inf, while "
            "x_i − log Σ_k exp(x_k) stays finite (x = (0, −1000) gives (0, −1000)).",
            LOG_VALUE,
            x("i") - log(Z()),
        ),
        StepSpec(
            "differentiate",
            "chain rule",
            "∂x_i/∂x_j = δ_ij. For log Σ_k exp(x_k) the chain rule gives 1/Σ_k exp(x_k) times the "
            "derivative of the sum, exp(x_j). (The quantity changes here: from log S_i to its "
            "derivative.)",
            LOG_J,
            delta("i", "j") - ex("j") / Z(),
        ),
        StepSpec(
            "delta-form",
            "definition of S",
            "exp(x_j)/Σ_k exp(x_k) is S_j. Compare softmax: ∂S_i/∂x_j = S_i(δ_ij − S_j) is S_i times "
            "this, as d(log S_i) = dS_i/S_i says.",
            LOG_J,
            delta("i", "j") - S("j"),
        ),
        StepSpec(
            "matrix-form",
            "matrix form",
            "All entries at once: the identity minus a matrix whose every row is Sᵀ. Unlike the "
            "softmax Jacobian it is not symmetric.",
            LOG_J_MATRIX,
            Eye() - Ones() * VEC_S.T,
        ),
        StepSpec(
            "vjp",
            "vector-Jacobian product",
            "Backpropagation: gᵀ(I − 𝟏Sᵀ) = gᵀ − (gᵀ𝟏)Sᵀ, i.e. subtract S scaled by the sum of g. "
            "O(n), no matrix. (The quantity changes here: from J to gᵀJ.)",
            LOG_VJP,
            VEC_G - Paren(Ones().T * VEC_G) * VEC_S,
        ),
    ),
    result="matrix-form",
    context=lambda n: logits_context(n, with_g=True),
    at=_log_softmax_at,
)


# --- logsumexp ----------------------------------------------------------------------------------

LSE = sym("lse", tex=r"\operatorname{lse}(x)", text="lse(x)")


def _lse(ctx: Any) -> Any:
    import sympy as sp

    return sp.log(sum(ctx.symbols["x"].applyfunc(sp.exp)))


def _lse_gradient(ctx: Any) -> Any:
    import sympy as sp

    return sp.Matrix([_lse(ctx)]).jacobian(ctx.symbols["x"]).T


def _lse_hessian(ctx: Any) -> Any:
    import sympy as sp

    return sp.hessian(_lse(ctx), ctx.symbols["x"])


def _logsumexp_at(xv: Any) -> dict[str, Any]:
    return {
        "where": f"At x = {numbers_text(xv)}:",
        "x": xv,
        "logsumexp": np_logsumexp(xv),
        "gradient": np_softmax(xv),
        "hessian": softmax_jacobian(xv),
    }


LSE_GRAD = Quantity(
    "lse-gradient",
    d(LSE, x("j")),
    _lse_gradient,
    free=(("j", "n"),),
    numeric=("softmax", lambda p: np_softmax(p["x"])),
)
LSE_HESS = Quantity(
    "lse-hessian",
    sym(
        "H",
        tex=r"\frac{\partial^2 \operatorname{lse}(x)}{\partial x_{i} \, \partial x_{j}}",
        text="∂²lse/∂x_i∂x_j",
    ),
    _lse_hessian,
    free=IJ,
    numeric=("softmax_jacobian", lambda p: softmax_jacobian(p["x"])),
)

LOGSUMEXP = TopicSpec(
    name="logsumexp",
    title="The gradient of logsumexp is softmax",
    summary="∂ lse(x)/∂x_j = S_j, and the Hessian of lse is the softmax Jacobian",
    definitions=(
        Definition(LSE, log(Z()), check=_lse),
        softmax_definition(),
    ),
    steps=(
        StepSpec(
            "chain-rule",
            "chain rule",
            "lse = log u with u = Σ_l exp(x_l): the derivative is (1/u) times ∂u/∂x_j, and only the "
            "term l = j of the sum depends on x_j.",
            LSE_GRAD,
            (1 / summation("l", ex("l"))) * summation("k", delta("k", "j") * ex("k")),
        ),
        StepSpec(
            "sift",
            "Kronecker delta",
            "The delta keeps the single term k = j of the sum.",
            LSE_GRAD,
            ex("j") / Z(),
        ),
        StepSpec(
            "softmax",
            "definition of S",
            "That quotient is softmax: the gradient of logsumexp is the softmax of the same logits. "
            "This is why softmax is called a smooth arg max: lse is a smooth max, S its gradient.",
            LSE_GRAD,
            S("j"),
        ),
        StepSpec(
            "hessian",
            "differentiate again",
            "The second derivatives of lse are the first derivatives of S. (The quantity changes "
            "here: from the gradient to the Hessian.)",
            LSE_HESS,
            d(S("j"), x("i")),
        ),
        StepSpec(
            "hessian-form",
            "softmax derivative",
            "Insert the softmax derivative: the Hessian of lse is the softmax Jacobian diag(S) − SSᵀ, "
            "a covariance matrix, positive semi-definite: lse is convex.",
            LSE_HESS,
            S("i") * (delta("i", "j") - S("j")),
        ),
    ),
    result="softmax",
    context=lambda n: logits_context(n),
    at=_logsumexp_at,
)


# --- softmax_hessian ----------------------------------------------------------------------------

IJK = (("i", "n"), ("j", "n"), ("k", "n"))


def _hessian(ctx: Any) -> Any:
    import sympy as sp

    S_, xs = ctx.values["S"], ctx.symbols["x"]
    n = len(xs)
    first = S_.jacobian(xs)  # SymPy's first derivatives, differentiated once more
    return sp.Matrix(n, n * n, lambda i, c: sp.diff(first[i, c // n], xs[c % n]))


def _hessian_at(xv: Any) -> dict[str, Any]:
    n = len(xv)
    return {
        "where": f"At x = {numbers_text(xv)} (the Hessian as n × n², row i, column j·n + k):",
        "x": xv,
        "S": np_softmax(xv),
        "hessian": np_softmax_hessian(xv).reshape(n, n * n),
    }


HESS = Quantity(
    "hessian",
    sym("H", tex=r"\frac{\partial^2 S_{i}}{\partial x_{j} \, \partial x_{k}}", text="∂²S_i/∂x_j∂x_k"),
    _hessian,
    free=IJK,
    numeric=("softmax_hessian", lambda p: np_softmax_hessian(p["x"])),
)

SOFTMAX_HESSIAN = TopicSpec(
    name="softmax_hessian",
    title="The second derivatives of softmax",
    summary="∂²S_i/∂x_j∂x_k = S_i[(δ_ij − S_j)(δ_ik − S_k) − S_j(δ_jk − S_k)]",
    definitions=(softmax_definition(),),
    steps=(
        StepSpec(
            "differentiate-jacobian",
            "softmax derivative",
            "Start from the first derivative ∂S_i/∂x_j = S_i(δ_ij − S_j) and differentiate it once "
            "more, with respect to x_k.",
            HESS,
            d(S("i") * (delta("i", "j") - S("j")), x("k")),
        ),
        StepSpec(
            "product-rule",
            "product rule",
            "(uv)' = u'v + uv' with u = S_i and v = δ_ij − S_j; the delta is a constant.",
            HESS,
            d(S("i"), x("k")) * (delta("i", "j") - S("j")) - S("i") * d(S("j"), x("k")),
        ),
        StepSpec(
            "substitute",
            "softmax derivative",
            "Both remaining derivatives are first derivatives of softmax: "
            "∂S_i/∂x_k = S_i(δ_ik − S_k) and ∂S_j/∂x_k = S_j(δ_jk − S_k).",
            HESS,
            S("i") * (delta("i", "k") - S("k")) * (delta("i", "j") - S("j"))
            - S("i") * S("j") * (delta("j", "k") - S("k")),
        ),
        StepSpec(
            "factor",
            "factor",
            "Take S_i out. The result is symmetric in j and k, and summing over i gives 0, since "
            "Σ_i S_i = 1 for every x.",
            HESS,
            S("i")
            * ((delta("i", "j") - S("j")) * (delta("i", "k") - S("k")) - S("j") * (delta("j", "k") - S("k"))),
        ),
    ),
    result="factor",
    context=lambda n: logits_context(n),
    at=_hessian_at,
)


# --- softmax_temperature ------------------------------------------------------------------------

TEMP = sym("T")


def temperature_context(n: int) -> Any:
    import sympy as sp

    from . import _sympy as Y

    xs = Y.vector("x", n)
    T = sp.Symbol("T", positive=True)

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        # T = 1/m keeps exp(x/T) = q^m rational
        return {**{s: Y.log_of_rational(rng) for s in xs}, T: sp.Rational(1, rng.randint(1, 3))}

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {"x": 2 * rng.standard_normal(n), "T": np.array([rng.uniform(0.5, 3.0)])}

    return Y.Context(
        dims={"n": n},
        symbols={"x": xs, "T": sp.Matrix([T])},
        values={"x": xs, "T": T, "S": Y.softmax(xs / T)},
        sample=sample,
        floats=floats,
    )


def _temperature_jacobian(ctx: Any) -> Any:
    return ctx.values["S"].jacobian(ctx.symbols["x"])


def _temperature_derivative(ctx: Any) -> Any:
    return ctx.values["S"].diff(ctx.values["T"])


def _dS_dT(p: dict[str, Any]) -> Any:
    """∂S/∂T from softgrad.softmax alone: central differences, Richardson-extrapolated."""
    x, t = p["x"], float(np.asarray(p["T"]).ravel()[0])

    def central(h: float) -> Any:
        return (np_softmax(x, temperature=t + h) - np_softmax(x, temperature=t - h)) / (2 * h)

    h = 1e-3 * t
    return (4 * central(h / 2) - central(h)) / 3


def _temperature_at(xv: Any) -> dict[str, Any]:
    t = 2.0
    s = np_softmax(xv, temperature=t)
    return {
        "where": f"At x = {numbers_text(xv)} and T = {t:g}:",
        "x": xv,
        "T": t,
        "S": s,
        "jacobian": softmax_jacobian(xv, temperature=t),
        "dS/dT": -s * (xv - s @ xv) / t**2,
    }


def _u(k: str) -> Any:
    return x(k) / TEMP


def ext(i: str) -> Any:
    """``e^{x_i/T}``."""
    return exp(x(i) / TEMP)


TJ = Quantity(
    "jacobian",
    d(S("i"), x("j")),
    _temperature_jacobian,
    free=IJ,
)
TJ_MATRIX = replace(
    TJ,
    lhs=d(VEC_S, VEC_X),
    free=(),
    numeric=("softmax_jacobian(temperature=T)", lambda p: softmax_jacobian(p["x"], temperature=p["T"][0])),
)
TD = Quantity(
    "temperature-derivative",
    d(S("i"), TEMP),
    _temperature_derivative,
    free=(("i", "n"),),
    numeric=("softmax (differences in T)", _dS_dT),
    tolerance=1e-8,
)

SOFTMAX_TEMPERATURE = TopicSpec(
    name="softmax_temperature",
    title="Softmax with a temperature",
    summary="S = softmax(x/T): ∂S/∂x = J/T and ∂S_i/∂T = −S_i(x_i − Σ_j S_j x_j)/T²",
    definitions=(
        Definition(S("i"), ext("i") / summation("k", ext("k")), (("i", "n"),), check=lambda c: c.values["S"]),
    ),
    steps=(
        StepSpec(
            "chain-rule",
            "chain rule",
            "S is softmax of u = x/T. The chain rule sums the softmax derivative with respect to u_k, "
            "S_i(δ_ik − S_k), times ∂u_k/∂x_j.",
            TJ,
            summation("k", S("i") * (delta("i", "k") - S("k")) * d(_u("k"), x("j"))),
        ),
        StepSpec(
            "inner-derivative",
            "derivative of x/T",
            "∂(x_k/T)/∂x_j is 1/T when k = j and 0 otherwise: δ_kj/T.",
            TJ,
            summation("k", S("i") * (delta("i", "k") - S("k")) * delta("k", "j") / TEMP),
        ),
        StepSpec(
            "sift",
            "Kronecker delta",
            "The delta keeps the term k = j: the softmax derivative at x/T, divided by T.",
            TJ,
            S("i") * (delta("i", "j") - S("j")) / TEMP,
        ),
        StepSpec(
            "scaled-jacobian",
            "matrix form",
            "The Jacobian is the usual one, at S = softmax(x/T), scaled by 1/T: a high temperature "
            "flattens S and shrinks the gradients, a low one sharpens both.",
            TJ_MATRIX,
            (diag(VEC_S) - VEC_S * VEC_S.T) / TEMP,
        ),
        StepSpec(
            "temperature-chain",
            "chain rule",
            "Now vary T instead: the same chain rule through u = x/T, with ∂u_k/∂T in place of "
            "∂u_k/∂x_j. (The quantity changes here: from ∂S/∂x to ∂S/∂T.)",
            TD,
            summation("k", S("i") * (delta("i", "k") - S("k")) * d(_u("k"), TEMP)),
        ),
        StepSpec(
            "temperature-inner",
            "derivative of x/T",
            "∂(x_k/T)/∂T = −x_k/T².",
            TD,
            summation("k", S("i") * (delta("i", "k") - S("k")) * (-(x("k") / TEMP**2))),
        ),
        StepSpec(
            "temperature-sift",
            "Kronecker delta",
            "The delta part gives x_i, the rest the S-weighted mean Σ_k S_k x_k: raising T moves "
            "probability from the logits above that mean to those below it.",
            TD,
            -(S("i") * (x("i") - summation("k", S("k") * x("k")))) / TEMP**2,
        ),
    ),
    result="scaled-jacobian",
    context=temperature_context,
    at=_temperature_at,
)
