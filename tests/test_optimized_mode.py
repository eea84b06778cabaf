"""softgrad under ``python -OO`` (docstrings stripped, asserts removed): it imports and computes.

Regression test: ``cross_entropy.py`` once filled its shared parameter list into the docstrings
with ``__doc__ % ...``, which raised a TypeError at import under ``-OO`` (``__doc__`` is None).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

CODE = """
import json, numpy as np, softgrad as sg
x = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
y = np.array([0, 1])
loss, grad = sg.cross_entropy_value_and_grad(x, y)
print(json.dumps({
    "doc": sg.cross_entropy.__doc__,
    "loss": float(sg.cross_entropy(x, y)),
    "grad": grad.tolist(),
    "softmax": sg.softmax(np.float32([1.0, 2.0, 3.0])).tolist(),
    "linear": float(sg.linear_cross_entropy(x, np.eye(3), y)),
}))
"""


@pytest.mark.parametrize("kernels", ["on", "off"])
def test_imports_and_computes_under_OO(kernels):
    env = dict(os.environ)
    if kernels == "off":
        env["SOFTGRAD_DISABLE_KERNELS"] = "1"
    proc = subprocess.run([sys.executable, "-OO", "-c", CODE], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["doc"] is None  # really -OO
    x = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x, torch.tensor([0, 1]))
    loss.backward()
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-14)
    assert got["linear"] == pytest.approx(loss.item(), rel=1e-14)
    np.testing.assert_allclose(got["grad"], x.grad.numpy(), rtol=1e-13, atol=1e-16)
    expected = torch.softmax(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 0).numpy()
    np.testing.assert_allclose(got["softmax"], expected, rtol=1e-7)
