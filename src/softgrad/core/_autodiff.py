"""The public functions' hand-off to the closed-form autodiff rules, for torch and JAX input.

``sg.softmax(t)`` on a torch tensor that requires grad, or on a JAX array (a tracer inside
``jit``/``grad`` included), goes through the same rule as ``softgrad.torch.softmax`` /
``softgrad.jax.softmax``: one autograd node whose derivative is the closed form, instead of the
dozens of elementary operations of the reference code. Neither library is imported here: a
tensor of a library that was never imported cannot be passed in, so ``sys.modules`` tells.
"""

from __future__ import annotations

import sys
from typing import Any


def adapter(x: Any) -> str | None:
    """``"torch"`` for a floating torch tensor that requires grad, ``"jax"`` for a floating JAX
    array or tracer, else None (the public function computes as usual)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch" if x.requires_grad and x.is_floating_point() else None
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return "jax" if getattr(x.dtype, "kind", "") == "f" else None
    return None


def takes(x: Any, temperature: Any, where: Any, out: Any) -> bool:
    """Whether a rule takes this call: autodiff input and no option beyond the rules' own."""
    if where is not None or out is not None or adapter(x) is None:
        return False
    return isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 1


def _torch_dim(x: Any, axis: Any) -> int:
    from . import _torch_rules

    return _torch_rules.positive_dim(axis, x.ndim, "axis")


def softmax(x: Any, axis: Any) -> Any:
    if adapter(x) == "torch":
        from . import _torch_rules

        return _torch_rules.softmax(x, _torch_dim(x, axis))
    from . import _jax_rules

    return _jax_rules.softmax(x, axis)


def log_softmax(x: Any, axis: Any) -> Any:
    if adapter(x) == "torch":
        from . import _torch_rules

        return _torch_rules.log_softmax(x, _torch_dim(x, axis))
    from . import _jax_rules

    return _jax_rules.log_softmax(x, axis)


def logsumexp(x: Any, axis: Any, keepdims: bool) -> Any:
    if adapter(x) == "torch":
        from . import _torch_rules

        return _torch_rules.logsumexp(x, _torch_dim(x, axis), keepdims)
    from . import _jax_rules

    return _jax_rules.logsumexp(x, axis, keepdims)
