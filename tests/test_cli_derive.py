"""``softgrad derive``: every format, ``--at``, ``--verify``, ``--list`` and the error line.

In process through ``softgrad.interfaces.cli.main([...])``; once as a real command, where the
import of SymPy would show (the text rendering must not need it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import softgrad as sg
from softgrad.interfaces.cli import main
from softgrad.teaching import TOPICS, derive


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["derive", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_text(capsys):
    code, out, err = run(capsys, "softmax")
    assert code == 0 and err == ""
    for s in derive("softmax").steps:
        assert s.rule in out and s.key in out
    assert "∂S_i/∂x_j = S_i(δ_ij − S_j)" in out
    assert "∂S_i/∂x_i = S_i(1 − S_i)" in out and "−S_i·S_j   (i ≠ j)" in out


def test_latex_markdown_json(capsys):
    d = derive("cross_entropy")
    code, out, _ = run(capsys, "cross_entropy", "--format", "latex")
    assert code == 0 and out == d.to_latex() + "\n"
    code, out, _ = run(capsys, "cross_entropy", "-f", "markdown")
    assert code == 0 and out == d.to_markdown() + "\n"
    code, out, _ = run(capsys, "cross_entropy", "--format", "json")
    assert code == 0 and json.loads(out) == d.to_dict()


def test_at_a_point(capsys):
    code, out, _ = run(capsys, "softmax", "--at", "1", "2", "3", "--format", "json")
    data = json.loads(out)
    np.testing.assert_allclose(data["at"]["S"], sg.softmax([1.0, 2.0, 3.0]), rtol=1e-15)
    np.testing.assert_allclose(data["at"]["jacobian"], sg.softmax_jacobian([1.0, 2.0, 3.0]), rtol=1e-15)
    code, out, _ = run(capsys, "cross_entropy", "--at", "2", "1", "0.1")
    assert code == 0 and "-0.340999" in out  # S - y for class 0
    code, out, _ = run(capsys, "softmax", "--at", "-1", "-2e1")  # negative numbers stay positional
    assert code == 0 and "x = (-1, -20)" in out


def test_target_weights_and_bias(capsys):
    code, out, _ = run(capsys, "cross_entropy", "--at", "1", "2", "3", "--target", "2", "--format", "json")
    assert code == 0 and json.loads(out)["at"] == derive("cross_entropy", at=[1, 2, 3], target=2).at
    code, out, _ = run(capsys, "cross_entropy", "--at", "1", "2", "--target", "0.25", "0.75")
    assert code == 0 and "soft targets y = (0.25, 0.75)" in out
    argv = [
        "cross_entropy_layer",
        "--at",
        "1",
        "-2",
        "--W",
        "0.5 1",
        "-1, 0.25",
        "2 0",
        "--b",
        "0",
        "1",
        "-1",
    ]
    code, out, _ = run(capsys, *argv, "--target", "1", "--format", "json")
    want = derive("cross_entropy_layer", at=[1, -2], W=[[0.5, 1], [-1, 0.25], [2, 0]], b=[0, 1, -1], target=1)
    assert code == 0 and json.loads(out)["at"] == want.at


def test_verify(capsys):
    code, out, _ = run(capsys, "sigmoid", "--verify")
    assert code == 0
    assert "verify sigmoid" in out and "checks all passed" in out and "FAIL" not in out
    code, out, _ = run(capsys, "logsumexp", "--verify", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["verify"]["ok"] and data["verify"]["sizes"] == [2, 3, 4, 5]


def test_list(capsys):
    code, out, _ = run(capsys, "--list")
    assert code == 0
    for name in TOPICS:
        assert name in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sofmax"], "unknown topic 'sofmax' (did you mean 'softmax'?); the topics are: softmax, "),
        (["cross_entropi"], "did you mean 'cross_entropy'?"),
        ([], "give a topic"),
        (["softmax", "--at", "1", "x"], "--at: 'x' is not a number"),
        (["sigmoid", "--at", "1", "2", "3"], "two logits"),
        (["softmax", "--at", "nan"], "at must hold finite numbers"),
        (["softmax", "--at", "1", "2", "--target", "1"], "softmax takes no target="),
        (["cross_entropy", "--target", "1"], "target= needs at="),
        (["cross_entropy", "--at", "1", "2", "--target", "3"], "target must be a class in 0..1"),
        (["cross_entropy", "--at", "1", "2", "--target", "0.5", "x"], "--target: 'x' is not a number"),
        (["softmax_layer", "--at", "1", "2", "--W", "1 2", "3"], "--W: every row needs the same number"),
        (["softmax_layer", "--at", "1", "2", "--W", "1 2 3"], "one column per entry of at (2)"),
        (["softmax_layer", "--at", "1", "2", "--W", "1 y"], "--W: 'y' is not a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("softgrad: error: ") and err.count("\n") == 1
    assert message in err


def test_bad_format_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["derive", "softmax", "--format", "html"])
    assert exc.value.code == 2


def test_the_command_prints_without_sympy():
    code = (
        "import sys\n"
        "from softgrad.interfaces.cli import main\n"
        "rc = main(['derive', 'softmax'])\n"
        "print('SYMPY' if 'sympy' in sys.modules else 'NO-SYMPY', rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "quotient rule" in out and out.split()[-2:] == ["NO-SYMPY", "0"]
