r"""Compare the user's answers with the exact ones and with the candidates of the catalog.

Tolerance. A correct float computation of these formulas errs by a few rounding units of the
dtype times the natural size of the terms it adds up; computing ``exp(x - lse)`` multiplies that
by the size of the logits. So an answer ``u`` matches a reference ``r`` on a probe when

.. math:: |u - r| \le 64\, \epsilon\, (1 + \max|x|)\, \max(\text{natural scale}, \max|r|)

elementwise, with :math:`\epsilon` the machine epsilon of the coarser of the probe's and the
answer's dtypes. In float64 on moderate logits this is about ``1e-13`` relative: an answer off by
``1e-3`` is far outside, a correct one (any summation order, any stable formula) far inside.

Identification. On the *regular* probes (moderate logits, where every formula is computed
accurately), candidates built from the stages of the kind are tried, fewest mistakes first; the
first that matches every regular answer names the mistakes. The *edge* probes (large logits and
gaps) are then checked against that candidate (or the exact answer): non-finite entries where the
reference is finite are the overflow and underflow signatures, other differences stay unexplained.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._kinds import Kind, Probe, Variant
from ._run import Observation

TOL_UNITS = 64
MAX_MISTAKES = 3


@dataclass(frozen=True)
class Candidate:
    """One variant per stage of a kind: what a function with these mistakes returns."""

    choice: tuple[int, ...]
    variants: tuple[Variant, ...]

    @property
    def mistakes(self) -> tuple[str, ...]:
        ids = [v.mistake for v in self.variants if v.mistake is not None]
        return tuple(dict.fromkeys(ids))

    def labels(self, mistake: str) -> list[str]:
        return [v.label for v in self.variants if v.mistake == mistake]


@dataclass(frozen=True)
class Mismatch:
    """Where an answer differs most from a reference on one probe."""

    probe: Probe
    index: tuple[int, ...]
    user: float
    reference: float
    max_abs: float
    max_rel: float
    tolerance: float
    shape: str | None = None  # set when the shapes do not match at all


@dataclass(frozen=True)
class EdgeCheck:
    """The verdict on one edge probe: ``ok``, ``overflow``, ``underflow``, ``mismatch``."""

    obs: Observation
    verdict: str
    detail: str
    mismatch: Mismatch | None = None


@dataclass
class Analysis:
    """Everything the catalog's predicates look at."""

    kind: Kind
    observations: list[Observation]
    candidate: Candidate | None = None
    regular_exact: bool = True
    worst: Mismatch | None = None  # the worst regular mismatch against the exact answer
    failing: tuple[str, ...] = ()  # the regular probes where the answer is not exact
    edges: list[EdgeCheck] = field(default_factory=list)
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def regular(self) -> list[Observation]:
        return [o for o in self.observations if o.probe.edge is None and o.output is not None]

    def evaluate(self, cand: Candidate, probe: Probe) -> np.ndarray:
        return evaluate(self.kind, cand, probe, self.cache)


def evaluate(kind: Kind, cand: Candidate, probe: Probe, cache: dict[Any, Any]) -> np.ndarray:
    """The candidate's answer on ``probe`` (stage values cached by prefix of the choice)."""
    value: Any = None
    for i, variant in enumerate(cand.variants):
        key = (id(probe), cand.choice[: i + 1])
        if key not in cache:
            with np.errstate(all="ignore"):
                out = variant.fn(probe, value)
                cache[key] = kind.stages[i][0].fn(probe, value) if out is None else out
        value = cache[key]
    return np.asarray(value, dtype=np.float64)


def candidates(kind: Kind) -> list[Candidate]:
    """Every combination of at most ``MAX_MISTAKES`` mistaken variants, fewest mistakes first."""
    out = []
    for choice in itertools.product(*(range(len(s)) for s in kind.stages)):
        n = sum(1 for c in choice if c)
        if 0 < n <= MAX_MISTAKES:
            out.append(Candidate(choice, tuple(s[c] for s, c in zip(kind.stages, choice, strict=True))))
    return sorted(out, key=lambda c: sum(1 for i in c.choice if i))


def exact_candidate(kind: Kind) -> Candidate:
    return Candidate((0,) * len(kind.stages), tuple(s[0] for s in kind.stages))


def align(user: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The two arrays with matching shapes (size-1 axes ignored), or None."""
    if user.shape == ref.shape:
        return user, ref
    if np.squeeze(user).shape == np.squeeze(ref).shape:
        return np.squeeze(user), np.squeeze(ref)
    return None


def tolerance(kind: Kind, obs: Observation, ref: np.ndarray) -> float:
    assert obs.output is not None
    eps = max(np.finfo(obs.probe.dtype).eps, np.finfo(obs.output.dtype).eps)
    finite = ref[np.isfinite(ref)]
    size = max(kind.natural(obs.probe), float(np.max(np.abs(finite), initial=0.0)))
    return float(TOL_UNITS * eps * (1.0 + obs.probe.magnitude) * size)


def mismatch(kind: Kind, obs: Observation, ref: np.ndarray) -> Mismatch | None:
    """None when the answer matches ``ref`` within tolerance, else where it differs most."""
    assert obs.output is not None
    tol = tolerance(kind, obs, ref)
    pair = align(obs.output, ref)
    if pair is None:
        shape = f"returned shape {obs.output.shape} where {ref.shape} belongs"
        return Mismatch(obs.probe, (), np.nan, np.nan, np.inf, np.inf, tol, shape)
    u, r = np.atleast_1d(pair[0]).astype(np.float64), np.atleast_1d(pair[1])
    with np.errstate(all="ignore"):
        # rounded to the answer's dtype: a float32 answer of -inf for -1e50 is the right rounding
        r = r.astype(obs.output.dtype).astype(np.float64) if obs.output.dtype.itemsize < 8 else r
        diff = np.where((u == r) | (np.isnan(u) & np.isnan(r)), 0.0, np.abs(u - r))
    diff = np.where(np.isnan(diff), np.inf, diff)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    max_abs = float(diff[worst])
    if max_abs <= tol:
        return None
    scale = float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0)) or 1.0
    idx = tuple(int(i) for i in worst)
    return Mismatch(obs.probe, idx, float(u[worst]), float(r[worst]), max_abs, max_abs / scale, tol)


def _matches(analysis: Analysis, cand: Candidate) -> bool:
    kind = analysis.kind
    return all(mismatch(kind, o, analysis.evaluate(cand, o.probe)) is None for o in analysis.regular)


def _prune(analysis: Analysis, cand: Candidate) -> Candidate:
    """Drop the mistakes that make no difference on these probes (keep the simplest story)."""
    for i, c in enumerate(cand.choice):
        if c:
            choice = (*cand.choice[:i], 0, *cand.choice[i + 1 :])
            simpler = Candidate(
                choice, tuple(s[k] for s, k in zip(analysis.kind.stages, choice, strict=True))
            )
            if _matches(analysis, simpler):
                return _prune(analysis, simpler)
    return cand


def identify(analysis: Analysis) -> None:
    """Fill in ``regular_exact``, ``worst`` and the matching ``candidate``."""
    kind = analysis.kind
    worst = [m for o in analysis.regular if (m := mismatch(kind, o, o.exact)) is not None]
    analysis.regular_exact = not worst
    analysis.failing = tuple(m.probe.name for m in worst)
    analysis.worst = max(worst, key=lambda m: m.max_rel) if worst else None
    if not worst:
        return
    for cand in candidates(kind):
        if _matches(analysis, cand):
            pruned = _prune(analysis, cand)
            if pruned.mistakes:
                analysis.candidate = pruned
            return


def _underflows(kind: Kind, probe: Probe, exact: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Where the exact log-probability is below the log of the dtype's smallest subnormal."""
    if kind.name != "log_softmax" or exact.size != int(np.prod(shape)):
        return np.zeros(shape, dtype=bool)
    tiny = float(np.finfo(probe.dtype).smallest_subnormal)
    return np.asarray(exact).reshape(shape) < np.log(tiny) + 1.0


def check_edge(analysis: Analysis, obs: Observation) -> EdgeCheck:
    """Classify the answer on one edge probe against the identified candidate (or exact)."""
    kind, probe = analysis.kind, obs.probe
    ref = obs.exact if analysis.candidate is None else analysis.evaluate(analysis.candidate, probe)
    if obs.output is None:
        if obs.error_type in ("OverflowError", "FloatingPointError") and probe.edge in ("overflow", "large"):
            return EdgeCheck(obs, "overflow", f"raised {obs.error}")
        if (
            kind.name == "log_softmax"
            and "math domain error" in (obs.error or "")
            and probe.edge in ("gap", "large")
        ):
            return EdgeCheck(
                obs, "underflow", f"raised {obs.error} (the log of a probability that underflowed to 0)"
            )
        return EdgeCheck(obs, "error", obs.error or "no answer")
    pair = align(obs.output, ref)
    if pair is None:
        return EdgeCheck(obs, "mismatch", "wrong shape", mismatch(kind, obs, ref))
    u, r = np.atleast_1d(pair[0]), np.atleast_1d(pair[1])
    bad = ~np.isfinite(u) & np.isfinite(r)
    under = bad & (u == -np.inf) & _underflows(kind, probe, obs.exact, r.shape)
    over = bad & ~under
    rest = Observation(probe, obs.exact, np.where(bad, r, u).astype(u.dtype))
    off = mismatch(kind, rest, r)
    if over.any() and probe.edge in ("overflow", "large"):
        return EdgeCheck(obs, "overflow", _count(u, over), off)
    if under.any() and not over.any():
        return EdgeCheck(obs, "underflow", _count(u, under), off)
    if bad.any() or off is not None:
        return EdgeCheck(
            obs,
            "mismatch",
            _count(u, bad) if bad.any() else "finite but wrong",
            off or mismatch(kind, obs, ref),
        )
    return EdgeCheck(obs, "ok", "")


def _count(u: np.ndarray, mask: np.ndarray) -> str:
    parts = [
        f"{int(np.sum(mask & f(u)))} {name}"
        for name, f in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf))
        if np.any(mask & f(u))
    ]
    return " and ".join(parts) + f" of {u.size} entries where the exact answer is finite"


def analyse(kind: Kind, observations: list[Observation]) -> Analysis:
    analysis = Analysis(kind, observations)
    identify(analysis)
    edges = [check_edge(analysis, o) for o in observations if o.probe.edge is not None]
    # Only a probe whose probabilities are all moderate proves the missing shift; elsewhere a NaN
    # may as well come from 0/0 where a probability underflows (dividing by S).
    if not any(e.verdict == "overflow" and e.obs.probe.edge == "overflow" for e in edges):
        edges = [_unexplained(analysis, e) if e.verdict == "overflow" else e for e in edges]
    analysis.edges = edges
    return analysis


def _unexplained(analysis: Analysis, e: EdgeCheck) -> EdgeCheck:
    if e.obs.output is None:
        return EdgeCheck(e.obs, "error", e.detail)
    ref = e.obs.exact if analysis.candidate is None else analysis.evaluate(analysis.candidate, e.obs.probe)
    return EdgeCheck(e.obs, "mismatch", e.detail, mismatch(analysis.kind, e.obs, ref))
