r"""softmax, log_softmax and logsumexp as JAX functions with closed-form JVPs (``jax.custom_jvp``).

The primal is softgrad's array-API reference on the JAX array (traceable: ``jit``, ``vmap``);
the tangent is the closed form, written in JAX operations on the primal output, so reverse mode
(``grad``, by transposing the linear tangent) and the JVP of a gradient need nothing more:

.. math:: \dot s = s \odot (\dot x - \langle s, \dot x\rangle), \quad
          \dot{\log s} = \dot x - \langle s, \dot x\rangle, \quad
          \dot{\operatorname{lse}} = \langle s, \dot x\rangle

This module imports JAX: only the adapter and the public functions' dispatch import it, lazily.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from ._computes import get


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def softmax(x: Any, axis: int) -> Any:
    return get("softmax_reference")(x, axis)


@softmax.defjvp
def _softmax_jvp(axis: int, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    (x,), (dx,) = primals, tangents
    s = softmax(x, axis)
    return s, s * (dx - jnp.sum(s * dx, axis=axis, keepdims=True))


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def log_softmax(x: Any, axis: int) -> Any:
    return get("log_softmax_reference")(x, axis)


@log_softmax.defjvp
def _log_softmax_jvp(axis: int, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    (x,), (dx,) = primals, tangents
    return log_softmax(x, axis), dx - jnp.sum(softmax(x, axis) * dx, axis=axis, keepdims=True)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def logsumexp(x: Any, axis: int, keepdims: bool) -> Any:
    return get("logsumexp_reference")(x, axis, keepdims)


@logsumexp.defjvp
def _logsumexp_jvp(axis: int, keepdims: bool, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
    (x,), (dx,) = primals, tangents
    return logsumexp(x, axis, keepdims), jnp.sum(softmax(x, axis) * dx, axis=axis, keepdims=keepdims)
