r"""The dense softmax layer ``P(W) = softmax(W x + b)`` and its exact derivatives.

``W`` has shape ``(T, N)`` as in the seed post: ``T`` classes, ``N`` features, ``logits = W x + b``.
With :math:`S = \operatorname{softmax}(W x + b)` and its Jacobian
:math:`DS_{ti} = S_t (\delta_{ti} - S_i)`, the chain rule gives

.. math::
    \frac{\partial P_t}{\partial W_{ij}} = S_t (\delta_{ti} - S_i)\, x_j, \qquad
    \frac{\partial P_t}{\partial b_i} = S_t (\delta_{ti} - S_i), \qquad
    \frac{\partial P_t}{\partial x_j} = \sum_i S_t (\delta_{ti} - S_i) W_{ij}.

:func:`dense_softmax_vjp` contracts these with a cotangent in O(T N) without forming them.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .._array import Array, array_namespace, as_float_array, compute_dtype
from ..core.softmax import softmax

__all__ = ["dense_softmax", "dense_softmax_jacobian", "dense_softmax_vjp"]

_WRT = ("W", "b", "x")


def _validated_layer_inputs(x: Any, W: Any, b: Any) -> tuple[Any, Array, Array, Array | None, Any]:
    """Validate ``x`` (N,) or (B, N), ``W`` (T, N), ``b`` (T,) and cast them to their common dtype."""
    _, x = as_float_array(x, "x")
    _, W = as_float_array(W, "W")
    if b is not None:
        _, b = as_float_array(b, "b")
    xp = array_namespace(x, W, b)
    if W.ndim != 2:
        raise ValueError(f"W must have shape (T, N), got {tuple(W.shape)}")
    if x.ndim not in (1, 2) or x.shape[-1] != W.shape[1]:
        raise ValueError(
            f"x must have shape (N,) or (B, N) with N = W.shape[1] = {W.shape[1]}, got {tuple(x.shape)}"
        )
    if b is not None and tuple(b.shape) != (W.shape[0],):
        raise ValueError(f"b must have shape ({W.shape[0]},), got {tuple(b.shape)}")
    dtype = xp.result_type(x.dtype, W.dtype, *(() if b is None else (b.dtype,)))
    x, W = xp.astype(x, dtype, copy=False), xp.astype(W, dtype, copy=False)
    return xp, x, W, (None if b is None else xp.astype(b, dtype, copy=False)), dtype


def _layer_inputs(x: Any, W: Any, b: Any) -> tuple[Any, Array, Array, Array | None, Any, Any]:
    """:func:`_validated_layer_inputs` in the compute dtype, with the output dtype and the compute dtype."""
    xp, x, W, b, out_dtype = _validated_layer_inputs(x, W, b)
    cd = compute_dtype(xp, out_dtype)
    x, W = xp.astype(x, cd, copy=False), xp.astype(W, cd, copy=False)
    b = None if b is None else xp.astype(b, cd, copy=False)
    return xp, x, W, b, out_dtype, cd


def _logits(xp: Any, x: Array, W: Array, b: Array | None) -> Array:
    z = xp.matmul(x, xp.matrix_transpose(W))
    return z if b is None else z + b


def dense_softmax(x: Array, W: Array, b: Array | None = None) -> Array:
    r"""The softmax layer: class probabilities of the logits ``W x + b``.

    .. math:: P(W) = S(W x + b), \qquad S_t(z) = \frac{e^{z_t}}{\sum_i e^{z_i}}

    Parameters
    ----------
    x : array of shape (N,) or (B, N)
        One input, or a batch of inputs (one per row).
    W : array of shape (T, N)
        The weights: row ``t`` scores class ``t``.
    b : array of shape (T,), optional
        The biases (0 when omitted).

    Returns
    -------
    array of shape (T,) or (B, T)
        The probabilities, in the promoted dtype of the inputs and their array library
        (float32 computes in float64).

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> sg.dense_softmax([2.0, -1.0], W)  # softmax([2, -1, 1])
    array([0.70538451, 0.03511903, 0.25949646])
    """
    xp, x, W, b, out_dtype, _ = _layer_inputs(x, W, b)
    return xp.astype(softmax(_logits(xp, x, W, b), axis=-1), out_dtype, copy=False)


def dense_softmax_jacobian(x: Array, W: Array, b: Array | None = None, *, wrt: str = "W") -> Array:
    r"""The full Jacobian of :func:`dense_softmax` with respect to ``W``, ``b`` or ``x``.

    For ``wrt="W"``, ``W`` is linearized row-major (``W_ij`` is column ``i*N + j``, 0-based) and

    .. math:: D_{ij} P_t = \frac{\partial P_t}{\partial W_{ij}} = S_t (\delta_{ti} - S_i)\, x_j

    which is the chain-rule product :math:`DS(g(W)) \cdot Dg(W)` of the softmax Jacobian
    ``(T, T)`` and the Jacobian of ``g(W) = W x``, ``Dg = I_T \otimes x^T`` of shape ``(T, T N)``.
    For ``wrt="b"`` it is the softmax Jacobian :math:`S_t (\delta_{ti} - S_i)` and for ``wrt="x"``
    its product with ``W``.

    Parameters
    ----------
    x, W, b
        As for :func:`dense_softmax`.
    wrt : {"W", "b", "x"}, optional
        The argument to differentiate with respect to (default ``"W"``).

    Returns
    -------
    array
        ``(T, T*N)`` for ``"W"``, ``(T, T)`` for ``"b"``, ``(T, N)`` for ``"x"``; with a batch
        ``x`` of shape ``(B, N)`` one Jacobian per sample, with a leading ``B`` axis. Dense: use
        :func:`dense_softmax_vjp` for gradients.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> x, W = np.array([1.0, 2.0]), np.zeros((2, 2))  # S = (1/2, 1/2)
    >>> sg.dense_softmax_jacobian(x, W)  # columns W_00, W_01, W_10, W_11
    array([[ 0.25,  0.5 , -0.25, -0.5 ],
           [-0.25, -0.5 ,  0.25,  0.5 ]])
    >>> sg.dense_softmax_jacobian(x, W, wrt="b")
    array([[ 0.25, -0.25],
           [-0.25,  0.25]])
    """
    if wrt not in _WRT:
        raise ValueError(f"wrt must be one of 'W', 'b', 'x', got {wrt!r}")
    xp, x, W, b, out_dtype, _ = _layer_inputs(x, W, b)
    s = softmax(_logits(xp, x, W, b), axis=-1)
    t = s.shape[-1]
    eye = xp.eye(t, dtype=s.dtype, device=array_api_compat.device(s))
    js = s[..., :, None] * (eye - s[..., None, :])  # (..., T, T)
    if wrt == "b":
        jac = js
    elif wrt == "x":
        jac = xp.matmul(js, W)
    else:
        jac = js[..., :, :, None] * x[..., None, None, :]  # (..., T, T, N)
        jac = xp.reshape(jac, (*tuple(js.shape[:-1]), t * W.shape[1]))
    return xp.astype(jac, out_dtype, copy=False)


def dense_softmax_vjp(x: Array, W: Array, s: Array, g: Array) -> tuple[Array, Array, Array]:
    r"""Vector-Jacobian product of :func:`dense_softmax`: ``(dx, dW, db)`` from a cotangent.

    With :math:`\bar z = S \odot (g - \langle g, S \rangle)` (the softmax VJP),

    .. math:: dx = \bar z\, W, \qquad dW_{ij} = \bar z_i\, x_j, \qquad db = \bar z

    summed over the batch for ``dW`` and ``db``. O(T N) per sample; no Jacobian is formed.
    With ``g = -e_y / S_y`` (the cotangent of ``-log P_y``) this is the seed gradient
    :math:`\partial\, \mathrm{xent} / \partial W_{ij} = (S_i - \delta_{yi}) x_j`.

    Parameters
    ----------
    x : array of shape (N,) or (B, N)
        The layer's input.
    W : array of shape (T, N)
        The weights.
    s : array of shape (T,) or (B, T)
        ``dense_softmax(x, W, b)`` (the bias enters only through ``s``).
    g : array of the shape of ``s``
        The cotangent ``dL/dP``.

    Returns
    -------
    (dx, dW, db)
        Of shapes ``x.shape``, ``(T, N)`` and ``(T,)``, in the promoted dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> x, W = np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> s = sg.dense_softmax(x, W)
    >>> dx, dW, db = sg.dense_softmax_vjp(x, W, s, -np.eye(3)[0] / s[0])  # d(-log P_0)
    >>> np.allclose(dW, np.outer(s - np.eye(3)[0], x))  # (S_i - delta_0i) x_j
    True
    """
    xp, xc, Wc, _, out_dtype, cd = _layer_inputs(x, W, None)
    _, s = as_float_array(s, "s")
    _, g = as_float_array(g, "g")
    expected = (*tuple(xc.shape[:-1]), Wc.shape[0])
    for name, a in (("s", s), ("g", g)):
        if tuple(a.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(a.shape)}")
    out_dtype = xp.result_type(out_dtype, s.dtype, g.dtype)
    s, g = xp.astype(s, cd, copy=False), xp.astype(g, cd, copy=False)
    zbar = s * (g - xp.sum(g * s, axis=-1, keepdims=True))
    dx = xp.matmul(zbar, Wc)
    if xc.ndim == 1:
        dW = zbar[:, None] * xc[None, :]
        db = zbar
    else:
        dW = xp.matmul(xp.matrix_transpose(zbar), xc)
        db = xp.sum(zbar, axis=0)
    return tuple(xp.astype(a, out_dtype, copy=False) for a in (dx, dW, db))  # type: ignore[return-value]
