"""Topics with weights: the softmax layer P = S(Wx), its cross-entropy, the policy gradient."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from ...core import log_softmax_jacobian
from ...core import softmax as np_softmax
from ...losses import dense_softmax_jacobian, linear_cross_entropy
from ._expr import Eye, Neg, Num, d, delta, diag, exp, kron, log, summation, sym
from ._notation import VEC_S, VEC_X, VEC_Y, S, x, y
from ._render import numbers_text
from ._spec import Definition, Quantity, StepSpec, TopicSpec
from ._t_losses import B_SAMPLES, L_BAR, MAT_X, MAT_Y, SIZE_B, SUM_Y, SUM_Y_TEX, L, target_text

N_INPUTS = 2  # the layer topics write the input out with N = 2 entries


def W(i: str, j: str) -> Any:
    return sym("W", i, j)


def z(k: str) -> Any:
    return sym("z", k)


P = sym("P")
VEC_W = sym("vecW", tex=r"\operatorname{vec}(W)", text="vec(W)")
MAT_W = sym("W")
MAT_V = sym("V")
MAT_SW = sym("SW", tex="S", text="S")  # B × T row softmaxes of X Wᵀ
MAT_SV = sym("SV", tex="S", text="S")  # B × T row softmaxes of X V


def _z_definition() -> Definition:
    return Definition(
        z("k"),
        summation("l", W("k", "l") * x("l"), "N"),
        (("k", "n"),),
        check=lambda c: c.symbols["W"] * c.symbols["x"],
    )


def layer_context(n: int, *, targets: bool = False) -> Any:
    """Weights W (T × N, T = n classes), input x (N), logits z = Wx held as their own symbols."""
    import sympy as sp

    from . import _sympy as Y

    xs, Ws = Y.vector("x", N_INPUTS), Y.matrix("W", n, N_INPUTS)
    zs = Y.vector("z", n)
    ys = Y.vector("y", n)
    Xs, Ys = Y.matrix("X", B_SAMPLES, N_INPUTS), Y.matrix("Y", B_SAMPLES, n)
    Vs = Y.matrix("V", N_INPUTS, n)
    S_ = Y.softmax(zs)

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        # integer inputs and log-rational weights: exp(Wx) stays rational
        point: dict[Any, Any] = {s: sp.Integer(rng.choice([-2, -1, 1, 2, 3])) for s in [*xs, *Xs]}
        point.update({s: Y.log_of_rational(rng) for s in [*Ws, *Vs]})
        for row in [ys, *[Ys.row(b) for b in range(B_SAMPLES)]]:
            values = Y.simplex(rng, n) if SUM_Y in assumptions else Y.rationals(rng, n)
            point.update(zip(row, values, strict=True))
        return point

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {
            "x": rng.standard_normal(N_INPUTS),
            "W": rng.standard_normal((n, N_INPUTS)),
            "y": rng.dirichlet(np.ones(n)),
            "X": rng.standard_normal((B_SAMPLES, N_INPUTS)),
            "Y": rng.dirichlet(np.ones(n), size=B_SAMPLES),
            "V": rng.standard_normal((N_INPUTS, n)),
        }

    symbols = {"x": xs, "W": Ws}
    if targets:
        symbols.update({"y": ys, "X": Xs, "Y": Ys, "V": Vs})
    return Y.Context(
        dims={"n": n, "N": N_INPUTS, "B": B_SAMPLES},
        symbols=symbols,
        values={
            "x": xs,
            "W": Ws,
            "z": zs,
            "S": S_,
            "P": S_,
            "y": ys,
            "L": -sp.Add(*[yk * sp.log(sk) for yk, sk in zip(ys, S_, strict=True)]),
            "X": Xs,
            "Y": Ys,
            "V": Vs,
            "SW": Y.rows_softmax(Xs * Ws.T),
            "SV": Y.rows_softmax(Xs * Vs),
            "B": sp.Integer(B_SAMPLES),
        },
        sample=sample,
        floats=floats,
        intermediates=dict(zip(zs, Ws * xs, strict=True)),
    )


def fixed_weights(n_classes: int, n_inputs: int) -> Any:
    """The weights the layer topics use with ``--at``: small, fixed, all different."""
    t, j = np.meshgrid(np.arange(n_classes), np.arange(n_inputs), indexing="ij")
    return ((t + 1) * (j + 2) % 5 - 2) / 2.0


def _weights_text(w: Any, given: bool, b: Any) -> str:
    which = "the weights W" if given else "derive's example weights W"
    bias = "" if b is None else " and the bias b"
    return f"T = {w.shape[0]} classes, {which}{bias} below"


def _layer_logits(xv: Any, w: Any, b: Any) -> dict[str, Any]:
    """``{"z = Wx": ...}``, or with a bias ``{"b": b, "z = Wx + b": ...}``: the layer's logits."""
    if b is None:
        return {"z = Wx": w @ xv}
    return {"b": b, "z = Wx + b": w @ xv + b}


def _layer_at(xv: Any, W: Any = None, b: Any = None) -> dict[str, Any]:
    w = fixed_weights(3, len(xv)) if W is None else W
    logits = _layer_logits(xv, w, b)
    return {
        "where": f"At x = {numbers_text(xv)}, with {_weights_text(w, W is not None, b)}:",
        "x": xv,
        "W": w,
        **logits,
        "S": np_softmax(list(logits.values())[-1]),
        "dP/dvec(W)": dense_softmax_jacobian(xv, w, b),
    }


# --- softmax_layer ------------------------------------------------------------------------------


def _layer_jacobian(ctx: Any) -> Any:
    from ._sympy import softmax

    Ws, xs = ctx.symbols["W"], ctx.symbols["x"]
    return softmax(Ws * xs).jacobian(list(Ws))  # list(W) is row-major: W_00, W_01, W_10, ...


JW = Quantity(
    "layer-jacobian",
    d(sym("P", "t"), W("i", "j")),
    _layer_jacobian,
    free=(("t", "n"), ("i", "n"), ("j", "N")),
)
JW_MATRIX = Quantity(
    "layer-jacobian",
    d(P, VEC_W),
    _layer_jacobian,
    numeric=("dense_softmax_jacobian", lambda p: dense_softmax_jacobian(p["x"], p["W"])),
)

SOFTMAX_LAYER = TopicSpec(
    name="softmax_layer",
    title="The softmax layer P = S(Wx) with respect to W",
    summary="∂P_t/∂W_ij = S_t(δ_ti − S_i)x_j: the T × NT Jacobian, W flattened row-major (column i·N + j)",
    definitions=(
        _z_definition(),
        Definition(
            sym("P", "t"),
            exp(z("t")) / summation("k", exp(z("k"))),
            (("t", "n"),),
            check=lambda c: c.values["S"],
        ),
    ),
    steps=(
        StepSpec(
            "chain-rule",
            "chain rule",
            "W reaches P only through the logits z = Wx: sum over every logit z_k the derivative of "
            "P_t with respect to z_k times the derivative of z_k with respect to W_ij.",
            JW,
            summation("k", d(sym("P", "t"), z("k")) * d(z("k"), W("i", "j"))),
        ),
        StepSpec(
            "inner-derivatives",
            "softmax derivative",
            "The first factor is the softmax Jacobian S_t(δ_tk − S_k). The second: z_k = Σ_l W_kl x_l "
            "contains W_ij only if k = i, with coefficient x_j, so ∂z_k/∂W_ij = δ_ki x_j.",
            JW,
            summation("k", S("t") * (delta("t", "k") - S("k")) * delta("k", "i") * x("j")),
        ),
        StepSpec(
            "sift",
            "Kronecker delta",
            "The delta δ_ki keeps the term k = i.",
            JW,
            S("t") * (delta("t", "i") - S("i")) * x("j"),
        ),
        StepSpec(
            "layout",
            "Kronecker product",
            "To write all T·N·T numbers as a matrix, flatten W row by row: W_ij becomes entry i·N + j "
            "of vec(W). Then ∂z/∂vec(W) = I_T ⊗ xᵀ (T × NT) and the Jacobian is the T × T softmax "
            "Jacobian times it: T rows, NT columns, column i·N + j holding S_t(δ_ti − S_i)x_j.",
            JW_MATRIX,
            (diag(VEC_S) - VEC_S * VEC_S.T) * kron(Eye("n"), VEC_X.T),
        ),
    ),
    result="sift",
    context=lambda n: layer_context(n),
    at=_layer_at,
    options=("W", "b"),
)


# --- cross_entropy_layer ------------------------------------------------------------------------


def _layer_loss(S_: Any, y_: Any) -> Any:
    """−Σ_t y_t log S_t; SymPy's own expand_log turns log(e^z/Σ) into z − log Σ (far faster to
    differentiate, and the identity is SymPy's, not a step of ours)."""
    import sympy as sp

    return -sp.Add(*[yk * sp.expand_log(sp.log(sk), force=True) for yk, sk in zip(y_, S_, strict=True)])


def _grad(f: Any, v: Any) -> Any:
    import sympy as sp

    return sp.Matrix(v.rows, v.cols, lambda r, c: sp.diff(f, v[r, c]))


def _loss_gradient_W(ctx: Any) -> Any:
    from ._sympy import softmax

    Ws, xs = ctx.symbols["W"], ctx.symbols["x"]
    return _grad(_layer_loss(softmax(Ws * xs), ctx.symbols["y"]), Ws)


def _batch_loss(SX: Any, Y_: Any) -> Any:
    return sum((_layer_loss(SX.row(b), Y_.row(b)) for b in range(SX.rows)), 0) / SX.rows


def _batch_gradient_W(ctx: Any) -> Any:
    return _grad(_batch_loss(ctx.values["SW"], ctx.values["Y"]), ctx.symbols["W"])


def _batch_gradient_V(ctx: Any) -> Any:
    return _grad(_batch_loss(ctx.values["SV"], ctx.values["Y"]), ctx.symbols["V"])


def _dW(x_: Any, w: Any, target: Any, b: Any = None) -> Any:
    return linear_cross_entropy(x_, w, target, b, return_grad=True)[1][1]


def _ce_layer_at(xv: Any, target: Any = None, W: Any = None, b: Any = None) -> dict[str, Any]:
    w = fixed_weights(3, len(xv)) if W is None else W
    yv = np.eye(w.shape[0])[0] if target is None else target
    logits = _layer_logits(xv, w, b)
    return {
        "where": f"At x = {numbers_text(xv)}, {target_text(yv)}, {_weights_text(w, W is not None, b)}:",
        "x": xv,
        "W": w,
        **logits,
        "y": yv,
        "S": np_softmax(list(logits.values())[-1]),
        "dL/dW": _dW(xv, w, yv, b),
    }


GW = Quantity("loss-gradient", d(L, W("i", "j")), _loss_gradient_W, free=(("i", "n"), ("j", "N")))
GW_Y1 = Quantity("loss-gradient", GW.lhs, _loss_gradient_W, free=GW.free, assumes=(SUM_Y,))
GW_MATRIX = Quantity(
    "loss-gradient",
    d(L, MAT_W),
    _loss_gradient_W,
    numeric=("linear_cross_entropy (dW)", lambda p: _dW(p["x"], p["W"], p["y"])),
    assumes=(SUM_Y,),
)
GW_BATCH = Quantity(
    "batch-gradient",
    d(L_BAR, MAT_W),
    _batch_gradient_W,
    numeric=("linear_cross_entropy (dW, mean)", lambda p: _dW(p["X"], p["W"], p["Y"])),
    assumes=(SUM_Y,),
)
GV_BATCH = Quantity(
    "batch-gradient-XV",
    d(L_BAR, MAT_V),
    _batch_gradient_V,
    numeric=("linear_cross_entropy (dW, mean)ᵀ", lambda p: _dW(p["X"], p["V"].T, p["Y"]).T),
    assumes=(SUM_Y,),
)

CROSS_ENTROPY_LAYER = TopicSpec(
    name="cross_entropy_layer",
    title="Cross-entropy of the softmax layer with respect to W",
    summary="∂L/∂W = (S − y)xᵀ; batched (S − Y)ᵀX/B; and the Wx versus XW conventions",
    definitions=(
        Definition(L, Neg(summation("t", y("t") * log(S("t")))), check=lambda c: c.values["L"]),
        _z_definition(),
        Definition(
            S("t"), exp(z("t")) / summation("k", exp(z("k"))), (("t", "n"),), check=lambda c: c.values["S"]
        ),
    ),
    steps=(
        StepSpec(
            "chain-rule",
            "chain rule",
            "W reaches L only through the logits z = Wx: sum ∂L/∂z_t times ∂z_t/∂W_ij over the T logits.",
            GW,
            summation("t", d(L, z("t")) * d(z("t"), W("i", "j"))),
        ),
        StepSpec(
            "logit-gradient",
            "cross-entropy gradient",
            "∂L/∂z_t = S_t − y_t (topic cross_entropy, where Σ_t y_t = 1 is used) and ∂z_t/∂W_ij = δ_ti x_j.",
            GW_Y1,
            summation("t", (S("t") - y("t")) * delta("t", "i") * x("j")),
        ),
        StepSpec(
            "sift",
            "Kronecker delta",
            "The delta keeps the term t = i: row i of W gets the error of class i times the input.",
            GW_Y1,
            (S("i") - y("i")) * x("j"),
        ),
        StepSpec(
            "outer-product",
            "outer product",
            "Entry (i, j) is (S_i − y_i) x_j: the outer product of the error S − y (T entries) and the "
            "input x (N entries), a T × N matrix, the shape of W. No T × NT Jacobian is needed.",
            GW_MATRIX,
            (VEC_S - VEC_Y) * VEC_X.T,
        ),
        StepSpec(
            "batch",
            "linearity (batch mean)",
            "For a batch, the inputs are the rows of X (B × N) and S, Y are B × T. The mean loss "
            "averages the per-sample outer products; Σ_b (S_b − y_b) x_bᵀ is the matrix product "
            "(S − Y)ᵀX. (The quantity changes here: from one sample to the batch mean.)",
            GW_BATCH,
            (MAT_SW - MAT_Y).T * MAT_X / SIZE_B,
        ),
        StepSpec(
            "convention",
            "transpose (XW convention)",
            "Code that stores the weights as V = Wᵀ (N × T) computes the logits as XV and gets "
            "∂L̄/∂V = Xᵀ(S − Y)/B, the transpose of the above. Same numbers, transposed layout: "
            "mixing the two conventions is a common source of shape errors. (The quantity changes here.)",
            GV_BATCH,
            MAT_X.T * (MAT_SV - MAT_Y) / SIZE_B,
        ),
    ),
    result="outer-product",
    context=lambda n: layer_context(n, targets=True),
    at=_ce_layer_at,
    assumptions={SUM_Y: SUM_Y_TEX},
    options=("target", "W", "b"),
)


# --- policy_gradient ----------------------------------------------------------------------------

N_FEATURES = 2


def phi(a: str, m: str) -> Any:
    return sym("phi", a, m, tex_fmt=r"\phi_{{{1}}}(s, {0})", text_fmt="φ_{1}(s, {0})")


def score(a: str) -> Any:
    """``θᵀφ(s, a)``."""
    return sym("h", a, tex_fmt=r"\theta^\top \phi(s, {0})", text_fmt="θᵀφ(s, {0})")


def pi(a: str) -> Any:
    return sym("pi", a, tex_fmt=r"\pi({0} \mid s)", text_fmt="π({0}|s)")


def policy_context(n: int) -> Any:
    import sympy as sp

    from . import _sympy as Y

    theta = Y.vector("theta", N_FEATURES)
    Phi = Y.matrix("phi", n, N_FEATURES)
    h = Phi * theta
    pis = Y.softmax(h)

    def sample(rng: random.Random, assumptions: tuple[str, ...]) -> dict[Any, Any]:
        point: dict[Any, Any] = {s: Y.log_of_rational(rng) for s in theta}
        point.update({s: sp.Integer(rng.randint(-2, 2)) for s in Phi})
        return point

    def floats(rng: np.random.Generator) -> dict[str, Any]:
        return {"theta": rng.standard_normal(N_FEATURES), "phi": rng.standard_normal((n, N_FEATURES))}

    return Y.Context(
        dims={"n": n, "d": N_FEATURES},
        symbols={"theta": theta, "phi": Phi},
        values={"theta": theta, "phi": Phi, "h": h, "pi": pis},
        sample=sample,
        floats=floats,
    )


def _log_pi(ctx: Any) -> Any:
    import sympy as sp

    return ctx.values["pi"].applyfunc(sp.log)


def _score_gradient(ctx: Any) -> Any:
    return _log_pi(ctx).jacobian(ctx.symbols["theta"])


def _expected_score(ctx: Any) -> Any:
    return (ctx.values["pi"].T * _score_gradient(ctx)).T


def _softgrad_score(p: dict[str, Any]) -> Any:
    """∇_θ log π from softgrad: the log_softmax Jacobian of the logits Φθ, times Φ."""
    return log_softmax_jacobian(p["phi"] @ p["theta"]) @ p["phi"]


def _policy_at(theta: Any) -> dict[str, Any]:
    n = 3
    features = fixed_weights(n, len(theta))
    logits = features @ theta
    p = np_softmax(logits)
    return {
        "where": f"At θ = {numbers_text(theta)}, with 3 actions whose features φ(s, a) are the rows below:",
        "theta": theta,
        "phi": features,
        "pi": p,
        "grad log pi (row a)": features - p @ features,
    }


LOG_PI = Quantity(
    "log-pi",
    sym("logpi", "a", tex_fmt=r"\log \pi({0} \mid s)", text_fmt="log π({0}|s)"),
    _log_pi,
    free=(("a", "n"),),
    oracle="SymPy's log(softmax(Φθ))",
)
SCORE = Quantity(
    "score",
    sym(
        "dlogpi",
        "a",
        "m",
        tex_fmt=r"\frac{{\partial \log \pi({0} \mid s)}}{{\partial \theta_{{{1}}}}}",
        text_fmt="∂log π({0}|s)/∂θ_{1}",
    ),
    _score_gradient,
    free=(("a", "n"), ("m", "d")),
    numeric=("log_softmax_jacobian (times Φ)", _softgrad_score),
)
MEAN_SCORE = Quantity(
    "mean-score",
    sym(
        "Escore",
        "m",
        tex_fmt=r"\sum_{{a}} \pi(a \mid s) \, "
        r"\frac{{\partial \log \pi(a \mid s)}}{{\partial \theta_{{{0}}}}}",
        text_fmt="Σ_a π(a|s)·∂log π(a|s)/∂θ_{0}",
    ),
    _expected_score,
    free=(("m", "d"),),
)

POLICY_GRADIENT = TopicSpec(
    name="policy_gradient",
    title="The score of a linear softmax policy",
    summary="π(a|s) ∝ exp(θᵀφ(s,a)): ∇_θ log π(a|s) = φ(s,a) − Σ_b π(b|s)φ(s,b)",
    definitions=(
        Definition(
            pi("a"),
            exp(score("a")) / summation("b", exp(score("b"))),
            (("a", "n"),),
            check=lambda c: c.values["pi"],
        ),
        Definition(
            score("a"),
            summation("m", sym("theta", "m", tex=r"\theta", text="θ") * phi("a", "m"), "d"),
            (("a", "n"),),
            check=lambda c: c.values["h"],
        ),
    ),
    steps=(
        StepSpec(
            "log-policy",
            "log of a quotient",
            "The policy is a softmax of the scores θᵀφ(s, b), so its log is the score minus the "
            "log-normalizer (topic log_softmax).",
            LOG_PI,
            score("a") - log(summation("b", exp(score("b")))),
        ),
        StepSpec(
            "chain-rule",
            "chain rule",
            "∂(θᵀφ(s, a))/∂θ_m = φ_m(s, a). The log-normalizer gives, by the chain rule, 1/Σ_b exp(...) "
            "times the sum of exp(θᵀφ(s, b)) φ_m(s, b). (The quantity changes here: to the gradient.)",
            SCORE,
            phi("a", "m")
            - (1 / summation("c", exp(score("c")))) * summation("b", exp(score("b")) * phi("b", "m")),
        ),
        StepSpec(
            "expectation",
            "definition of π",
            "exp(θᵀφ(s, b))/Σ_c exp(θᵀφ(s, c)) is π(b|s): the score is the feature vector of the action "
            "taken minus the features the policy expects, φ(s, a) − E_{b∼π}[φ(s, b)].",
            SCORE,
            phi("a", "m") - summation("b", pi("b") * phi("b", "m")),
        ),
        StepSpec(
            "expected-score",
            "expectation over a",
            "Average the score over the actions the policy itself takes. (The quantity changes here.)",
            MEAN_SCORE,
            summation("a", pi("a") * (phi("a", "m") - summation("b", pi("b") * phi("b", "m")))),
        ),
        StepSpec(
            "expand",
            "linearity",
            "Multiply out: the second part does not depend on a, so Σ_a π(a|s) comes out as a factor.",
            MEAN_SCORE,
            summation("a", pi("a") * phi("a", "m"))
            - summation("a", pi("a")) * summation("b", pi("b") * phi("b", "m")),
        ),
        StepSpec(
            "zero-mean",
            "Σ π = 1",
            "Σ_a π(a|s) = 1 makes the two parts equal: the expected score is 0. That is why a "
            "baseline b(s) can be subtracted from the return without biasing the policy gradient.",
            MEAN_SCORE,
            Num(0),
            rule_tex=r"\textstyle\sum_a \pi(a \mid s) = 1",
        ),
    ),
    result="expectation",
    context=policy_context,
    at=_policy_at,
)
