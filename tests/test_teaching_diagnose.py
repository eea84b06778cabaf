"""softgrad.diagnose: every implementation of the labelled corpus gets exactly its mistakes.

The corpus (tests/diagnose_corpus.py) holds right and wrong implementations of every kind, in
loops, vectorized NumPy, einsum, SciPy and PyTorch. The oracle behind the diagnosis is softgrad's
exact answer; it is itself checked here against PyTorch autograd (the correct PyTorch entries of
the corpus must pass) and the stage formulas of the candidates against softgrad.
"""

from __future__ import annotations

import json
import time
from functools import cache

import numpy as np
import pytest

import softgrad as sg
from diagnose_corpus import CORPUS, Impl, rates
from softgrad.teaching import CATALOG, Diagnosis, Finding, diagnose
from softgrad.teaching.diagnose._analysis import candidates, evaluate, exact_candidate
from softgrad.teaching.diagnose._kinds import KINDS
from softgrad.teaching.diagnose._run import observe

ISSUE_IDS = {
    "diagonal-only",
    "summed-jacobian",
    "logits-for-probs",
    "no-max-shift",
    "log-of-softmax",
    "double-softmax",
    "batch-scale",
    "wrong-axis",
    "cross-batch-jacobian",
    "sign-flipped",
    "swapped-index",
    "upstream-ignored",
    "jacobian-applied-twice",
    "transposed",
    "unrecognized",
}
EXTRA_IDS = {"raised", "mutates-input"}  # failures that are not a derivation mistake


def _torch_or_skip(entry: Impl) -> None:
    if entry.style in ("torch", "jax"):
        pytest.importorskip(entry.style)


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: f"{e.kind}-{e.name}")
def test_corpus_entry_gets_exactly_its_mistakes(entry):
    _torch_or_skip(entry)
    d = diagnose(entry.fn, entry.kind, takes=entry.takes, reduction=entry.reduction)
    assert set(d.ids) == set(entry.mistakes), str(d)
    assert d.ok == (not entry.mistakes)


@cache
def _corpus_rates() -> dict:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    return rates()


def test_corpus_rates_no_false_ok_and_no_false_alarm():
    r = _corpus_rates()
    assert r["wrong"] >= 90 and r["right"] >= 30
    assert r["false_negatives"] == 0  # never "ok" for a wrong function
    assert r["false_positives"] == 0  # never a finding for a right one
    assert r["misnamed"] == 0


def test_corpus_covers_every_catalog_mistake_in_several_styles():
    named = {m for e in CORPUS for m in e.mistakes}
    assert named == ISSUE_IDS | EXTRA_IDS
    assert {e.style for e in CORPUS} >= {"loops", "numpy", "einsum", "torch", "scipy"}
    for kind in KINDS:
        assert any(not e.mistakes for e in CORPUS if e.kind == kind), f"no right {kind}"
        assert any("unrecognized" in e.mistakes for e in CORPUS if e.kind == kind), f"no off-by {kind}"


def test_catalog_is_the_issue_table_plus_two_failures():
    assert [m.id for m in CATALOG][: len(ISSUE_IDS)] == [m.id for m in CATALOG if m.id in ISSUE_IDS]
    assert {m.id for m in CATALOG} == ISSUE_IDS | EXTRA_IDS
    for m in CATALOG:
        assert m.title and m.signature and m.explanation and m.fix, m.id
        assert set(m.kinds) <= set(KINDS), m.id


def test_every_candidate_mistake_is_a_catalog_record_for_its_kind():
    by_id = {m.id: m for m in CATALOG}
    for kind in KINDS.values():
        for stage in kind.stages:
            assert stage[0].mistake is None, f"{kind.name}: the correct variant comes first"
            for v in stage[1:]:
                assert v.mistake in by_id, v.mistake
                assert kind.name in by_id[v.mistake].kinds, (kind.name, v.mistake)


def test_every_step_the_catalog_points_at_exists_in_derive():
    for m in CATALOG:
        if m.step is None:
            continue
        topic, key = m.step
        step = sg.derive(topic).step(key)  # KeyError/ValueError when the derivation lacks it
        assert step.key == key


KIND_TAKES = [(kind, "logits") for kind in KINDS]
KIND_TAKES += [(kind, "probs") for kind, k in KINDS.items() if k.takes_probs]


@pytest.mark.parametrize(("kind", "takes"), KIND_TAKES)
def test_correct_stages_reproduce_softgrads_exact_answer(kind, takes):
    k = KINDS[kind]
    cache_: dict = {}
    for probe in k.probes(takes, "mean"):
        got = evaluate(k, exact_candidate(k), probe, cache_)
        np.testing.assert_allclose(got, k.exact(probe), rtol=1e-12, atol=1e-15, err_msg=probe.name)


def _stage_input(kind, probe, i):
    value = None
    for stage in kind.stages[:i]:
        value = stage[0].fn(probe, value)
    return value


def test_every_single_mistake_differs_from_the_exact_answer_where_it_applies():
    """A candidate that cannot be told from the right answer would make the catalog ambiguous."""
    for k in KINDS.values():
        for takes in ("logits", "probs") if k.takes_probs else ("logits",):
            probes = [p for p in k.probes(takes, "mean") if p.edge is None]
            cache_: dict = {}
            for cand in candidates(k):
                changed = [i for i, c in enumerate(cand.choice) if c]
                if len(changed) != 1:
                    continue
                i = changed[0]
                applies = [p for p in probes if cand.variants[i].fn(p, _stage_input(k, p, i)) is not None]
                differs = [
                    p
                    for p in applies
                    if np.shape(evaluate(k, cand, p, cache_)) != np.shape(k.exact(p))
                    or not np.allclose(evaluate(k, cand, p, cache_), k.exact(p), rtol=1e-9, atol=1e-12)
                ]
                assert differs or not applies, (k.name, takes, cand.variants[i].label)


def test_combined_mistakes_are_all_reported():
    def naive_diagonal(x):
        e = np.exp(x)
        s = e / e.sum()
        return np.diag(s * (1 - s))

    d = diagnose(naive_diagonal, "softmax_jacobian")
    assert d.ids == ["diagonal-only", "no-max-shift"]
    assert "large-close" in d.findings[1].numbers["probes"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_off_by_1e3_is_never_correct(dtype):
    def almost(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(dtype) + dtype(1e-3)

    d = diagnose(almost, "softmax")
    assert d.ids == ["unrecognized"]
    assert d.findings[0].numbers["max_abs_error"] == pytest.approx(1e-3, rel=1e-2)


def test_float32_arithmetic_is_correct_within_float32_tolerance():
    def softmax32(x):
        x = np.asarray(x, dtype=np.float32)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    assert diagnose(softmax32, "softmax").ok


def test_unrecognized_evidence_shows_probe_error_and_where():
    d = diagnose(lambda s: np.full((len(s), len(s)), 0.1), "softmax_jacobian", takes="probs")
    (f,) = d.findings
    assert f.id == "unrecognized" and f.step is None
    assert f.probe and f.numbers["max_abs_error"] >= 0.09 and len(f.numbers["index"]) == 2
    assert "differs from the exact answer" in f.evidence


def test_wrong_shape_is_reported_not_raised():
    d = diagnose(lambda x: np.zeros(7), "softmax")
    assert d.ids == ["unrecognized"]
    assert "returned shape (7,)" in d.findings[0].evidence


def test_exceptions_and_non_arrays_are_reported():
    def boom(*args):
        raise RuntimeError("kaboom")

    d = diagnose(boom, "softmax_backward")
    assert d.ids == ["raised"] and "RuntimeError: kaboom" in d.findings[0].evidence
    d = diagnose(lambda x: "hello", "softmax")
    assert d.ids == ["raised"] and "not an array of real numbers" in d.findings[0].evidence


def test_user_function_gets_copies_and_mutation_is_reported():
    def mutates(x):
        out = np.exp(x - x.max(axis=-1, keepdims=True))
        out /= out.sum(axis=-1, keepdims=True)
        x[...] = 0.0
        return out

    probe = KINDS["softmax"].probes("logits", "mean")[0]
    before = probe.args[0].copy()
    obs = observe(mutates, probe, KINDS["softmax"].exact(probe), 5.0)
    np.testing.assert_array_equal(probe.args[0], before)  # the probe kept its values
    assert obs.mutated == ("x",) and obs.output is not None
    d = diagnose(mutates, "softmax")
    assert d.ids == ["mutates-input"] and d.findings[0].numbers["arguments"] == ["x"]


def test_time_is_guarded():
    def slow(x):
        time.sleep(30)
        return x

    start = time.perf_counter()
    d = diagnose(slow, "softmax", time_limit=0.3)
    assert time.perf_counter() - start < 3.0
    assert d.ids == ["raised"] and "timed out" in d.findings[0].evidence
    assert "larger time_limit=" in d.findings[0].evidence


def test_the_default_budget_lets_slow_first_calls_finish():
    """A function whose first calls are slow (as under a JIT compiler) is still diagnosed."""
    calls = []

    def compiling(x):
        calls.append(1)
        if len(calls) <= 2:
            time.sleep(3.0)  # together past the former 5 s budget
        return sg.softmax(x)

    assert diagnose(compiling, "softmax").ok


def test_warnings_of_the_user_function_are_silenced(recwarn):
    def noisy(x):
        import warnings

        warnings.warn("noisy", RuntimeWarning, stacklevel=1)
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)

    assert diagnose(noisy, "softmax").ids == ["no-max-shift"]
    assert not [w for w in recwarn if "noisy" in str(w.message)]


def test_result_forms():
    d = diagnose(lambda s: s * (1 - s), "softmax_jacobian", takes="probs")
    assert isinstance(d, Diagnosis) and isinstance(d.findings[0], Finding)
    assert not d and not d.ok and d.ids == ["diagonal-only"]
    data = json.loads(d.to_json())
    assert data["ok"] is False and data["ids"] == ["diagonal-only"] and data["kind"] == "softmax_jacobian"
    f = data["findings"][0]
    assert set(f) == {"id", "title", "evidence", "probe", "numbers", "explanation", "fix", "step"}
    assert f["step"]["topic"] == "softmax" and f["step"]["key"] == "case-i-ne-j"
    assert f["step"]["latex"] == sg.derive("softmax").step("case-i-ne-j").latex
    text = str(d)
    assert "diagonal-only" in text and "case-i-ne-j" in text and "fix:" in text
    assert "diagonal-only" in repr(d)


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="kind: expected one of softmax, log_softmax"):
        diagnose(np.exp, "softmaxx")
    with pytest.raises(ValueError, match="takes"):
        diagnose(np.exp, "softmax_jacobian", takes="logit")
    with pytest.raises(ValueError, match="takes logits only"):
        diagnose(np.exp, "cross_entropy_grad", takes="probs")
    with pytest.raises(ValueError, match="reduction"):
        diagnose(np.exp, "cross_entropy_grad", reduction="none")
    with pytest.raises(TypeError, match="fn: expected a callable"):
        diagnose("np.exp", "softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time_limit"):
        diagnose(np.exp, "softmax", time_limit=0)


def test_top_level_lazy_name():
    assert sg.diagnose is diagnose
    assert "diagnose" in sg.__all__


def test_docs_document_every_catalog_entry():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "diagnose.md").read_text()
    for m in CATALOG:
        assert f"| `{m.id}` |" in text, m.id
        if m.step is not None:
            assert f"### `{m.id}`" in text, m.id
            topic, key = m.step
            assert f"| `{topic}` / `{key}` |" in text, m.id


def test_time_guard_is_not_swallowed_by_the_users_except():
    def stubborn(x):
        while True:
            try:
                time.sleep(10)
            except Exception:
                pass

    start = time.perf_counter()
    d = diagnose(stubborn, "softmax", time_limit=0.3)
    assert time.perf_counter() - start < 3.0 and d.ids == ["raised"]
