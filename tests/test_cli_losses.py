"""``softgrad xent`` and ``softgrad check``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import softgrad.losses
from softgrad.interfaces.cli import main


def test_xent_json_matches_torch(capsys):
    torch = pytest.importorskip("torch")
    assert main(["xent", "2", "1", "0.1", "--target", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    x = torch.tensor([[2.0, 1.0, 0.1]], dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x, torch.tensor([0]))
    loss.backward()
    assert out["loss"] == pytest.approx(loss.item(), rel=1e-14)
    np.testing.assert_allclose(out["grad"], x.grad.numpy()[0], rtol=1e-13)


def test_xent_options_json(capsys):
    torch = pytest.importorskip("torch")
    argv = ["xent", "1", "-2", "0.5", "-y", "2", "--label-smoothing", "0.2", "--json"]
    argv += ["--weight", "1", "2", "3"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    expected = torch.nn.functional.cross_entropy(
        x, torch.tensor([2]), weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), label_smoothing=0.2
    )
    assert out["loss"] == pytest.approx(expected.item(), rel=1e-14)


def test_xent_table(capsys):
    assert main(["xent", "2", "1", "0.1", "--target", "0"]) == 0
    out = capsys.readouterr().out
    assert "cross-entropy = 0.41703002" in out and "-0.34099886" in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["xent", "2", "1", "--target", "5"], "target holds class index 5"),
        (["xent", "2", "x", "--target", "0"], "'x' is not a number"),
        (["xent", "2", "1", "--target", "0", "--weight", "1"], "--weight"),
        (["xent", "2", "1", "--target", "0", "--label-smoothing", "3"], "label_smoothing"),
    ],
)
def test_xent_errors(capsys, argv, match):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_check_passes_and_lists_every_derivative(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    for name in (
        "softmax_jacobian", "log_softmax_jacobian", "softmax_vjp", "softmax_jvp", "log_softmax_vjp",
        "log_softmax_jvp", "softmax_hessian", "cross_entropy_grad", "cross_entropy_hvp",
        "dense_softmax_jacobian (W)", "dense_softmax_jacobian (b)", "dense_softmax_jacobian (x)",
        "dense_softmax_vjp (dW)", "linear_cross_entropy (dW)",
    ):
        assert name in out
    assert "NO" not in out


def test_check_fails_on_a_wrong_derivative(capsys, monkeypatch):
    right = softgrad.losses.cross_entropy_hvp
    monkeypatch.setattr(softgrad.losses, "cross_entropy_hvp", lambda *a, **k: 1.01 * right(*a, **k))
    assert main(["check", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["passed"]
    failed = [c["function"] for c in out["checks"] if not c["passed"]]
    assert failed == ["cross_entropy_hvp"]
