r"""The catalog of mistakes: one record each, with the predicate that tests its signature.

The records are data: an id, a title, the kinds it applies to, how it is detected, an
explanation, the fix and the derivation step it gets wrong, as ``(topic, key)`` of
:func:`softgrad.derive`. ``matches(analysis)`` returns the evidence, or None. Most mistakes are
recognized through the candidates of :mod:`._kinds` (a function with the mistake returns what the
mistaken variant computes); the overflow and underflow mistakes through the edge probes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._analysis import Analysis, Candidate, EdgeCheck, align

ALL_KINDS = (
    "softmax",
    "log_softmax",
    "softmax_jacobian",
    "softmax_backward",
    "cross_entropy_grad",
    "layer_grad_W",
)


@dataclass(frozen=True)
class Evidence:
    """What shows a mistake: a one-paragraph summary, the probe, and the numbers."""

    summary: str
    probe: str | None = None
    numbers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """One entry of the catalog."""

    id: str
    title: str
    kinds: tuple[str, ...]
    signature: str
    explanation: str
    fix: str
    step: tuple[str, str] | None
    matches: Callable[[Analysis], Evidence | None]


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def _by_candidate(mistake: str) -> Callable[[Analysis], Evidence | None]:
    """Evidence when the identified candidate contains ``mistake``."""

    def matches(a: Analysis) -> Evidence | None:
        cand = a.candidate
        if cand is None or mistake not in cand.mistakes:
            return None
        without = _without(a, cand, mistake)
        o = _telling_probe(a, cand, without)
        c, w = a.evaluate(cand, o.probe), a.evaluate(without, o.probe)
        formula = " and ".join(cand.labels(mistake))
        others = [m for m in cand.mistakes if m != mistake]
        also = f" (together with {', '.join(others)})" if others else ""
        numbers: dict[str, Any] = {
            "formula": formula,
            "combined_with": others,
            "regular_probes_matched": len(a.regular),
        }
        pair = align(c, w)
        assert o.output is not None
        if pair is None:
            head = np.array2string(np.ravel(o.output)[:4], precision=4, separator=", ")
            where = f"it returns shape {o.output.shape} (first entries {head}) where {w.shape} belongs"
            numbers |= {"shape": list(o.output.shape), "expected_shape": list(w.shape)}
        else:
            cc, ww = np.atleast_1d(pair[0]), np.atleast_1d(pair[1])
            i = np.unravel_index(int(np.argmax(np.abs(cc - ww))), cc.shape)
            uu = np.atleast_1d(align(o.output, c)[0])  # type: ignore[index]
            idx = tuple(int(k) for k in i)
            numbers |= {"index": list(idx), "yours": _round(uu[i]), "formula_value": _round(cc[i])}
            numbers["without_this_mistake" if others else "exact"] = _round(ww[i])
            right = "without this mistake" if others else "the exact answer"
            where = f"at entry {idx}: yours {uu[i]:.6g}, that formula {cc[i]:.6g}, {right} {ww[i]:.6g}"
        summary = (
            f"Your answers match «{formula}»{also} on all {len(a.regular)} regular probes. "
            f"On probe '{o.probe.name}' ({o.probe.what}) {where}."
        )
        return Evidence(summary, o.probe.name, numbers)

    return matches


def _without(a: Analysis, cand: Candidate, mistake: str) -> Candidate:
    """The candidate with the variants of ``mistake`` put right (the exact answer if it is alone)."""
    choice = tuple(0 if v.mistake == mistake else c for v, c in zip(cand.variants, cand.choice, strict=True))
    return Candidate(choice, tuple(s[k] for s, k in zip(a.kind.stages, choice, strict=True)))


def _telling_probe(a: Analysis, cand: Candidate, without: Candidate) -> Any:
    """The first regular probe (simplest first) where ``mistake`` clearly changes the answer."""
    gaps = []
    for o in a.regular:
        pair = align(a.evaluate(cand, o.probe), a.evaluate(without, o.probe))
        gaps.append(np.inf if pair is None else float(np.max(np.abs(pair[0] - pair[1]), initial=0.0)))
    top = max(gaps)
    return next(o for o, g in zip(a.regular, gaps, strict=True) if g >= 0.25 * top)


def _edges(verdict: str) -> Callable[[Analysis], list[EdgeCheck]]:
    return lambda a: [e for e in a.edges if e.verdict == verdict]


def _edge_evidence(verdict: str, why: str) -> Callable[[Analysis], Evidence | None]:
    def matches(a: Analysis) -> Evidence | None:
        # the probes that prove the mistake (every probability moderate) first
        hits = sorted(_edges(verdict)(a), key=lambda e: e.obs.probe.edge != "overflow")
        if not hits:
            return None
        lines = [
            f"'{e.obs.probe.name}' ({e.obs.probe.what}, {np.dtype(e.obs.probe.dtype).name}): {e.detail}"
            for e in hits[:3]
        ]
        more = f" (and {len(hits) - 3} more probes)" if len(hits) > 3 else ""
        ok = [e.obs.probe.name for e in a.edges if e.verdict == "ok"]
        summary = f"{why} On " + "; on ".join(lines) + more + "."
        if ok:
            summary += f" Right on {', '.join(ok)}."
        numbers = {"probes": [e.obs.probe.name for e in hits], "details": [e.detail for e in hits]}
        return Evidence(summary, hits[0].obs.probe.name, numbers)

    return matches


def _unrecognized(a: Analysis) -> Evidence | None:
    edge = [e for e in a.edges if e.verdict == "mismatch" and e.mismatch is not None]
    if a.candidate is None and a.worst is not None:
        m, against = a.worst, "the exact answer"
    elif edge:
        m = max((e.mismatch for e in edge if e.mismatch), key=lambda m: m.max_rel)
        against = "the exact answer" if a.candidate is None else "what the mistakes found would give"
    else:
        return None
    if m.shape:
        summary = f"On probe '{m.probe.name}' ({m.probe.what}) your function {m.shape}."
    else:
        summary = (
            f"On probe '{m.probe.name}' ({m.probe.what}) your answer differs from {against} by up to "
            f"{m.max_abs:.3g} (relative {m.max_rel:.3g}; tolerance {m.tolerance:.2g}), most at entry "
            f"{m.index}: yours {m.user:.6g}, expected {m.reference:.6g}."
        )
    numbers = {
        "index": list(m.index),
        "yours": m.user,
        "expected": m.reference,
        "max_abs_error": m.max_abs,
        "max_rel_error": m.max_rel,
        "tolerance": m.tolerance,
        "shape": m.shape,
        "failing_regular_probes": list(a.failing),
    }
    return Evidence(summary, m.probe.name, numbers)


def _raised(a: Analysis) -> Evidence | None:
    overflowed = {e.obs.probe.name for e in a.edges if e.verdict in ("overflow", "underflow")}
    bad = [o for o in a.observations if o.error is not None and o.probe.name not in overflowed]
    if not bad:
        return None
    shown = "; ".join(f"'{o.probe.name}' ({o.probe.what}): {o.error}" for o in bad[:3])
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    summary = f"It failed on {len(bad)} of {len(a.observations)} probes: {shown}{more}."
    return Evidence(
        summary, bad[0].probe.name, {"probes": [o.probe.name for o in bad], "errors": [o.error for o in bad]}
    )


def _mutates(a: Analysis) -> Evidence | None:
    bad = [o for o in a.observations if o.mutated]
    if not bad:
        return None
    o = bad[0]
    summary = (
        f"On probe '{o.probe.name}' it changed its argument(s) {', '.join(o.mutated)} in place "
        f"({len(bad)} probes in all): the caller's array is no longer what it passed."
    )
    return Evidence(
        summary, o.probe.name, {"probes": [b.probe.name for b in bad], "arguments": list(o.mutated)}
    )


_JAC = ("softmax_jacobian", "softmax_backward", "cross_entropy_grad", "layer_grad_W")
_LOSS = ("cross_entropy_grad", "layer_grad_W")

CATALOG: tuple[Mistake, ...] = (
    Mistake(
        "diagonal-only",
        "Only the diagonal of the Jacobian: S_i(1 − S_i), the −S_iS_j terms dropped",
        _JAC,
        "matches diag(S(1−S)), the vector S(1−S), S(1−S)⊙g, or −Y⊙(1−S) on every regular probe",
        "∂S_i/∂x_j is not zero for i ≠ j: raising x_j takes probability from every other class, "
        "∂S_i/∂x_j = −S_iS_j. Keeping only S_i(1 − S_i) treats softmax as if it were an elementwise "
        "sigmoid.",
        "J = np.diag(s) - np.outer(s, s) (per row of a batch: s[..., :, None] * eye - "
        "s[..., :, None] * s[..., None, :]); for a backward pass s * (g - (g * s).sum(-1, keepdims=True)).",
        ("softmax", "case-i-ne-j"),
        _by_candidate("diagonal-only"),
    ),
    Mistake(
        "summed-jacobian",
        "The derivative of Σ_i S_i, identically 0",
        _JAC,
        "returns (numerically) zero everywhere: Σ_i ∂S_i/∂x_j = 0, as a vector, a number, or a zero gradient",
        "Summing the Jacobian over i differentiates Σ_i S_i = 1, a constant, so every entry is 0 (up to "
        "rounding): 'all the partial derivatives approach 0', 'the gradient is always 0'. The gradient "
        "of a loss needs the upstream gradient g = ∂L/∂S, weighted, not the plain sum of the rows.",
        "Keep the full (n, n) Jacobian, or compute the vector-Jacobian product gᵀJ = s * (g - g·s) with "
        "the upstream gradient g.",
        ("softmax", "vjp-sum"),
        _by_candidate("summed-jacobian"),
    ),
    Mistake(
        "logits-for-probs",
        "The formula applied to the wrong input (logits where probabilities belong, or the reverse)",
        ("softmax_jacobian", "softmax_backward"),
        "with takes='probs' matches the logits formula applied to S (softmax(S) first); with "
        "takes='logits' matches diag(x) − x xᵀ: the answer changes when the logits are shifted",
        "J = diag(S) − S Sᵀ is written in the probabilities S, not in the logits. Feeding it the logits "
        "(or feeding the logits formula, which applies softmax first, the probabilities) computes the "
        "Jacobian at the wrong point. A tell-tale sign: the answer changes when a constant is added to "
        "the logits, though softmax does not.",
        "Match the convention to the input: from logits, s = softmax(x) first, then diag(s) - outer(s, s); "
        "from probabilities (the 'derivative from the activation'), use s as it is, with no softmax.",
        ("softmax", "delta-form"),
        _by_candidate("logits-for-probs"),
    ),
    Mistake(
        "no-max-shift",
        "No max-shift: exp overflows for large logits",
        ALL_KINDS,
        "exact on moderate logits, inf or NaN (or OverflowError) once a logit exceeds log(max float): "
        "709.78 in float64, 88.72 in float32",
        "exp(x) overflows to inf once x > 709.78 (float64) or 88.72 (float32), and inf/inf is NaN. "
        "Softmax is unchanged when the same constant is subtracted from every logit, so subtracting the "
        "row maximum costs nothing and makes the largest exponent exp(0) = 1.",
        "e = np.exp(x - x.max(axis=-1, keepdims=True)); s = e / e.sum(axis=-1, keepdims=True) "
        "(or use softgrad.softmax / scipy.special.softmax).",
        ("softmax_inverse", "shift-invariance"),
        _edge_evidence("overflow", "Once a logit exceeds log(max float), exp overflows."),
    ),
    Mistake(
        "log-of-softmax",
        "log(softmax(x)) instead of log_softmax: −inf once a gap exceeds about 745",
        ("log_softmax",),
        "−inf where the exact log-probability is below log(smallest subnormal): about −745 in float64, "
        "−103 in float32",
        "softmax underflows to exactly 0 for a class whose logit is more than about 745 (float64) below "
        "the largest, and log(0) = −inf, although the log-probability x_i − logsumexp(x) is a perfectly "
        "finite number. Taking the log of the quotient by hand avoids forming the tiny quotient at all.",
        "log_s = x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)) with "
        "m = x.max(-1, keepdims=True) (or softgrad.log_softmax / scipy.special.log_softmax).",
        ("log_softmax", "log-of-quotient"),
        _edge_evidence("underflow", "The exact log-probabilities are finite, yours are −inf."),
    ),
    Mistake(
        "double-softmax",
        "Softmax applied to probabilities: softmax(softmax(x))",
        (
            "softmax",
            "log_softmax",
            "softmax_jacobian",
            "softmax_backward",
            "cross_entropy_grad",
            "layer_grad_W",
        ),
        "matches the exact formula evaluated at softmax(softmax(x))",
        "Probabilities lie in [0, 1], so a second softmax squeezes them towards uniform: the loss can "
        "never drop below a floor and the gradients are too small. It happens when a model ends in a "
        "softmax layer and the loss (torch's cross_entropy, for one) applies softmax again.",
        "Apply softmax once: give the loss the raw logits (drop the softmax layer before a loss that "
        "takes logits), or use a loss that takes probabilities (NLL of log S).",
        ("cross_entropy", "chain-rule"),
        _by_candidate("double-softmax"),
    ),
    Mistake(
        "batch-scale",
        "Off by a constant factor: B, 1/B or 2",
        _LOSS,
        "matches the exact gradient times B, 1/B, 2 or 1/2 on the batched probes (B = 3 and 4)",
        "With reduction='mean' the loss is (1/B) Σ_b L_b, so every row of the gradient carries 1/B once; "
        "with 'sum' it carries no 1/B. Summing where the mean was meant gives B times the gradient, "
        "dividing by B twice (in the loss and again in the backward pass) gives 1/B times; a factor 2 "
        "comes from a squared-error habit.",
        "grad = (softmax(z) - Y) / B for the mean, (softmax(z) - Y) for the sum; divide by B in exactly "
        "one place.",
        ("cross_entropy", "batch-mean"),
        _by_candidate("batch-scale"),
    ),
    Mistake(
        "wrong-axis",
        "Normalized over the batch axis",
        ("softmax", "log_softmax", "softmax_backward", "cross_entropy_grad", "layer_grad_W"),
        "matches the formula with the sum taken over axis 0 (or over the whole batch) on the batched "
        "probes; right, or not tested, with a single row",
        "Each row is its own distribution: the denominator Σ_k e^{x_k} runs over the classes of one "
        "row. np.sum(e) without axis=-1 (or with axis=0) mixes the rows, which is invisible with B = 1.",
        "Reduce over the class axis with keepdims: e.sum(axis=-1, keepdims=True), "
        "x.max(axis=-1, keepdims=True).",
        ("softmax", "quotient-rule"),
        _by_candidate("wrong-axis"),
    ),
    Mistake(
        "cross-batch-jacobian",
        "One Jacobian over the flattened batch: cross-sample terms",
        ("softmax_backward",),
        "matches S ⊙ (g − Σ over all B·n entries of g S) on the batched probes",
        "The Jacobian of a batch is block diagonal: the softmax of one row does not depend on the logits "
        "of another. Building diag(s) − s sᵀ for the flattened (B·n) vector adds −S_{b,i}S_{c,j} terms "
        "between different rows b ≠ c.",
        "One (n, n) Jacobian per row (np.einsum('bi,ij->bij', s, eye) - np.einsum('bi,bj->bij', s, s)), or "
        "row-wise s * (g - (g * s).sum(axis=-1, keepdims=True)).",
        ("softmax", "matrix-form"),
        _by_candidate("cross-batch-jacobian"),
    ),
    Mistake(
        "sign-flipped",
        "The sign flipped: Y − S instead of S − Y",
        ("softmax_backward", "cross_entropy_grad", "layer_grad_W"),
        "matches the negated exact gradient",
        "∂L/∂z = S − Y for L = −Σ y_i log S_i: the minus sign of the loss cancels the one from "
        "differentiating. Y − S is the gradient of the log-likelihood, an ascent direction for the loss.",
        "grad = softmax(z) - Y (gradient descent then subtracts it: W -= lr * grad).",
        ("cross_entropy", "result"),
        _by_candidate("sign-flipped"),
    ),
    Mistake(
        "swapped-index",
        "The chain-rule indices mixed up: Σ_k S_k y_k − y_i",
        _LOSS,
        "matches Σ_k S_k Y_k − Y_i (the probability of the true class, minus the one-hot)",
        "The chain rule gives ∂L/∂z_i = Σ_k (−y_k/S_k) S_k(δ_ki − S_i) = −y_i + S_i Σ_k y_k. Swapping i and "
        "k in S_k(δ_ki − S_i) puts S_k where S_i belongs and yields Σ_k S_k y_k − y_i, the same number "
        "in every non-target entry.",
        "grad_i = S_i Σ_k y_k − y_i = S_i − y_i, since Σ_k y_k = 1.",
        ("cross_entropy", "sift"),
        _by_candidate("swapped-index"),
    ),
    Mistake(
        "upstream-ignored",
        "The upstream gradient returned unchanged, or ignored",
        ("softmax_backward", "cross_entropy_grad", "layer_grad_W"),
        "matches g itself, the Jacobian with no product (never uses g), or −Y/S = ∂L/∂S not pushed "
        "through softmax",
        "A backward pass multiplies the incoming gradient by the local Jacobian: ∂L/∂x = Jᵀ ∂L/∂S. "
        "Returning g skips the softmax; returning J (or something without g) drops the loss.",
        "dx = s * (g - (g * s).sum(axis=-1, keepdims=True)).",
        ("softmax", "vjp-sum"),
        _by_candidate("upstream-ignored"),
    ),
    Mistake(
        "jacobian-applied-twice",
        "The softmax Jacobian applied again after the fused S − Y",
        ("softmax_backward", "cross_entropy_grad", "layer_grad_W"),
        "matches J(S)(S − Y) (or J(J g) in a backward pass)",
        "S − Y is already the gradient with respect to the logits: it is the cross-entropy gradient "
        "pushed through softmax. Multiplying it by the softmax Jacobian once more differentiates the "
        "softmax twice (typically a softmax layer's backward after a fused softmax-cross-entropy loss).",
        "Use S − Y as ∂L/∂z directly; give the softmax layer's backward only when the loss takes "
        "probabilities.",
        ("cross_entropy", "result"),
        _by_candidate("jacobian-applied-twice"),
    ),
    Mistake(
        "transposed",
        "∂L/∂W transposed: (N, T) instead of (T, N)",
        ("layer_grad_W",),
        "matches the transpose of the exact gradient, of shape (N, T), or transposed values on a square W",
        "With logits z = X Wᵀ and W of shape (T, N), ∂L/∂W = (S − Y)ᵀ X has W's shape (T, N). Xᵀ(S − Y) "
        "is the gradient for the other convention, z = X W with W of shape (N, T).",
        "dW = (S - Y).T @ X / B, the same shape as W.",
        ("cross_entropy_layer", "convention"),
        _by_candidate("transposed"),
    ),
    Mistake(
        "unrecognized",
        "Wrong, with no known signature",
        ALL_KINDS,
        "differs from the exact answer beyond tolerance and matches no candidate (or is wrong on an edge "
        "probe in a way no mistake explains)",
        "The answer is wrong, but not in any of the ways this catalog knows. The evidence shows the probe "
        "and the entry where it is most wrong.",
        "Compare your function with softgrad's on that probe, entry by entry, and with the derivation "
        "(softgrad.derive).",
        None,
        _unrecognized,
    ),
    Mistake(
        "raised",
        "Raised an exception, returned no array, or ran out of time",
        ALL_KINDS,
        "the call raised, returned something that is not an array of numbers, or the time budget ran out",
        "The function must accept every input of its kind's calling convention (a single vector and a "
        "(B, n) batch where the kind allows one) and return an array.",
        "Read the error on the probe shown; support the batch shape or the dtype it failed on.",
        None,
        _raised,
    ),
    Mistake(
        "mutates-input",
        "Writes into its input arrays",
        ALL_KINDS,
        "a probe array differs from its copy after the call",
        "In-place updates such as x -= x.max() change the caller's logits: the next use of the same array "
        "(the loss, the next step of training) sees shifted or overwritten values.",
        "Make new arrays: x = x - x.max(axis=-1, keepdims=True) instead of x -= ...",
        None,
        _mutates,
    ),
)

CATALOG_BY_ID: dict[str, Mistake] = {m.id: m for m in CATALOG}
