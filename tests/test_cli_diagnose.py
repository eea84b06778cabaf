"""``softgrad diagnose FILE.py:FUNCTION --kind KIND``: exit 0 when right, 1 when wrong, 2 when misused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from softgrad.interfaces.cli import main

USER_FILE = textwrap.dedent(
    """
    import numpy as np

    def jacobian(s):
        return np.diag(s) - np.outer(s, s)

    def diagonal(s):
        return s * (1 - s)

    def xent_sum_as_mean(z, y):
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True) - np.eye(z.shape[1])[y]

    NOT_A_FUNCTION = 3
    """
)


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(USER_FILE)
    return path


def run(capsys, *argv):
    code = main(["diagnose", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_correct_function_exits_0(capsys, user_file):
    code, out, err = run(capsys, f"{user_file}:jacobian", "--kind", "softmax_jacobian", "--takes", "probs")
    assert code == 0 and err == ""
    assert "correct" in out


def test_mistake_exits_1_and_names_it(capsys, user_file):
    code, out, _ = run(capsys, f"{user_file}:diagonal", "--kind", "softmax_jacobian", "--takes", "probs")
    assert code == 1
    assert "diagonal-only" in out and "case-i-ne-j" in out


def test_json_lists_every_mistake(capsys, user_file):
    code, out, _ = run(capsys, f"{user_file}:xent_sum_as_mean", "--kind", "cross_entropy_grad", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ids"] == ["no-max-shift", "batch-scale"] and data["reduction"] == "mean"
    code, out, _ = run(
        capsys,
        f"{user_file}:xent_sum_as_mean",
        "--kind",
        "cross_entropy_grad",
        "--reduction",
        "sum",
        "--json",
    )
    assert json.loads(out)["ids"] == ["no-max-shift"]


def test_time_limit_option(capsys, tmp_path):
    user_file = tmp_path / "slow.py"
    user_file.write_text("import time\n\ndef softmax(x):\n    time.sleep(5)\n    return x\n")
    code, out, _ = run(capsys, f"{user_file}:softmax", "--kind", "softmax", "--time-limit", "0.2", "--json")
    data = json.loads(out)
    assert code == 1 and data["ids"] == ["raised"] and "--time-limit" in data["findings"][0]["evidence"]


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        ("missing.py:f", [], "no such file"),
        ("{file}:nope", [], "no function 'nope'"),
        ("{file}:NOT_A_FUNCTION", [], "not a function"),
        ("{file}", [], "expected a file and a function name"),
        ("{file}:jacobian", ["--kind", "jacobian"], "--kind: expected one of softmax"),
        ("{file}:jacobian", ["--kind", "softmax", "--takes", "probs"], "takes logits only"),
        ("{file}:jacobian", ["--kind", "softmax", "--reduction", "none"], "reduction"),
    ],
)
def test_bad_invocation_exits_2_with_one_line(capsys, user_file, target, extra, message):
    argv = [target.format(file=user_file), *(extra or ["--kind", "softmax"])]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("softgrad: error: ") and message in err and err.count("\n") == 1


def test_file_that_fails_to_import_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise ImportError('no such thing')\n")
    code, _, err = run(capsys, f"{bad}:f", "--kind", "softmax")
    assert code == 2 and "importing it raised ImportError" in err


def test_python_dash_m(user_file):
    cmd = [
        sys.executable,
        "-m",
        "softgrad",
        "diagnose",
        f"{user_file}:diagonal",
        "--kind",
        "softmax_jacobian",
    ]
    done = subprocess.run([*cmd, "--takes", "probs", "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["ids"] == ["diagonal-only"]
