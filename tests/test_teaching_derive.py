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
import shutil
import subprocess
import sys
import zlib
from dataclasses import replace

import numpy as np
import pytest

import softgrad as sg
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


# --- every step against torch autograd -----------------------------------------------------------


def _t(a):
    torch = pytest.importorskip("torch")
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _jac(f, *args):
    from torch.autograd.functional import jacobian

    return jacobian(f, args)


def _softmax_oracles(torch):
    def jac(p):
        return torch.autograd.functional.jacobian(lambda x: torch.softmax(x, 0), _t(p["x"])).numpy()

    def off(p):
        j = jac(p)
        np.fill_diagonal(j, 0.0)
        return j

    def vjp(p):
        x, g = _t(p["x"]).requires_grad_(), _t(p["g"])
        (torch.softmax(x, 0) @ g).backward()
        return x.grad.numpy()

    return {
        "jacobian": jac,
        "jacobian-diagonal": lambda p: np.diag(jac(p)),
        "jacobian-off-diagonal": off,
        "vjp": vjp,
    }


def _log_softmax_oracles(torch):
    def jac(p):
        return torch.autograd.functional.jacobian(lambda x: torch.log_softmax(x, 0), _t(p["x"])).numpy()

    return {
        "log-softmax": lambda p: torch.log(torch.softmax(_t(p["x"]), 0)).numpy(),
        "log-jacobian": jac,
        "log-vjp": lambda p: np.asarray(p["g"]) @ jac(p),
    }


def _logsumexp_oracles(torch):
    f = lambda x: torch.logsumexp(x, 0)  # noqa: E731
    return {
        "lse-gradient": lambda p: torch.autograd.functional.jacobian(f, _t(p["x"])).numpy(),
        "lse-hessian": lambda p: torch.autograd.functional.hessian(f, _t(p["x"])).numpy(),
    }


def _xent(logits, y):
    return -(y * torch_mod().log_softmax(logits, -1)).sum(-1)


def torch_mod():
    return pytest.importorskip("torch")


def _cross_entropy_oracles(torch):
    return {
        "gradient": lambda p: torch.autograd.functional.jacobian(
            lambda x: _xent(x, _t(p["y"])), _t(p["x"])
        ).numpy(),
        "batch-gradient": lambda p: torch.autograd.functional.jacobian(
            lambda X: _xent(X, _t(p["Y"])).mean(), _t(p["X"])
        ).numpy(),
    }


def _layer_oracles(torch):
    def jac(p):
        x = _t(p["x"])
        j = torch.autograd.functional.jacobian(lambda W: torch.softmax(W @ x, 0), _t(p["W"]))
        return j.reshape(j.shape[0], -1).numpy()  # (T, T, N) -> T x TN, W row-major

    return {"layer-jacobian": jac}


def _ce_layer_oracles(torch):
    def grad(loss, wrt):
        w = _t(wrt).requires_grad_()
        loss(w).backward()
        return w.grad.numpy()

    return {
        "loss-gradient": lambda p: grad(lambda W: _xent(W @ _t(p["x"]), _t(p["y"])), p["W"]),
        "batch-gradient": lambda p: grad(lambda W: _xent(_t(p["X"]) @ W.T, _t(p["Y"])).mean(), p["W"]),
        "batch-gradient-XV": lambda p: grad(lambda V: _xent(_t(p["X"]) @ V, _t(p["Y"])).mean(), p["V"]),
    }


def _temperature_oracles(torch):
    def dT(p):
        T = _t(p["T"]).reshape(()).requires_grad_()
        return torch.autograd.functional.jacobian(lambda T: torch.softmax(_t(p["x"]) / T, 0), T).numpy()

    return {
        "jacobian": lambda p: torch.autograd.functional.jacobian(
            lambda x: torch.softmax(x / float(p["T"][0]), 0), _t(p["x"])
        ).numpy(),
        "temperature-derivative": dT,
    }


def _hessian_oracles(torch):
    def hess(p):
        x = _t(p["x"])
        n = len(x)
        rows = [torch.autograd.functional.hessian(lambda v, i=i: torch.softmax(v, 0)[i], x) for i in range(n)]
        return torch.stack(rows).reshape(n, n * n).numpy()

    return {"hessian": hess}


def _sigmoid_oracles(torch):
    def z(p):
        return float(p["x"][1] - p["x"][0])

    def d_s1(p):
        x = _t(p["x"]).requires_grad_()
        torch.softmax(x, 0)[1].backward()
        return x.grad[1].item()

    def d_softplus(p):
        zt = _t(z(p)).requires_grad_()
        torch.nn.functional.softplus(zt).backward()
        return zt.grad.item()

    return {
        "S1": lambda p: torch.softmax(_t(p["x"]), 0)[1].item(),
        "dS1": d_s1,
        "lse0z": lambda p: torch.logsumexp(_t([0.0, z(p)]), 0).item(),
        "dsoftplus": d_softplus,
    }


def _policy_oracles(torch):
    def log_pi(theta, phi):
        return torch.log_softmax(phi @ theta, 0)

    def score(p):
        return torch.autograd.functional.jacobian(lambda th: log_pi(th, _t(p["phi"])), _t(p["theta"])).numpy()

    def mean_score(p):
        pi = torch.softmax(_t(p["phi"]) @ _t(p["theta"]), 0).numpy()
        return pi @ score(p)

    return {
        "log-pi": lambda p: log_pi(_t(p["theta"]), _t(p["phi"])).numpy(),
        "score": score,
        "mean-score": mean_score,
    }


def _inverse_oracles(torch):
    return {
        "shifted": lambda p: torch.softmax(_t(p["x"]) + float(p["c"][0]), 0).numpy(),
        "log-S": lambda p: torch.log(torch.softmax(_t(p["x"]), 0)).numpy(),
        "logits": lambda p: np.asarray(p["x"]),
        "of-log-p": lambda p: torch.softmax(torch.log(_t(p["p"])) + float(p["c"][0]), 0).numpy(),
    }


ORACLES = {
    "softmax": _softmax_oracles,
    "log_softmax": _log_softmax_oracles,
    "logsumexp": _logsumexp_oracles,
    "cross_entropy": _cross_entropy_oracles,
    "softmax_layer": _layer_oracles,
    "cross_entropy_layer": _ce_layer_oracles,
    "softmax_temperature": _temperature_oracles,
    "softmax_hessian": _hessian_oracles,
    "sigmoid": _sigmoid_oracles,
    "policy_gradient": _policy_oracles,
    "softmax_inverse": _inverse_oracles,
}


@pytest.mark.parametrize("topic", TOPICS)
def test_every_step_against_torch_autograd(topic):
    """Each step, written out for every n, at random float64 points, equals torch autograd."""
    torch = pytest.importorskip("torch")
    sp = pytest.importorskip("sympy")
    oracles = ORACLES[topic](torch)
    d = derive(topic)
    rng = np.random.default_rng(zlib.crc32(topic.encode()))
    for n in d.spec.sizes:
        ctx = d.spec.context(n)
        symbols, steps = d.concrete(n)
        names = list(symbols)
        flat = [s for name in names for s in symbols[name]]
        points = [ctx.floats(rng) for _ in range(2)]
        for spec in d.spec.steps:
            f = sp.lambdify(flat, steps[spec.key], "numpy")
            for p in points:
                args = [v for name in names for v in np.asarray(p[name], dtype=float).ravel()]
                mine = np.asarray(f(*args), dtype=float)
                theirs = np.asarray(oracles[spec.quantity.key](p), dtype=float).reshape(mine.shape)
                np.testing.assert_allclose(
                    mine, theirs, rtol=1e-10, atol=1e-12, err_msg=f"{topic} {spec.key} n={n}"
                )


# --- concrete(), the seeds' facts -----------------------------------------------------------------


def test_concrete_symbols_and_shapes():
    symbols, steps = derive("softmax").concrete(3)
    assert set(symbols) == {"x", "g"} and symbols["x"].shape == (3, 1)
    assert list(steps) == [s.key for s in derive("softmax").steps]
    assert steps["matrix-form"].shape == (3, 3) and steps["vjp"].shape == (3, 1)
    symbols, steps = derive("softmax_layer").concrete(4)
    assert symbols["W"].shape == (4, 2) and symbols["x"].shape == (2, 1)
    assert steps["layout"].shape == (4, 8)  # T x NT
    symbols, steps = derive("cross_entropy_layer").concrete(3)
    assert {"x", "y", "W"} <= set(symbols)
    assert steps["outer-product"].shape == (3, 2) and steps["convention"].shape == (2, 3)
    assert derive("softmax_hessian").concrete(2)[1]["factor"].shape == (2, 4)


@pytest.mark.parametrize("n", [1, 13, "3", 2.0, True])
def test_concrete_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be an integer"):
        derive("softmax").concrete(n)


def test_sigmoid_is_two_classes_only():
    with pytest.raises(ValueError, match="n must be 2"):
        derive("sigmoid").concrete(3)
    with pytest.raises(ValueError, match="two logits"):
        derive("sigmoid", at=[1.0, 2.0, 3.0])


def test_the_seeds_facts():
    sm = derive("softmax")
    assert sm.step("delta-form").text == "∂S_i/∂x_j = S_i(δ_ij − S_j)"
    assert sm.step("case-i-eq-j").text == "∂S_i/∂x_i = S_i(1 − S_i)"
    assert sm.step("case-i-ne-j").text == "∂S_i/∂x_j = −S_i·S_j   (i ≠ j)"
    assert sm.step("matrix-form").text == "∂S/∂x = diag(S) − SSᵀ"
    assert sm.step("quotient-rule").rule == "quotient rule"
    ce = derive("cross_entropy")
    assert ce.step("sum-y-is-one").rule == "Σ y = 1" and ce.result_text == "∂L/∂x = S − y"
    assert ce.step("batch-mean").text == "∂L̄/∂X = (S − Y) / B" and ce.step("batch-mean").new_quantity
    layer = derive("softmax_layer")
    assert layer.step("sift").text == "∂P_t/∂W_ij = S_t(δ_ti − S_i)x_j"
    assert "T × NT" in layer.step("layout").explanation and "i·N + j" in layer.step("layout").explanation
    assert derive("cross_entropy_layer").step("outer-product").text == "∂L/∂W = (S − y)xᵀ"
    assert derive("logsumexp").step("softmax").text == "∂lse(x)/∂x_j = S_j"
    assert derive("log_softmax").step("delta-form").text == "∂log S_i/∂x_j = δ_ij − S_j"


def test_layer_layout_is_row_major_against_softgrad():
    """Column i·N + j of the written-out T x NT Jacobian is ∂P_t/∂W_ij (softgrad's layout)."""
    sp = pytest.importorskip("sympy")
    symbols, steps = derive("softmax_layer").concrete(3)
    rng = np.random.default_rng(7)
    x, W = rng.standard_normal(2), rng.standard_normal((3, 2))
    point = {
        **dict(zip(symbols["x"], x, strict=True)),
        **dict(zip(list(symbols["W"]), W.ravel(), strict=True)),
    }
    jac = np.array(steps["layout"].xreplace({k: sp.Float(v, 30) for k, v in point.items()}), dtype=float)
    np.testing.assert_allclose(jac, sg.dense_softmax_jacobian(x, W), rtol=1e-12)
    s = sg.softmax(W @ x)
    t, i, j = 2, 1, 0
    assert jac[t, i * 2 + j] == pytest.approx(s[t] * ((t == i) - s[i]) * x[j], rel=1e-12)


# --- at a point -----------------------------------------------------------------------------------


def test_numbers_at_a_point():
    d = derive("softmax", at=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(d.at["S"], sg.softmax([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(d.at["jacobian"], sg.softmax_jacobian([1.0, 2.0, 3.0]))
    assert "0.0900306" in d.to_text() and "0.0900306" in d.to_markdown() and "0.0900306" in d.to_latex()
    ce = derive("cross_entropy", at=[2.0, 1.0, 0.1])
    np.testing.assert_allclose(ce.at["gradient"], [-0.34099886, 0.24243297, 0.09856589], atol=1e-8)
    assert json.loads(ce.to_json())["at"]["y"] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("at", [[], [float("nan")], ["a"], 3.0])
def test_bad_point(at):
    with pytest.raises(ValueError, match="at must"):
        derive("softmax", at=at)


@pytest.mark.parametrize("topic", TOPICS)
def test_every_topic_at_a_point(topic):
    d = derive(topic, at=[0.5, -1.0])
    assert d.at and json.loads(d.to_json())["at"] == d.at
    assert "At " in d.to_text()


# --- the point's target, W and b -------------------------------------------------------------------


def _torch_ce(x, y, W=None, b=None):
    """Loss, dL/dlogits (or dL/dW) by torch autograd of F.cross_entropy with probability targets."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=W is None)
    if W is None:
        loss = F.cross_entropy(xt[None], torch.tensor(y)[None])
        return loss.item(), torch.autograd.grad(loss, xt)[0].numpy()
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    bt = None if b is None else torch.tensor(b, dtype=torch.float64)
    loss = F.cross_entropy(F.linear(xt, Wt, bt)[None], torch.tensor(y)[None])
    return loss.item(), torch.autograd.grad(loss, Wt)[0].numpy()


@pytest.mark.parametrize("target", [2, 0, [0.2, 0.3, 0.5], np.int64(1)])
def test_cross_entropy_at_a_target(target):
    x = [1.0, 2.0, 3.0]
    y = np.eye(3)[int(target)] if np.ndim(target) == 0 else np.asarray(target)
    d = derive("cross_entropy", at=x, target=target)
    loss, grad = _torch_ce(x, y)
    np.testing.assert_allclose(d.at["y"], y)
    np.testing.assert_allclose(d.at["loss"], loss, rtol=1e-14)
    np.testing.assert_allclose(d.at["gradient"], grad, rtol=1e-13, atol=1e-16)
    where = d.at["where"]
    assert (
        (f"target class {int(target)}" in where)
        if np.ndim(target) == 0
        else "soft targets y = (0.2, 0.3, 0.5)" in where
    )


def test_softmax_layer_at_given_weights_and_bias():
    torch = pytest.importorskip("torch")
    x, W, b = [1.0, -2.0], [[0.5, 1.0], [-1.0, 0.25], [2.0, 0.0], [0.0, -0.5]], [0.1, 0.2, -0.3, 0.0]
    d = derive("softmax_layer", at=x, W=W, b=b)
    xt, bt = torch.tensor(x, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)

    def layer(w_flat):
        return torch.softmax(w_flat.reshape(4, 2) @ xt + bt, dim=0)

    want = torch.autograd.functional.jacobian(layer, torch.tensor(W, dtype=torch.float64).reshape(-1))
    np.testing.assert_allclose(d.at["dP/dvec(W)"], want.numpy(), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(
        d.at["S"], layer(torch.tensor(W, dtype=torch.float64).reshape(-1)).numpy(), rtol=1e-14
    )
    np.testing.assert_allclose(d.at["z = Wx + b"], np.asarray(W) @ x + b)
    assert "T = 4 classes, the weights W and the bias b below" in d.at["where"]
    assert "z = Wx" not in d.at and "b" in d.at


def test_cross_entropy_layer_at_the_page_numbers():
    x, W, b = [0.5, 1.5, -1.0], [[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]], [0.0, 1.0]
    d = derive("cross_entropy_layer", at=x, W=W, b=b, target=1)
    _, grad_W = _torch_ce(x, np.eye(2)[1], W, b)
    np.testing.assert_allclose(d.at["dL/dW"], grad_W, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(d.at["y"], [0.0, 1.0])
    soft = derive("cross_entropy_layer", at=x, W=W, target=[0.25, 0.75])
    np.testing.assert_allclose(
        soft.at["dL/dW"], _torch_ce(x, np.array([0.25, 0.75]), W)[1], rtol=1e-13, atol=1e-16
    )
    # without W, the target indexes the example's 3 classes
    assert derive("cross_entropy_layer", at=x, target=2).at["y"] == [0.0, 0.0, 1.0]


def test_defaults_are_unchanged():
    x = [1.0, 2.0]
    assert derive("cross_entropy", at=x).at == derive("cross_entropy", at=x, target=0).at
    plain = derive("softmax_layer", at=x).at
    assert "derive's example weights W" in plain["where"] and "z = Wx" in plain
    assert derive("softmax_layer", at=x, W=plain["W"]).at["S"] == plain["S"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"topic": "softmax", "at": [1.0, 2.0], "target": 1},
            ValueError,
            "softmax takes no target=.*cross_entropy",
        ),
        (
            {"topic": "cross_entropy", "at": [1.0, 2.0], "W": [[1.0, 2.0]]},
            ValueError,
            "takes no W=.*softmax_layer",
        ),
        ({"topic": "cross_entropy", "target": 1}, ValueError, "target= needs at="),
        ({"topic": "softmax_layer", "W": [[1.0]]}, ValueError, "W= needs at="),
        ({"topic": "cross_entropy", "at": [1.0, 2.0], "target": 2}, ValueError, r"class in 0\.\.1, got 2"),
        ({"topic": "cross_entropy", "at": [1.0, 2.0], "target": -1}, ValueError, "class in"),
        (
            {"topic": "cross_entropy", "at": [1.0, 2.0], "target": True},
            TypeError,
            "target must be a class index",
        ),
        (
            {"topic": "cross_entropy", "at": [1.0, 2.0], "target": "1"},
            TypeError,
            "target must be a class index",
        ),
        ({"topic": "cross_entropy", "at": [1.0, 2.0], "target": [0.5, 0.6]}, ValueError, "sum to 1"),
        ({"topic": "cross_entropy", "at": [1.0, 2.0], "target": [-0.5, 1.5]}, ValueError, ">= 0"),
        ({"topic": "cross_entropy", "at": [1.0, 2.0], "target": [1.0]}, ValueError, "hold 2 probabilities"),
        ({"topic": "cross_entropy", "at": [1.0, 2.0], "target": [0.5, float("nan")]}, ValueError, "finite"),
        (
            {"topic": "softmax_layer", "at": [1.0, 2.0], "W": [[1.0, 2.0, 3.0]]},
            ValueError,
            r"one column per entry of at \(2\)",
        ),
        ({"topic": "softmax_layer", "at": [1.0, 2.0], "W": [1.0, 2.0]}, ValueError, "W must be a matrix"),
        (
            {"topic": "softmax_layer", "at": [1.0, 2.0], "W": [[1.0, float("inf")]]},
            ValueError,
            "W must hold finite",
        ),
        (
            {"topic": "softmax_layer", "at": [1.0, 2.0], "b": [1.0, 2.0]},
            ValueError,
            r"one entry per class \(3\)",
        ),
        (
            {"topic": "cross_entropy_layer", "at": [1.0], "W": [[1.0], [2.0]], "target": 2},
            ValueError,
            r"0\.\.1",
        ),
        ({"topic": "softmax", "at": "12"}, ValueError, "at must be a sequence"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        derive(**kwargs)


# --- renderers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", TOPICS)
def test_latex_is_a_complete_align_that_converts(topic):
    converter = pytest.importorskip("latex2mathml.converter")
    for d in (derive(topic), derive(topic, at=[1.0, 2.0])):
        tex = d.to_latex()
        assert tex.startswith("\\begin{align}\n") and tex.endswith("\n\\end{align}")
        assert tex.isascii(), "pdflatex without inputenc tricks needs ASCII"
        assert tex.count("\\\\\n") == len(d.definitions) + len(d.steps) + len(_at_rows(d)) - 1
        mathml = converter.convert(tex)  # raises on unbalanced braces, \left without \right, ...
        assert "<mi>\\" not in mathml, "an unknown command leaked through"
        assert d._repr_latex_() == tex
        for s in d.steps:
            converter.convert(s.latex)


def _at_rows(d):
    return [k for k in (d.at or {}) if k != "where"]


@pytest.mark.parametrize("topic", TOPICS)
def test_markdown_renders(topic):
    from markdown_it import MarkdownIt

    d = derive(topic, at=[1.0, 2.0])
    md = d.to_markdown()
    assert md == d._repr_markdown_()
    blocks = re.findall(r"^\$\$ (.+) \$\$$", md, flags=re.M)
    assert len(blocks) == len(d.definitions) + len(d.steps) + 1
    assert [s.latex for s in d.steps] == blocks[len(d.definitions) : -1]
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<strong>") >= len(d.steps) and "<table>" in html
    for s in d.steps:
        assert f"<code>{s.key}</code>" in html


@pytest.mark.parametrize("topic", TOPICS)
def test_json_round_trips(topic):
    d = derive(topic, at=[1.0, 2.0])
    data = json.loads(d.to_json())
    assert data == d.to_dict()
    assert set(data) >= {"topic", "title", "definition", "steps", "result", "at"}
    assert all(set(s) >= {"key", "rule", "explanation", "latex"} for s in data["steps"])
    assert json.loads(json.dumps(data)) == data


def test_text_needs_no_sympy_and_derive_is_lazy():
    code = (
        "import sys, softgrad as sg\n"
        "assert 'softgrad.teaching' not in sys.modules\n"
        "text = sg.derive('softmax', at=[1, 2, 3]).to_text()\n"
        "sg.derive('cross_entropy').to_latex(); sg.derive('softmax_layer').to_markdown()\n"
        "print('sympy' in sys.modules, 'S_i(δ_ij − S_j)' in text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine here (CI: latex2mathml above)")
def test_latex_compiles_with_pdflatex(tmp_path):
    """Where a TeX engine exists, every topic's align environment compiles (amsmath only)."""
    parts = [derive(t).to_latex() + "\n\n" + derive(t, at=[1.0, 2.0]).to_latex() for t in TOPICS]
    doc = (
        "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
        + "\n\n".join(parts)
        + "\n\\end{document}\n"
    )
    (tmp_path / "derive.tex").write_text(doc)
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "derive.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "derive.pdf").exists()


def test_rendering_is_thread_safe():
    """The explorer's server renders from a thread pool: the printers keep no shared state."""
    from concurrent.futures import ThreadPoolExecutor

    expected = {t: (derive(t).to_latex(), derive(t).to_text()) for t in TOPICS}
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: (t, derive(t).to_latex(), derive(t).to_text()), TOPICS * 4))
    assert all(expected[t] == (tex, text) for t, tex, text in got)
