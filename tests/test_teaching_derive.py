"""softgrad.teaching.derive: every step of every topic checked against what we did not write.

* SymPy: each step, written out for n = 2..5, equals SymPy's own differentiation of the
  definition and the step before it (``verify()``, exact arithmetic at random points);
* torch autograd: each topic's result at random float64 points;
* the renderers: the LaTeX converts to MathML (latex2mathml) and carries no Unicode, the
  Markdown renders (markdown-it), the JSON round-trips;
* the facts the seeds ask about appear: the two cases, S − y, the T × NT layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from softgrad.teaching import TOPICS, Derivation, Step, derive

CONTRACT_KEYS = {
    "softmax": {"quotient-rule", "delta-form", "case-i-eq-j", "case-i-ne-j", "matrix-form", "vjp"},
    "log_softmax": {"log-of-quotient", "delta-form"},
    "cross_entropy": {"chain-rule", "sum-y-is-one", "result", "batch-mean"},
    "softmax_layer": {"chain-rule", "layout"},
    "cross_entropy_layer": {"outer-product", "batch", "convention"},
    "softmax_inverse": {"shift-invariance"},
}


@pytest.mark.parametrize("topic", TOPICS)
def test_every_step_is_verified(topic):
    report = derive(topic).verify()
    assert report.ok, str(report)
    d = derive(topic)
    checked = {c.step for c in report.checks}
    assert checked >= {s.key for s in d.steps}
    for c in report.checks:
        if c.step in {s.key for s in d.steps} and c.against.startswith("SymPy"):
            assert c.sizes == list(d.spec.sizes), (c.step, c.sizes)


@pytest.mark.parametrize("topic", TOPICS)
def test_contract(topic):
    d = derive(topic)
    assert isinstance(d, Derivation) and d.topic == topic
    keys = [s.key for s in d.steps]
    assert len(keys) == len(set(keys))
    assert CONTRACT_KEYS.get(topic, set()) <= set(keys)
    assert all(isinstance(s, Step) and s.rule and s.explanation and s.latex for s in d.steps)
    with pytest.raises(KeyError, match=keys[0]):
        d.step("no-such-step")
    data = json.loads(d.to_json())
    assert data == d.to_dict()
    assert [s["key"] for s in data["steps"]] == keys
    assert data["at"] is None


def test_unknown_topic_lists_the_topics():
    with pytest.raises(ValueError, match=r"did you mean 'softmax'.*" + re.escape(", ".join(TOPICS))):
        derive("sofmax")
    with pytest.raises(ValueError, match="the topics are"):
        derive(3)  # type: ignore[arg-type]


def test_a_wrong_step_fails_verification():
    """The checks can fail: S_i(δ_ij + S_j) instead of S_i(δ_ij − S_j) is caught."""
    from softgrad.teaching.derive._expr import delta
    from softgrad.teaching.derive._notation import S
    from softgrad.teaching.derive._topics import SPECS

    spec = SPECS["softmax"]
    bad = S("i") * (delta("i", "j") + S("j"))
    wrong = tuple(replace(s, expr=bad) if s.key == "delta-form" else s for s in spec.steps)
    d = Derivation.from_spec(replace(spec, steps=wrong))
    report = d.verify(sizes=(2,), points=1)
    assert not report.ok
    failed = {(c.step, c.against.split()[0]) for c in report.checks if not c.ok}
    assert ("delta-form", "SymPy's") in failed
    assert "FAIL" in str(report)


def test_sum_y_is_one_is_needed():
    """Without Σ y = 1 the step S_j − y_j is wrong: at targets off the simplex it differs."""
    d = derive("cross_entropy")
    symbols, steps = d.concrete(3)
    import sympy as sp

    x, y = symbols["x"], symbols["y"]
    point = {**{v: sp.log(sp.Integer(k + 2)) for k, v in enumerate(x)}, **{v: 1 for v in y}}
    before, after = steps["sift"].xreplace(point), steps["sum-y-is-one"].xreplace(point)
    assert sp.simplify(before - after) != sp.zeros(3, 1)
    point.update({y[0]: sp.Rational(1, 2), y[1]: sp.Rational(1, 3), y[2]: sp.Rational(1, 6)})
    before, after = steps["sift"].xreplace(point), steps["sum-y-is-one"].xreplace(point)
    assert sp.simplify(before - after) == sp.zeros(3, 1)
