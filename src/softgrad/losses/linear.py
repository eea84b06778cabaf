r"""Fused linear layer + cross-entropy over chunks of rows: the ``(B, T)`` logits are never held.

For a large number of classes ``T`` (a vocabulary) the logits ``x W^T + b`` of a batch are the
biggest array of a training step. :func:`linear_cross_entropy` computes the loss and, on
request, the gradients with respect to ``x``, ``W`` and ``b`` one chunk of rows at a time:

.. math::
    \bar z_c = \frac{\partial \ell}{\partial z_c} = c_i (a_i\, \operatorname{softmax}(z_c) - q_c),
    \quad dx_c = \bar z_c W, \quad dW \mathrel{+}= \bar z_c^\top x_c,
    \quad db \mathrel{+}= \textstyle\sum_c \bar z_c

so the extra memory is that of one chunk's logits and their temporaries, O(chunk_size * T).
The chunk loop is in :mod:`._linear_chunks`; a row-chunked Dask ``x`` goes to :mod:`._dask`,
which runs that loop once per block, on its worker.
"""

from __future__ import annotations

from typing import Any

from .._array import Array
from .._dasktools import is_dask_collection
from ..core import _computes
from . import _dask, _linear_chunks

__all__ = ["linear_cross_entropy"]


def linear_cross_entropy(
    x: Array,
    W: Array,
    target: Array,
    b: Array | None = None,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Array | None = None,
    chunk_size: int | None = None,
    return_grad: bool = False,
) -> Any:
    r"""``cross_entropy(x @ W.T + b, target)`` computed chunk by chunk, with its gradients.

    .. math::
        \ell = \operatorname{reduce}_i\; \ell_i(W x_i + b), \qquad
        \frac{\partial \ell}{\partial W_{ij}} = \sum_r \bar z_{ri}\, x_{rj}
        \;=\; \sum_r (S_{ri} - \delta_{y_r i})\, x_{rj} \text{ (plain sum)}

    the seed gradient :math:`\partial\, \mathrm{xent} / \partial W_{ij} = (S_i - \delta_{yi}) x_j`
    summed over the rows. Rows are processed ``chunk_size`` at a time: the logits of one chunk
    are formed, reduced to the loss and (with ``return_grad``) turned into their gradient
    :math:`\bar z`, which is contracted with ``W`` and ``x`` at once. The full ``(B, T)`` logits
    never exist; the extra memory is O(chunk_size * T) on top of the inputs and the gradients.

    Parameters
    ----------
    x : array of shape (B, N) or (N,)
        The inputs (hidden states).
    W : array of shape (T, N)
        The output weights, one row per class.
    target : array
        Class indices of shape ``(B,)`` or probabilities of shape ``(B, T)``, as for
        :func:`cross_entropy`.
    b : array of shape (T,), optional
        The biases.
    weight, ignore_index, label_smoothing, reduction, sample_weight
        As for :func:`cross_entropy`.
    chunk_size : int, optional
        Rows per chunk (>= 1). The default makes one chunk's logits about 96 MiB in the input
        dtype: ``96 MiB // (4 T)`` rows for float32 (786 rows for T = 32000): smaller chunks
        leave the matrix products too thin to run at full speed.
    return_grad : bool, optional
        Also return the gradients of the loss.

    Returns
    -------
    loss, or (loss, (dx, dW, db))
        ``loss`` as :func:`cross_entropy` returns it. ``dx`` has ``x``'s shape, ``dW`` ``(T, N)``
        and ``db`` ``(T,)`` (the gradient with respect to the bias, also when ``b`` is None).
        For ``reduction="none"`` the gradients are those of the sum of the per-row losses.

    Notes
    -----
    The matrix products run in the input dtype (as PyTorch does; float32 BLAS for float32),
    the softmax part in the compute dtype; the result equals the unfused
    ``cross_entropy_value_and_grad(x @ W.T + b, ...)`` followed by the two products, up to
    rounding. NumPy input goes through BLAS chunk by chunk (``dW`` accumulated in place by
    ``gemm``); a row-chunked Dask ``x`` runs this NumPy code once per block, on its worker; any
    other array library goes through its own ``matmul``.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> rng = np.random.default_rng(0)
    >>> x, W, y = rng.normal(size=(6, 4)), rng.normal(size=(10, 4)), np.array([0, 3, 9, 2, 2, 5])
    >>> loss, (dx, dW, db) = sg.linear_cross_entropy(x, W, y, chunk_size=4, return_grad=True)
    >>> bool(np.isclose(loss, sg.cross_entropy(x @ W.T, y)))
    True
    >>> g = sg.cross_entropy_grad(x @ W.T, y)
    >>> np.allclose(dW, g.T @ x), np.allclose(dx, g @ W), np.allclose(db, g.sum(0))
    (True, True, True)
    """
    options: dict[str, Any] = dict(
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
        sample_weight=sample_weight, chunk_size=chunk_size, return_grad=return_grad,
    )
    if is_dask_collection(x) and x.ndim == 2:  # row-chunked Dask x: one task per block (#6)
        return _dask.dask_linear_cross_entropy(x, W, target, b, **options)
    return _linear_chunks.chunked_linear_cross_entropy(x, W, target, b, **options)


_computes.register("linear_cross_entropy")(linear_cross_entropy)  # for the autodiff rules
_computes.register("linear_chunk_size")(_linear_chunks.check_chunk_size)  # the torch HVP's chunks
