r"""What each kind of user function claims to compute.

A :class:`Kind` knows how to call the user's function on a :class:`Probe`, softgrad's exact
answer for that probe (the oracle), and the computation split into *stages*: the probabilities
the formula uses, the formula, then the output scale, sign and layout. Each stage lists its
correct variant first and then the mistaken variants, each tagged with the catalog id of the
mistake it makes. A candidate is one variant per stage; the candidates that are not the exact
answer are the numerical signatures of the catalog's mistakes and of their combinations.

Every stage function takes ``(probe, value)`` (the value of the stage before; ``None`` for the
first) and returns the stage's value, or ``None`` where the mistake makes no difference on that
probe (a normalization over the batch axis of an unbatched vector), which stands for the
correct variant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import core, losses

StageFn = Callable[["Probe", Any], "np.ndarray | None"]

TAKES = ("logits", "probs")
REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class Probe:
    """One input the user's function is run on.

    ``args`` are passed (as copies) to the function; ``data`` holds what the oracle and the
    candidates need (``x`` the logits, ``s`` their softmax, ``g``, ``y``, ``Y``, ``X``, ``W``).
    ``edge`` (see :func:`edge_of`) is ``None`` for a regular probe (moderate logits: the
    formula is identified on these), ``"overflow"`` where ``exp`` of a logit overflows in the
    probe's dtype but every probability is moderate, ``"large"`` where it overflows and some
    probability underflows, ``"gap"`` where a probability underflows only.
    """

    name: str
    what: str
    args: tuple[np.ndarray, ...]
    data: Mapping[str, Any]
    edge: str | None = None
    dtype: Any = np.float64
    names: tuple[str, ...] = ("x",)

    @property
    def magnitude(self) -> float:
        """The largest logit magnitude the user's function sees (1 for probabilities)."""
        if self.data.get("takes") == "probs":
            return 1.0
        return float(np.max(np.abs(self.data["x"])))


@dataclass(frozen=True)
class Variant:
    """One way to compute a stage: correct (``mistake is None``) or as a catalog mistake does."""

    mistake: str | None
    label: str
    fn: StageFn


@dataclass(frozen=True)
class Kind:
    """A kind of user function: its calling convention, probes, oracle and stages."""

    name: str
    convention: str
    probes: Callable[[str, str], list[Probe]]
    exact: Callable[[Probe], np.ndarray]
    natural: Callable[[Probe], float]
    stages: tuple[tuple[Variant, ...], ...]
    takes_probs: bool = False
    uses_reduction: bool = False


# --- the formulas, for any probability vector p (which need not be a softmax) -------------------


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def softmax(x: Any, axis: int | None = -1) -> np.ndarray:
    """softgrad's softmax in float64; ``axis=None`` normalizes over every entry."""
    x = _f64(x)
    if axis is None:
        return np.asarray(core.softmax(x.reshape(-1))).reshape(x.shape)
    return np.asarray(core.softmax(x, axis=axis))


def log_softmax(x: Any, axis: int | None = -1) -> np.ndarray:
    x = _f64(x)
    if axis is None:
        return np.asarray(core.log_softmax(x.reshape(-1))).reshape(x.shape)
    return np.asarray(core.log_softmax(x, axis=axis))


def jac(p: np.ndarray) -> np.ndarray:
    """``diag(p) - p pᵀ`` row by row: shape ``(..., n, n)``."""
    return p[..., :, None] * np.eye(p.shape[-1]) - p[..., :, None] * p[..., None, :]


def vjp(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``p ⊙ (g - g·p)`` row by row."""
    return p * (g - np.sum(g * p, axis=-1, keepdims=True))


def _batched(p: Probe) -> bool:
    return np.ndim(p.data["x"]) == 2


def _when_batched(f: StageFn) -> StageFn:
    """A batch-axis mistake: no different from the correct variant on an unbatched probe."""

    def stage(p: Probe, v: Any) -> np.ndarray | None:
        return f(p, v) if _batched(p) else None

    return stage


def _logits_for_probs(p: Probe, _: Any) -> np.ndarray:
    # takes="probs": the logits formula (softmax first) applied to s; takes="logits": the
    # formula in s applied to the logits themselves.
    return softmax(p.data["s"]) if p.data["takes"] == "probs" else _f64(p.data["x"])


def _double_softmax(p: Probe, _: Any) -> np.ndarray | None:
    return None if p.data.get("takes") == "probs" else softmax(softmax(p.data["x"]))


# The probabilities the formula uses: the first stage of every kind but log_softmax.
P_STAGE = (
    Variant(None, "S = softmax(x) over each row", lambda p, _: softmax(p.data["x"])),
    Variant("double-softmax", "softmax(softmax(x))", _double_softmax),
    Variant(
        "wrong-axis", "softmax over the batch axis 0", _when_batched(lambda p, _: softmax(p.data["x"], 0))
    ),
    Variant(
        "wrong-axis",
        "softmax over the whole batch at once",
        _when_batched(lambda p, _: softmax(p.data["x"], None)),
    ),
)
P_STAGE_TAKES = (
    Variant(None, "S (the probabilities)", lambda p, _: softmax(p.data["x"])),
    Variant(
        "logits-for-probs",
        "the formula at the wrong point: S replaced by softmax(S) (takes=probs) or by x (takes=logits)",
        _logits_for_probs,
    ),
    Variant("double-softmax", "softmax(softmax(x))", _double_softmax),
    Variant(
        "wrong-axis",
        "softmax over the batch axis 0",
        _when_batched(lambda p, _: None if p.data["takes"] == "probs" else softmax(p.data["x"], 0)),
    ),
)


def _identity(label: str = "unchanged") -> Variant:
    return Variant(None, label, lambda p, v: v)


# --- probes --------------------------------------------------------------------------------------

_RNG_SEED = 20261127


def _rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(_RNG_SEED)
    random = rng.normal(0.0, 2.0, 5)
    return {
        "random": random,
        "shifted": random + 7.5,
        "negative": random - 6.0,
        "ties": np.array([1.5, 1.5, -0.5, 1.5, 0.0]),
        "three": rng.normal(0.0, 2.0, 3),
        "batch-1": rng.normal(0.0, 2.0, (1, 5)),
        "batch-3": rng.normal(0.0, 2.0, (3, 5)) + np.array([[0.0], [5.0], [-3.0]]),
        "batch-4": np.vstack([rng.normal(0.0, 2.0, (3, 5)), [[0.5, 0.5, 0.5, -1.0, 0.5]]]),
    }


# (name, logits, dtype, what)
_EDGE_ROWS = (
    ("large-1000", [1000.0, 2000.0, 3000.0, 1500.0, 2500.0], np.float64, "logits 1000..3000"),
    ("large-close", [1000.0, 1001.5, 999.0, 1002.0, 1000.5], np.float64, "logits near 1000, gaps < 4"),
    ("gap-720", [0.0, 720.0, 1.0, -1.0, 2.0], np.float64, "one logit 720 above the others"),
    ("gap-800", [2.0, -800.0, 0.0, 1.0, -1.0], np.float64, "one logit 802 below the largest"),
    ("f32-large", [90.0, 91.5, 89.0, 92.0, 90.5], np.float32, "float32 logits near 90"),
    ("f32-gap-95", [0.0, 95.0, 1.0, -1.0, 2.0], np.float32, "float32, one logit 95 above"),
    ("f32-gap-120", [2.0, -120.0, 0.0, 1.0, -1.0], np.float32, "float32, one logit 122 below"),
)


def edge_of(x: np.ndarray) -> str | None:
    """How the logits ``x`` (in their own dtype) strain a naive softmax: see :class:`Probe`."""
    info = np.finfo(x.dtype)
    x = _f64(x)
    top = np.max(x, axis=-1, keepdims=True)
    # exp of the row maximum overflows (inf/inf) or underflows to 0 (0/0) without the shift
    overflow = bool(
        np.any(top > np.log(float(info.max))) or np.any(top < np.log(float(info.smallest_subnormal)))
    )
    gaps = x - top
    underflow = bool(np.min(gaps) < np.log(float(info.smallest_normal)))
    if overflow:
        return "large" if underflow else "overflow"
    return "gap" if underflow else None


_REGULAR_WHAT = {
    "random": "random logits",
    "shifted": "the random logits + 7.5 (same softmax)",
    "negative": "the random logits - 6 (same softmax)",
    "ties": "tied logits",
    "three": "3 random logits",
    "batch-1": "a batch of 1 row",
    "batch-3": "a batch of 3 rows, shifted apart",
    "batch-4": "a batch of 4 rows, one with ties",
}


def logit_probes(*, batched: bool, vectors: bool) -> list[tuple[str, str, np.ndarray, str | None]]:
    """``(name, what, logits, edge)`` for the softmax-like kinds."""
    out: list[tuple[str, str, np.ndarray]] = []
    for name, x in _rows().items():
        if (x.ndim == 1 and vectors) or (x.ndim == 2 and batched):
            out.append((name, _REGULAR_WHAT[name], x))
    if vectors:
        out += [(n, w, np.asarray(row, dtype=dt)) for n, row, dt, w in _EDGE_ROWS]
    if batched:
        random = _rows()["random"]
        for n, row, dt, w in _EDGE_ROWS:
            stacked = np.vstack([row, random, np.asarray(row)[::-1] - 1.0]).astype(dt)
            out.append((f"batch-{n}", f"3 rows: {w}, random, and reversed", stacked))
    return [(n, w, x, edge_of(x)) for n, w, x in out]


def _labels(x: np.ndarray, salt: int) -> np.ndarray:
    rng = np.random.default_rng(_RNG_SEED + salt)
    return np.asarray(rng.integers(0, x.shape[-1], size=x.shape[0]), dtype=np.int64)


def _one_hot(y: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[y]


def _upstream(x: np.ndarray, salt: int) -> np.ndarray:
    return np.random.default_rng(_RNG_SEED + 100 + salt).normal(size=x.shape).astype(x.dtype)


def reduction_factor(p: Probe) -> float:
    return 1.0 / p.data["B"] if p.data["reduction"] == "mean" else 1.0


def _exact_grad_rows(p: Probe) -> np.ndarray:
    return np.asarray(
        losses.cross_entropy_grad(_f64(p.data["x"]), p.data["y"], reduction=p.data["reduction"])
    )


# --- the formulas of the cross-entropy gradient (per row, before the batch reduction) ------------

_XENT_FORMULAS = (
    Variant(None, "S - Y", lambda p, s: s - p.data["Y"]),
    Variant(
        "swapped-index",
        "Σ_k S_k Y_k - Y_i",
        lambda p, s: np.sum(s * p.data["Y"], -1, keepdims=True) - p.data["Y"],
    ),
    Variant("jacobian-applied-twice", "J(S) (S - Y)", lambda p, s: vjp(s, s - p.data["Y"])),
    Variant("diagonal-only", "-Y ⊙ (1 - S) (only ∂S_i/∂z_i)", lambda p, s: -p.data["Y"] * (1.0 - s)),
    Variant("summed-jacobian", "0 (the derivative of Σ S_i)", lambda p, s: np.zeros_like(s)),
    Variant("upstream-ignored", "-Y / S (∂L/∂S, not pushed through softmax)", lambda p, s: -p.data["Y"] / s),
    Variant(
        "double-softmax",
        "J(S) (softmax(S) - Y), the gradient through a second softmax",
        lambda p, s: vjp(softmax(p.data["x"]), softmax(softmax(p.data["x"])) - p.data["Y"]),
    ),
)

_SCALES = (
    Variant(None, "the reduction's 1/B (mean) or 1 (sum)", lambda p, v: v * reduction_factor(p)),
    Variant("batch-scale", "the exact gradient times B", lambda p, v: v * reduction_factor(p) * p.data["B"]),
    Variant(
        "batch-scale", "the exact gradient divided by B", lambda p, v: v * reduction_factor(p) / p.data["B"]
    ),
    Variant("batch-scale", "the exact gradient times 2", lambda p, v: v * reduction_factor(p) * 2.0),
    Variant("batch-scale", "the exact gradient divided by 2", lambda p, v: v * reduction_factor(p) / 2.0),
)

_SIGNS = (
    _identity("sign kept"),
    Variant("sign-flipped", "the negated gradient (Y - S instead of S - Y)", lambda p, v: -v),
)


# --- the kinds -----------------------------------------------------------------------------------


def _softmax_probes(takes: str, reduction: str) -> list[Probe]:
    return [
        Probe(n, w, (x,), {"x": x, "takes": "logits"}, e, x.dtype)
        for n, w, x, e in logit_probes(batched=True, vectors=True)
    ]


SOFTMAX = Kind(
    name="softmax",
    convention="fn(x) returns softmax(x) over the last axis; x is (n,) or (B, n)",
    probes=_softmax_probes,
    exact=lambda p: softmax(p.data["x"]),
    natural=lambda p: 1.0,
    stages=(P_STAGE,),
)

_LOG_STAGE = (
    Variant(None, "log_softmax(x) over each row", lambda p, _: log_softmax(p.data["x"])),
    Variant("double-softmax", "log_softmax(softmax(x))", lambda p, _: log_softmax(softmax(p.data["x"]))),
    Variant(
        "wrong-axis",
        "log_softmax over the batch axis 0",
        _when_batched(lambda p, _: log_softmax(p.data["x"], 0)),
    ),
    Variant(
        "wrong-axis",
        "log_softmax over the whole batch",
        _when_batched(lambda p, _: log_softmax(p.data["x"], None)),
    ),
)

LOG_SOFTMAX = Kind(
    name="log_softmax",
    convention="fn(x) returns log_softmax(x) over the last axis; x is (n,) or (B, n)",
    probes=_softmax_probes,
    exact=lambda p: log_softmax(p.data["x"]),
    natural=lambda p: max(1.0, float(np.max(np.abs(log_softmax(p.data["x"]))))),
    stages=(_LOG_STAGE,),
)


def _v(takes: str) -> str:
    return "x" if takes == "logits" else "s"


def _jacobian_probes(takes: str, reduction: str) -> list[Probe]:
    probes = []
    for n, w, x, e in logit_probes(batched=False, vectors=True):
        s = softmax(x).astype(x.dtype)
        v = x if takes == "logits" else s
        edge = e if takes == "logits" else None
        what = w if takes == "logits" else f"S = softmax of {w}"
        probes.append(Probe(n, what, (v,), {"x": x, "s": s, "takes": takes}, edge, x.dtype, (_v(takes),)))
    return probes


SOFTMAX_JACOBIAN = Kind(
    name="softmax_jacobian",
    convention="fn(v) returns the (n, n) Jacobian dS_i/dx_j; v is the logits x or (takes='probs') S",
    probes=_jacobian_probes,
    exact=lambda p: np.asarray(core.softmax_jacobian(_f64(p.data["x"]))),
    natural=lambda p: 1.0,
    stages=(
        P_STAGE_TAKES[:3],  # one vector: no batch axis to confuse
        (
            Variant(None, "diag(S) - S Sᵀ", lambda p, s: jac(s)),
            Variant(
                "diagonal-only",
                "diag(S ⊙ (1 - S)), the off-diagonal dropped",
                lambda p, s: np.diag(s * (1 - s)),
            ),
            Variant("diagonal-only", "the vector S ⊙ (1 - S)", lambda p, s: s * (1 - s)),
            Variant("summed-jacobian", "the vector Σ_i ∂S_i/∂x_j = 0", lambda p, s: jac(s).sum(axis=0)),
            Variant(
                "summed-jacobian", "the number Σ_ij ∂S_i/∂x_j = 0", lambda p, s: np.asarray(jac(s).sum())
            ),
        ),
    ),
    takes_probs=True,
)


def _backward_probes(takes: str, reduction: str) -> list[Probe]:
    probes = []
    for i, (n, w, x, e) in enumerate(logit_probes(batched=True, vectors=True)):
        s = softmax(x).astype(x.dtype)
        g = _upstream(x, i)
        v = x if takes == "logits" else s
        edge = e if takes == "logits" else None
        what = w if takes == "logits" else f"S = softmax of {w}"
        data = {"x": x, "s": s, "g": g, "takes": takes}
        probes.append(Probe(n, what, (v, g), data, edge, x.dtype, (_v(takes), "g")))
    return probes


def _backward_natural(p: Probe) -> float:
    s, g = softmax(p.data["x"]), _f64(p.data["g"])
    return float(np.max(s * (np.abs(g) + np.abs(np.sum(g * s, axis=-1, keepdims=True)))))


def _g(p: Probe) -> np.ndarray:
    return _f64(p.data["g"])


def _through_two_softmaxes(p: Probe, _: Any) -> np.ndarray | None:
    if p.data["takes"] == "probs":
        return None
    s = softmax(p.data["x"])
    return vjp(s, vjp(softmax(s), _g(p)))


SOFTMAX_BACKWARD = Kind(
    name="softmax_backward",
    convention="fn(v, g) returns gᵀJ, the gradient w.r.t. the logits given g = dL/dS; v is x or S",
    probes=_backward_probes,
    exact=lambda p: np.asarray(core.softmax_vjp(softmax(p.data["x"]), _g(p))),
    natural=_backward_natural,
    stages=(
        P_STAGE_TAKES,
        (
            Variant(None, "S ⊙ (g - g·S)", lambda p, s: vjp(s, _g(p))),
            Variant("diagonal-only", "S ⊙ (1 - S) ⊙ g", lambda p, s: s * (1 - s) * _g(p)),
            Variant("summed-jacobian", "0 (the derivative of Σ S_i)", lambda p, s: np.zeros_like(s)),
            Variant("upstream-ignored", "g itself, passed through unchanged", lambda p, s: _g(p)),
            Variant("upstream-ignored", "the Jacobian itself, g never used", lambda p, s: jac(s)),
            Variant("jacobian-applied-twice", "J (J g)", lambda p, s: vjp(s, vjp(s, _g(p)))),
            Variant(
                "double-softmax", "J(S) J(softmax(S)) g, through a second softmax", _through_two_softmaxes
            ),
            Variant(
                "wrong-axis",
                "S ⊙ (g - Σ over the batch axis of g S)",
                _when_batched(lambda p, s: s * (_g(p) - np.sum(_g(p) * s, axis=0, keepdims=True))),
            ),
            Variant(
                "cross-batch-jacobian",
                "one (Bn × Bn) Jacobian of the flattened batch times g",
                _when_batched(lambda p, s: s * (_g(p) - np.sum(_g(p) * s))),
            ),
        ),
        _SIGNS,
    ),
    takes_probs=True,
)


def _xent_probes(takes: str, reduction: str) -> list[Probe]:
    probes = []
    for i, (n, w, z, e) in enumerate(logit_probes(batched=True, vectors=False)):
        y = _labels(z, i)
        data = {"x": z, "y": y, "Y": _one_hot(y, z.shape[-1]), "B": z.shape[0], "reduction": reduction}
        probes.append(Probe(n, f"{w}, labels {y.tolist()}", (z, y), data, e, z.dtype, ("z", "y")))
    z = _rows()["batch-3"] + 7.5
    y = _labels(z, 0)
    data = {"x": z, "y": y, "Y": _one_hot(y, 5), "B": 3, "reduction": reduction}
    probes.insert(
        3,
        Probe(
            "batch-3-shifted", f"a batch of 3 rows + 7.5, labels {y.tolist()}", (z, y), data, names=("z", "y")
        ),
    )
    return probes


CROSS_ENTROPY_GRAD = Kind(
    name="cross_entropy_grad",
    convention="fn(z, y) returns dL/dz for logits z (B, n) and integer labels y (B,)",
    probes=_xent_probes,
    exact=_exact_grad_rows,
    natural=reduction_factor,
    stages=(P_STAGE, _XENT_FORMULAS, _SCALES, _SIGNS),
    uses_reduction=True,
)


def _layer_probes(takes: str, reduction: str) -> list[Probe]:
    rng = np.random.default_rng(_RNG_SEED + 7)
    shapes = (("B=1", 1, 4, 3, 1.0), ("B=3", 3, 4, 3, 1.0), ("B=4", 4, 4, 3, 1.0), ("square", 4, 3, 3, 1.0))
    edges = (
        ("large-x400", 3, 4, 3, 400.0, np.float64, 1.0),
        ("close-x400", 3, 4, 3, 400.0, np.float64, 0.002),
        ("f32-x60", 3, 4, 3, 60.0, np.float32, 1.0),
        ("f32-close-x60", 3, 4, 3, 60.0, np.float32, 0.01),
    )
    probes = []
    for name, B, T, N, scale in shapes:
        probes.append(_layer_probe(name, rng, B, T, N, scale, np.float64, None, reduction))
    for name, B, T, N, scale, dt, spread in edges:
        probes.append(_layer_probe(name, rng, B, T, N, scale, dt, spread, reduction))
    return probes


def _layer_probe(
    name: str,
    rng: np.random.Generator,
    B: int,
    T: int,
    N: int,
    scale: float,
    dt: Any,
    spread: float | None,
    reduction: str,
) -> Probe:
    X = (rng.normal(size=(B, N)) * scale).astype(dt)
    W = rng.normal(size=(T, N)).astype(dt)
    if spread is not None:  # the first row's logits overflow a naive exp; rows of W differ by ``spread``
        W = (np.sign(X[0]) * 1.5 + spread * rng.normal(size=(T, N))).astype(dt)
    z = _f64(X) @ _f64(W).T
    y = rng.integers(0, T, size=B).astype(np.int64)
    data = {"x": z, "X": X, "W": W, "y": y, "Y": _one_hot(y, T), "B": B, "reduction": reduction}
    what = f"X {X.shape}, W {W.shape}, labels {y.tolist()}, logits up to {np.max(np.abs(z)):.4g}"
    return Probe(name, what, (X, W, y), data, edge_of(z.astype(dt)), np.dtype(dt), ("X", "W", "y"))


def _layer_exact(p: Probe) -> np.ndarray:
    _, (_, dW, _) = losses.linear_cross_entropy(
        _f64(p.data["X"]), _f64(p.data["W"]), p.data["y"], reduction=p.data["reduction"], return_grad=True
    )
    return np.asarray(dW)


def _layer_natural(p: Probe) -> float:
    return reduction_factor(p) * float(np.max(np.sum(np.abs(_f64(p.data["X"])), axis=0)))


def _times_x(f: StageFn) -> StageFn:
    def stage(p: Probe, s: Any) -> np.ndarray | None:
        rows = f(p, s)
        return None if rows is None else rows.T @ _f64(p.data["X"])

    return stage


LAYER_GRAD_W = Kind(
    name="layer_grad_W",
    convention="fn(X, W, y) returns dL/dW (T, N) for L = cross_entropy(X Wᵀ), X (B, N), W (T, N)",
    probes=_layer_probes,
    exact=_layer_exact,
    natural=_layer_natural,
    stages=(
        tuple(Variant(v.mistake, v.label.replace("(x)", "(X Wᵀ)"), v.fn) for v in P_STAGE),
        tuple(Variant(v.mistake, f"({v.label})ᵀ X", _times_x(v.fn)) for v in _XENT_FORMULAS),
        _SCALES,
        _SIGNS,
        (
            _identity("(T, N) layout"),
            Variant("transposed", "the transpose, of shape (N, T)", lambda p, v: v.T),
        ),
    ),
    uses_reduction=True,
)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (SOFTMAX, LOG_SOFTMAX, SOFTMAX_JACOBIAN, SOFTMAX_BACKWARD, CROSS_ENTROPY_GRAD, LAYER_GRAD_W)
}
