"""``softgrad softmax``, ``softgrad jacobian`` and ``softgrad demo``, checked against SciPy.

Through ``softgrad.interfaces.cli.main([...])`` in process, and once through
``python -m softgrad`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from softgrad.interfaces.cli import main

special = pytest.importorskip("scipy.special")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([argv[0], "--json", *argv[1:]]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


def as_floats(values: list) -> np.ndarray:
    """JSON numbers, with the strings "inf", "-inf" and "nan" that stand for non-finite ones."""
    return np.array(values, dtype=float)  # float("-inf") parses the strings


def test_softmax_json(capsys):
    data = run_json(capsys, "softmax", "1", "2", "3")
    assert data["x"] == [1.0, 2.0, 3.0] and data["temperature"] == 1.0
    np.testing.assert_allclose(data["softmax"], special.softmax([1.0, 2.0, 3.0]), rtol=1e-15)
    np.testing.assert_allclose(data["softmax"], [0.09003057, 0.24472847, 0.66524096], atol=5e-9)


def test_softmax_seed_that_overflows_naively(capsys):
    data = run_json(capsys, "softmax", "1000", "2000", "3000")
    assert data["softmax"] == [0.0, 0.0, 1.0]


def test_log_softmax_with_temperature_and_negative_numbers(capsys):
    data = run_json(capsys, "softmax", "-1.5", "0", "2e1", "--temperature", "2.5", "--log")
    x = np.array([-1.5, 0.0, 20.0])
    # SciPy's log_softmax is a few ULP off near 0 (no log1p): compare at the scale of 1 there
    np.testing.assert_allclose(data["log_softmax"], special.log_softmax(x / 2.5), rtol=1e-14, atol=1e-15)
    data = run_json(capsys, "softmax", "0", "-1000", "--log")
    assert data["log_softmax"] == [0.0, -1000.0]


def test_non_finite_values_in_json(capsys):
    data = run_json(capsys, "softmax", "--log", "--", "0", "-inf", "inf")  # -- before "-inf"
    got = as_floats(data["log_softmax"])
    assert got[2] == 0.0 and np.isneginf(got[0]) and np.isneginf(got[1])
    assert data["log_softmax"][0] == "-inf"  # JSON has no infinity: the string stands for it


def test_negative_infinity_and_exponents_are_numbers_not_options(capsys):
    data = run_json(capsys, "softmax", "0", "-inf", "-1e3", "-.5", "--log")
    got = as_floats(data["log_softmax"])
    assert np.isneginf(got[1])
    finite = np.array([0.0, -1000.0, -0.5])
    np.testing.assert_allclose(np.delete(got, 1), special.log_softmax(finite), rtol=1e-15)


@pytest.mark.parametrize("log", [False, True])
def test_jacobian_json(capsys, log):
    args = ["jacobian", "1", "2", "3", "-t", "0.5"] + (["--log"] if log else [])
    data = run_json(capsys, *args)
    s = special.softmax(np.array([1.0, 2.0, 3.0]) / 0.5)
    if log:
        want = (np.eye(3) - s[None, :]) / 0.5
        got = data["log_softmax_jacobian"]
    else:
        want = (np.diag(s) - np.outer(s, s)) / 0.5
        got = data["softmax_jacobian"]
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-16)


def test_tables_are_readable(capsys):
    assert main(["softmax", "1", "2", "3"]) == 0
    out = capsys.readouterr().out
    for value in ("0.090030573", "0.24472847", "0.66524096"):
        assert value in out
    assert main(["jacobian", "1", "2", "3"]) == 0
    out = capsys.readouterr().out
    s = special.softmax([1.0, 2.0, 3.0])
    assert f"{s[0] * (1 - s[0]):.8g}" in out and f"{-s[0] * s[1]:.8g}" in out


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["softmax", "1", "abc"], ["abc", "logits"]),
        (["jacobian", "1", "2", "x3"], ["x3"]),
        (["softmax", "1", "2", "-t", "0"], ["temperature", "0"]),
        (["softmax", "1", "2", "-t", "nan", "--json"], ["temperature", "nan"]),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, names):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("softgrad: error:")
    for name in names:
        assert name in lines[0]


def test_demo_prints_the_seed_examples(capsys, monkeypatch, tmp_path):
    """The core part of the demo: seed examples and the gradient checks of the derivatives.

    The model tour that follows (training on digits, plots) belongs to the models layer and
    takes seconds; it is stubbed out here, and the demo's files go to a temporary folder.
    """
    from softgrad.interfaces import demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "_model_tour", lambda out: True, raising=False)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "0.09003057" in out and "0.66524096" in out  # softmax([1, 2, 3])
    rows = {tuple(cell.strip() for cell in line.split("│")[1:-1]) for line in out.splitlines()}
    # softmax and log_softmax of [1000, 2000, 3000], one row per entry: i, x_i, S_i, log S_i
    assert ("0", "1000", "0.00000000", "-2000.00000000") in rows
    assert ("2", "3000", "1.00000000", "0.00000000") in rows
    assert ("1", "-1000", "0.00000000", "-1000.00000000") in rows  # log_softmax([0, -1000]), exact
    for name in ("softmax_jacobian", "log_softmax_jacobian", "softmax_vjp", "log_softmax_vjp"):
        assert name in out
    assert "NO" not in out  # every gradient check passed
    # the teaching tour: the derivation's steps, the blog-post gradient's two mistakes, the fix
    assert "∂L/∂x_j = S_j \u2212 y_j" in out and "S - y = (-0.340999, 0.242433, 0.098566)" in out
    assert "✗ no-max-shift" in out and "✗ batch-scale" in out and "1/B: correct" in out


def test_python_dash_m_softgrad():
    out = subprocess.run(
        [sys.executable, "-m", "softgrad", "softmax", "1", "2", "3", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    data = json.loads(out.stdout)
    np.testing.assert_allclose(data["softmax"], special.softmax([1.0, 2.0, 3.0]), rtol=1e-15)
    bad = subprocess.run(
        [sys.executable, "-m", "softgrad", "softmax", "one"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "softgrad: error: logits: 'one' is not a number"
    assert bad.stdout == ""
