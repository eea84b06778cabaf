r"""Cross-entropy of logits, its gradient and its Hessian-vector product.

Everything here is built on the core's log-sum-exp (the private ``_shift`` helper of
:mod:`softgrad.core.softmax`), never on ``log(softmax)``. With the weighted target vector of a
row

.. math:: q_j = (1 - \varepsilon)\, w_y\, \delta_{jy} + \frac{\varepsilon}{C} w_j
          \quad\text{(class indices)}, \qquad
          q_j = w_j \left((1 - \varepsilon) t_j + \frac{\varepsilon}{C}\right)
          \quad\text{(probabilities)},

and its total :math:`a = \sum_j q_j`, the loss of a row, its gradient and its Hessian are

.. math:: \ell = -\sum_j q_j \log p_j, \qquad
          \frac{\partial \ell}{\partial o} = a\, p - q, \qquad
          \frac{\partial^2 \ell}{\partial o^2} = a \left(\operatorname{diag}(p) - p p^\top\right),

with :math:`p = \operatorname{softmax}(o)`. Without weights and smoothing this is the seed
formula ``dl/do = y_hat - y``.

Every public function validates first (:func:`_prepare`, and the one ``out=`` checker of
:mod:`softgrad._array`), then picks the path (:func:`_row_step`: the fused kernel of
:mod:`._ce_kernels` for NumPy float32/float64 logits with class indices), then computes.
Layout of the private tier: :func:`_prepare` flattens the batch axes into rows (classes last);
:func:`_row_targets` builds ``q`` and ``a`` for a block of rows (the weighted-target rule, once;
the kernel's copy is in :mod:`._ce_kernels`); :func:`_block` computes loss and gradient of a
block from one shift of its logits. NumPy input is processed in blocks of rows so that the
float64 temporaries stay in cache and the extra memory stays small; every other backend gets
one block of pure ``xp`` code (lazy for Dask, traceable for JAX).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat

from .. import _array
from .._array import (
    Array,
    as_float_array,
    as_int,
    cast_result,
    check_out,
    is_numpy_array,
    normalize_axis,
    store_out,
)
from ..core import _computes, _dispatch
from ..core.softmax import _log_normalizer_shift, _shift, softmax
from . import _autodiff

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_hvp",
    "cross_entropy_value_and_grad",
]

_REDUCTIONS = ("mean", "sum", "none")
_BLOCK_ELEMENTS = 1 << 16  # NumPy path: rows per block so a block's logits are ~512 KB in float64


# ----------------------------------------------------------------------------------------------
# Validation (public boundary)


class _Options(NamedTuple):
    """Validated options shared by every block of one call."""

    by_index: bool  # class-index targets (else probabilities)
    n_classes: int
    weight: Array | None  # (C,) in the compute dtype
    ignore_index: int
    smoothing: float
    reduction: str
    checked: bool = False  # class indices were checked eagerly: none is out of range


class _Problem(NamedTuple):
    xp: Any
    x: Array  # (R, C) logits in the caller's dtype, classes last (cast block by block)
    target: Array  # (R,) integer labels or (R, C) probabilities in the compute dtype
    sample_weight: Array | None  # (R,) in the compute dtype
    opts: _Options
    axis: int  # the class axis of the caller's logits
    batch_shape: tuple[int, ...]
    out_dtype: Any
    compute_dtype: Any

    @property
    def logits_shape(self) -> tuple[int, ...]:
        return (*self.batch_shape[: self.axis], self.opts.n_classes, *self.batch_shape[self.axis :])


def _is_eager(a: Any) -> bool:
    """Whether looking at ``a``'s values is cheap and allowed (not Dask, not JAX)."""
    return not array_api_compat.is_lazy_array(a)


def _to_namespace(xp: Any, a: Any, like: Array, name: str) -> Array:
    """``a`` as an array of ``xp`` on ``like``'s device (lists and NumPy arrays are converted)."""
    if isinstance(a, bool):
        raise TypeError(f"{name} must be an array, got {a!r}")
    if isinstance(a, (int, float, list, tuple)) or (
        (not isinstance(a, type(like)) and is_numpy_array(a)) or _is_numpy_scalar(a)
    ):
        import numpy as np

        a = np.asarray(a)
        if a.dtype == object or a.dtype.kind in "USVMm":
            raise TypeError(f"{name} must hold numbers, got {a.dtype} values")
        if is_numpy_array(like):
            return a
        return xp.asarray(a, device=array_api_compat.device(like))
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    try:
        array_api_compat.array_namespace(a, like)
    except TypeError:
        raise TypeError(
            f"{name} must be an array of the same library as logits, got {type(a).__name__} "
            f"and {type(like).__name__}"
        ) from None
    return a


def _is_numpy_scalar(a: Any) -> bool:
    import numpy as np

    return isinstance(a, np.generic)


def _check_options(label_smoothing: Any, reduction: Any, ignore_index: Any) -> tuple[float, str, int]:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    if isinstance(label_smoothing, bool):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}")
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}") from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return eps, str(reduction), as_int(ignore_index, "ignore_index")


def _check_indices(xp: Any, target: Array, n_classes: int, ignore: int) -> None:
    """ValueError naming a class index outside ``[0, n_classes)`` that is not ``ignore``.

    Compares with Python ints only where the target's dtype holds them: NumPy 2 refuses to
    compare a uint8 array with -100 (issue #16: MNIST labels come as uint8).
    """
    info = xp.iinfo(target.dtype)
    zero = xp.zeros_like(target)
    bad = xp.zeros(target.shape, dtype=xp.bool, device=array_api_compat.device(target))
    if n_classes <= info.max:
        bad = bad | (target >= n_classes)
    if info.min < 0:
        bad = bad | (target < 0)
    if info.min <= ignore <= info.max:
        bad = bad & (target != ignore)
    if not bool(xp.any(bad)):
        return
    high = bad & (target >= 0) if info.min < 0 else bad
    if bool(xp.any(high)):  # the largest index too high, else the most negative
        first = int(xp.max(xp.where(high, target, zero)))
    else:
        first = int(xp.min(xp.where(bad, target, zero)))
    raise ValueError(f"target holds class index {first}, outside [0, {n_classes}) (ignore_index={ignore})")


def _check_target(
    xp: Any, target: Any, like: Array, shape: tuple[int, ...], axis: int, ignore: int
) -> tuple[bool, Array]:
    """Decide index or probability targets and check them against logits of ``shape``."""
    target = _to_namespace(xp, target, like, "target")
    batch_shape = shape[:axis] + shape[axis + 1 :]
    n_classes = shape[axis]
    dtype = target.dtype
    if xp.isdtype(dtype, "bool") or xp.isdtype(dtype, "complex floating"):
        raise TypeError(f"target must hold integer class indices or real probabilities, got dtype {dtype}")
    tshape = tuple(target.shape)
    if xp.isdtype(dtype, "integral"):
        if tshape != batch_shape:
            raise ValueError(
                f"target of class indices must have shape {batch_shape} (logits' shape {shape} "
                f"without axis {axis}), got {tshape}"
            )
        if _is_eager(target) and math.prod(tshape) > 0:
            _check_indices(xp, target, n_classes, ignore)
        return True, target
    if ignore != -100:
        raise ValueError(
            f"ignore_index applies to class-index targets only, got ignore_index={ignore} with "
            f"probability targets (as PyTorch)"
        )
    if tshape == batch_shape:
        raise TypeError(
            f"target of shape {tshape} holds class indices but has dtype {dtype}: use an integer "
            f"dtype (probability targets must have the logits' shape {shape})"
        )
    if tshape != shape:
        raise ValueError(
            f"target must have shape {batch_shape} (class indices) or {shape} (probabilities), "
            f"got {tshape}"
        )
    if _is_eager(target) and math.prod(tshape) > 0 and bool(xp.any(target < 0)):
        raise ValueError(f"target probabilities must be >= 0, got min {float(xp.min(target))}")
    return False, target


def _check_weight(xp: Any, weight: Any, like: Array, dtype: Any, name: str, shape: tuple) -> Array:
    _, w = as_float_array(_to_namespace(xp, weight, like, name), name)
    if tuple(w.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(w.shape)}")
    return xp.astype(w, dtype, copy=False)


def _check_targets(
    xp: Any,
    like: Array,
    shape: tuple[int, ...],
    axis: int,
    compute_dtype: Any,
    target: Any,
    weight: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
    sample_weight: Any,
) -> tuple[_Options, Array, Array | None]:
    """Validate the target and the options for logits of ``shape`` (class axis ``axis``).

    Returns the options, the target as rows (``(R,)`` labels or ``(R, C)`` probabilities in
    ``compute_dtype``, classes last) and the sample weights as ``(R,)`` in ``compute_dtype``.
    """
    eps, reduction, ignore = _check_options(label_smoothing, reduction, ignore_index)
    n_classes = shape[axis]
    batch_shape = shape[:axis] + shape[axis + 1 :]
    by_index, target = _check_target(xp, target, like, shape, axis, ignore)
    w = None if weight is None else _check_weight(xp, weight, like, compute_dtype, "weight", (n_classes,))
    sw = None
    if sample_weight is not None:
        sw = _check_weight(xp, sample_weight, like, compute_dtype, "sample_weight", batch_shape)
        sw = xp.reshape(sw, (-1,))
    n_rows = math.prod(batch_shape)
    if by_index:
        target = xp.reshape(target, (n_rows,))
    else:
        target = xp.astype(target, compute_dtype, copy=False)
        target = xp.reshape(xp.moveaxis(target, axis, -1), (n_rows, n_classes))
    checked = by_index and _is_eager(target)
    return _Options(by_index, n_classes, w, ignore, eps, reduction, checked), target, sw


def _prepare(
    logits: Any,
    target: Any,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
    sample_weight: Any,
) -> _Problem:
    xp, x = as_float_array(logits, "logits")
    axis = normalize_axis(axis, x.ndim, "axis")
    shape = tuple(x.shape)
    out_dtype = x.dtype
    compute_dtype = _array.compute_dtype(xp, out_dtype)
    opts, target, sw = _check_targets(
        xp, x, shape, axis, compute_dtype, target,
        weight, ignore_index, label_smoothing, reduction, sample_weight,
    )
    batch_shape = shape[:axis] + shape[axis + 1 :]
    rows = xp.reshape(xp.moveaxis(x, axis, -1), (math.prod(batch_shape), shape[axis]))
    return _Problem(xp, rows, target, sw, opts, axis, batch_shape, out_dtype, compute_dtype)


def _check_tangent(problem: _Problem, v: Any) -> Array:
    xp = problem.xp
    v = _to_namespace(xp, v, problem.x, "v")
    _, v = as_float_array(v, "v")
    shape = problem.logits_shape
    if tuple(v.shape) != shape:
        raise ValueError(f"v must have the logits' shape {shape}, got {tuple(v.shape)}")
    vc = xp.astype(v, problem.compute_dtype, copy=False)
    return xp.reshape(xp.moveaxis(vc, problem.axis, -1), tuple(problem.x.shape))


# ----------------------------------------------------------------------------------------------
# Private tier: pure xp code on rows with the classes last
#
# The weighted-target rule, written once for the reference (the fused kernel writes it once too,
# in _ce_kernels.py: _target_row, _q, _q_off). A row with class index y, or probabilities t:
#
#     q_j = valid * ((1 - eps) w_y [j == y] + (eps / C) w_j)       (class indices)
#     q_j = w_j ((1 - eps) t_j + eps / C)                          (probabilities)
#     a   = sum_j q_j;   the mean's denominator: sum_i sw_i valid_i w_{y_i} (or sum_i sw_i)
#
# _row_targets forms q and a; _row_totals gives a alone (for the Hessian), _mean_denominator the
# denominator, both from the per-row class weight w_y of _label_weight.


def _row_targets(xp: Any, target: Array, opts: _Options, dtype: Any) -> tuple[Array, Array]:
    """The weighted target vectors ``q`` (rows, C) and their totals ``a`` (rows, 1).

    Ignored rows get ``q = 0``; class indices out of range (only possible for lazy input, which
    is not checked eagerly) get NaN so that the result shows it.
    """
    c, eps, w = opts.n_classes, opts.smoothing, opts.weight
    if opts.by_index:
        valid = target != opts.ignore_index
        if c - 1 > xp.iinfo(target.dtype).max:  # int8 labels, 1000 classes: arange would wrap (#16)
            target = xp.astype(target, xp.int64)
        classes = xp.arange(c, dtype=target.dtype, device=array_api_compat.device(target))
        hits = target[:, None] == classes[None, :]
        if 0 <= opts.ignore_index < c:  # an ignored row would otherwise hit its class
            hits = hits & valid[:, None]
        q = xp.astype(hits, dtype)
        if eps:
            q = q * (1.0 - eps) + xp.astype(valid, dtype)[:, None] * (eps / max(c, 1))
        if w is not None:
            q = q * w
        if not opts.checked:
            bad = valid & ~((target >= 0) & (target < c))
            q = xp.where(bad[:, None], xp.full_like(q, xp.nan), q)
    else:
        q = target * (1.0 - eps) + eps / max(c, 1) if eps else target
        if w is not None:
            q = q * w
    return q, xp.sum(q, axis=-1, keepdims=True)


def _row_totals(xp: Any, target: Array, opts: _Options, dtype: Any) -> Array:
    """``a = sum_j q_j`` (rows, 1) without forming ``q`` for class indices."""
    if not opts.by_index:
        return _row_targets(xp, target, opts, dtype)[1]
    c, eps = opts.n_classes, opts.smoothing
    valid, wy = _label_weight(xp, target, opts, dtype)
    a = xp.astype(valid, dtype)
    if wy is not None:
        a = a * ((1.0 - eps) * wy + (eps / max(c, 1)) * xp.sum(opts.weight))
    in_range = (target >= 0) & (target < c)
    a = xp.where(valid & ~in_range, xp.full_like(a, xp.nan), a)
    return a[:, None]


def _label_weight(xp: Any, target: Array, opts: _Options, dtype: Any) -> tuple[Array, Array | None]:
    """Per row of class indices: whether it counts (not ignored), and the weight ``w_y`` of its
    class (None without class weights; NaN for an index out of range, possible for lazy input)."""
    valid = target != opts.ignore_index
    if opts.weight is None:
        return valid, None
    in_range = valid & (target >= 0) & (target < opts.n_classes)
    wy = xp.take(opts.weight, xp.where(in_range, target, xp.zeros_like(target)), axis=0)
    return valid, xp.where(valid & ~in_range, xp.full_like(wy, xp.nan), wy)


def _mean_denominator(
    xp: Any, target: Array, sample_weight: Array | None, opts: _Options, dtype: Any
) -> Array:
    """The denominator of ``reduction="mean"``: ``sum_i sw_i w_{y_i}`` over non-ignored rows
    (class indices, as PyTorch) or ``sum_i sw_i`` (probabilities: PyTorch divides by the row count).
    """
    n_rows = target.shape[0]
    if opts.by_index:
        valid, wy = _label_weight(xp, target, opts, dtype)
        per_row = xp.astype(valid, dtype)
        if wy is not None:
            per_row = per_row * wy
        if sample_weight is not None:
            per_row = per_row * sample_weight
        return xp.sum(per_row)
    if sample_weight is not None:
        return xp.sum(sample_weight)
    return xp.asarray(float(n_rows), dtype=dtype, device=array_api_compat.device(target))


def _block(
    xp: Any, x: Array, q: Array, a: Array, want_loss: bool, want_grad: bool
) -> tuple[Array | None, Array | None]:
    """Per-row loss ``-sum_j q_j log p_j`` (rows,) and gradient ``a p - q`` (rows, C).

    The gradient's entry at the row maximum (when it is unique) is computed as
    ``sum_{j != top} q_j - a * sum_{j != top} p_j``: the mass off the top comes from the shift
    directly, so ``p_top - 1`` keeps its few-ULP accuracy when ``p_top -> 1``.
    """
    shifted = _shift(xp, x, -1, None)
    zero = xp.zeros_like(x)
    loss = grad = None
    if want_loss:
        shift = _log_normalizer_shift(xp, shifted)
        shift = xp.where(xp.isinf(shift), xp.zeros_like(shift), shift)
        logp = (shifted.y - shift) + shifted.lo  # -inf where p = 0, as log_softmax
        # 0 * log 0 counts as 0: a class with no target mass never contributes.
        loss = -xp.sum(q * xp.where(q == 0, zero, logp), axis=-1)
    if want_grad:
        total = shifted.ties + shifted.rest
        nonempty = total != 0  # NaN rows stay NaN: the gradient at a NaN logit is unknown
        total = xp.where(nonempty, total, xp.ones_like(total))
        p = shifted.e / total
        top1 = (shifted.y == 0) & (shifted.ties == 1)
        off = shifted.rest / total
        q_off = xp.sum(xp.where(top1, zero, q), axis=-1, keepdims=True)
        grad = xp.where(top1, q_off - a * off, a * p - q)
        grad = xp.where(nonempty, grad, zero)  # an all -inf row has no direction to move in
        # a row without target mass (ignored, or an all-zero probability row) does not enter the
        # loss, so its gradient is 0 even where its logits are NaN (as the kernels give)
        grad = xp.where(a == 0, zero, grad)
    return loss, grad


def _probabilities(xp: Any, x: Array) -> Array:
    """softmax of the rows (all -inf rows give 0), for the Hessian: no error-free shift needed."""
    return softmax(x, axis=-1)


class _Scales(NamedTuple):
    denom: Array | None  # mean: the normalizer D (0-d); else None
    row: Array | None  # (R,) multiplier of each row's derivatives, or None for all ones


def _scales(problem: _Problem) -> _Scales:
    xp = problem.xp
    if problem.opts.reduction != "mean":
        return _Scales(None, problem.sample_weight)
    denom = _mean_denominator(xp, problem.target, problem.sample_weight, problem.opts, problem.compute_dtype)
    # All rows ignored: the mean is 0/0 = NaN (as PyTorch), its gradient 0 (no row moves it).
    safe = xp.where(denom == 0, xp.ones_like(denom), denom)
    inv = xp.where(denom == 0, xp.zeros_like(denom), 1.0 / safe)
    row = inv if problem.sample_weight is None else problem.sample_weight * inv
    return _Scales(denom, row)


def _reduce(problem: _Problem, rows: Array, scales: _Scales) -> Array:
    """Reduce the per-row losses (already multiplied by sample weights) and restore shapes."""
    xp = problem.xp
    if problem.opts.reduction == "none":
        out = xp.reshape(rows, problem.batch_shape)
    elif problem.opts.reduction == "sum":
        out = xp.sum(rows)
    else:
        denom = scales.denom
        safe = xp.where(denom == 0, xp.ones_like(denom), denom)
        out = xp.where(denom == 0, xp.full_like(denom, xp.nan), xp.sum(rows) / safe)
    # a sum beyond the dtype's range (float16 losses) rounds to inf, without an overflow warning
    return store_out(cast_result(xp, out, problem.out_dtype), None)


def _restore(problem: _Problem, g: Array) -> Array:
    xp = problem.xp
    g = xp.reshape(g, (*problem.batch_shape, problem.opts.n_classes))
    return xp.moveaxis(g, -1, problem.axis)


def _blocks(x: Array, n_classes: int) -> list[slice]:
    """Row blocks: cache-sized for NumPy, one block (pure ``xp``, lazy-friendly) otherwise."""
    n_rows = x.shape[0]
    if not is_numpy_array(x) or n_rows == 0:
        return [slice(None)]
    step = max(1, _BLOCK_ELEMENTS // max(1, n_classes))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _row_scale(scale: Array | None, sl: slice) -> Array | None:
    if scale is None:
        return None
    return scale[sl] if scale.ndim else scale


RowStep = Callable[..., tuple[Any, Any]]  # _kernel_rows or _reference_rows


def _row_step(x: Array, opts: _Options) -> RowStep:
    """Pick the path, once per call, for validated rows of logits like ``x``: the fused kernel
    for NumPy float32/float64 rows with class indices checked eagerly (and rows that fit its
    scratch), the reference otherwise. Numba is imported only once the cheap checks pass."""
    if opts.by_index and opts.checked and _dispatch.applies(x):
        from . import _ce_kernels

        if _ce_kernels.fits(x):
            return _kernel_rows
    return _reference_rows


def _kernel_rows(
    xp: Any,
    x: Array,
    target: Array,
    sample_weight: Array | None,
    row_scale: Array | None,
    opts: _Options,
    compute_dtype: Any,
    want_loss: bool,
    want_grad: bool,
    grad_out: Array | None = None,
) -> tuple[Array | None, Array | None]:
    """:func:`_reference_rows` on the fused kernel of :mod:`._ce_kernels` (rows it takes)."""
    from . import _ce_kernels

    return _ce_kernels.cross_entropy_2d(
        x, target, opts.weight, opts.ignore_index, opts.smoothing,
        sample_weight, row_scale, want_loss, want_grad, grad_out,
    )


def _reference_rows(
    xp: Any,
    x: Array,
    target: Array,
    sample_weight: Array | None,
    row_scale: Array | None,
    opts: _Options,
    compute_dtype: Any,
    want_loss: bool,
    want_grad: bool,
    grad_out: Array | None = None,
) -> tuple[Array | None, Array | None]:
    """Sample-weighted per-row losses (R,) in ``compute_dtype`` and the scaled gradient (R, C).

    ``x`` holds rows of logits in any floating dtype; each block is cast to ``compute_dtype``
    on its own, so NumPy input never has a full-size compute-dtype copy. NumPy gradients are
    written into ``grad_out`` (a new array of ``x``'s dtype by default; it may be ``x`` itself:
    every block is read before it is overwritten).
    """
    blocks = _blocks(x, opts.n_classes)
    single = len(blocks) == 1 and grad_out is None
    loss_rows = None
    if not single:
        import numpy as np

        loss_rows = np.empty(x.shape[0], dtype=compute_dtype) if want_loss else None
        if want_grad and grad_out is None:
            grad_out = np.empty(x.shape, dtype=x.dtype)
    grad = grad_out if want_grad else None
    for sl in blocks:
        q, a = _row_targets(xp, target[sl, ...], opts, compute_dtype)
        lb, gb = _block(xp, xp.astype(x[sl, ...], compute_dtype, copy=False), q, a, want_loss, want_grad)
        del q
        if lb is not None:
            weights = _row_scale(sample_weight, sl)
            lb = lb if weights is None else lb * weights
        if gb is not None:
            scale = _row_scale(row_scale, sl)
            if scale is not None:
                gb = gb * (scale[:, None] if scale.ndim else scale)
        if single:
            loss_rows = lb
            grad = None if gb is None else xp.astype(gb, x.dtype, copy=False)
        else:
            if lb is not None:
                loss_rows[sl] = lb  # type: ignore[index]
            if gb is not None:
                grad[sl] = gb  # type: ignore[index]
    return loss_rows, grad


def _check_grad_out(problem: _Problem, out: Any, name: str) -> None:
    """The gradient's ``out=`` array: NumPy, of the logits' shape and dtype."""
    shape = problem.logits_shape
    check_out(out, shape, problem.out_dtype, problem.x, name, "logits")


def _rows_view(problem: _Problem, out: Any) -> Any:
    """``out`` as the (R, C) array the row step may write into directly, or None.

    Directly when the classes are the last axis of a C-contiguous ``out`` of the logits' dtype
    that is either the logits themselves (every row is read before it is overwritten) or
    does not overlap them.
    """
    import numpy as np

    x = problem.x
    if out is None or problem.axis != out.ndim - 1 or not out.flags.c_contiguous or out.dtype != x.dtype:
        return None
    rows = out.reshape(problem.x.shape)
    same = rows.ctypes.data == problem.x.ctypes.data and rows.strides == problem.x.strides
    return rows if same or not np.shares_memory(rows, problem.x) else None


def _value_and_grad(
    problem: _Problem, step: RowStep, want_loss: bool, want_grad: bool, grad_out: Any = None
) -> tuple[Any, Any]:
    """The loss and/or gradient of the validated ``problem`` by the row ``step`` picked for it."""
    scales = _scales(problem)
    direct = _rows_view(problem, grad_out) if want_grad else None
    loss_rows, grad = step(
        problem.xp, problem.x, problem.target, problem.sample_weight, scales.row, problem.opts,
        problem.compute_dtype, want_loss, want_grad, direct,
    )
    loss = _reduce(problem, loss_rows, scales) if want_loss else None
    if not want_grad:
        return loss, None
    if direct is not None:
        return loss, grad_out
    return loss, store_out(_restore(problem, grad), grad_out)


# ----------------------------------------------------------------------------------------------
# Public tier

_OPTIONS_DOC = """
    logits : array
        Real scores of shape ``(..., C, ...)``: the classes lie along ``axis``.
    target : array
        Either integer class indices with the shape of ``logits`` without ``axis`` (entries in
        ``[0, C)`` or equal to ``ignore_index``), or class probabilities (one-hot or soft, each
        ``>= 0``) with the shape of ``logits``. Probability rows need not sum to 1.
    axis : int, optional
        The class axis (PyTorch's dim 1), default -1.
    weight : array of shape (C,), optional
        A weight per class, as PyTorch's ``weight``.
    ignore_index : int, optional
        Rows whose class index equals it contribute nothing (index targets only), default -100.
    label_smoothing : float in [0, 1], optional
        Mixes the target with the uniform distribution: ``(1 - eps) y + eps / C``.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` gives one loss per row; ``"sum"`` adds them; ``"mean"`` divides the sum by
        ``sum_i sw_i w_{y_i}`` over non-ignored rows for class indices (PyTorch's weighted mean,
        also with label smoothing) and by ``sum_i sw_i`` for probability targets (PyTorch divides
        by the number of rows there). All rows ignored gives NaN, as in PyTorch.
    sample_weight : array, optional
        One weight per row (the shape of ``logits`` without ``axis``), as in scikit-learn: it
        multiplies the row's loss and enters the mean's denominator as above.
"""


def cross_entropy(
    logits: Array,
    target: Array,
    /,
    axis: int = -1,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Array | None = None,
) -> Array:
    r"""Cross-entropy between ``softmax(logits)`` and a target, as ``torch.nn.functional.cross_entropy``.

    .. math::
        \ell_i = -\sum_j q_{ij} \log \operatorname{softmax}(o_i)_j
               = a_i \operatorname{logsumexp}(o_i) - \sum_j q_{ij} o_{ij}

    with ``q`` the weighted, smoothed target of row ``i`` (for a class index ``y`` without
    weights or smoothing ``q = e_y``, so :math:`\ell = \operatorname{logsumexp}(o) - o_y`) and
    :math:`a_i = \sum_j q_{ij}`. ``log p`` comes from log-sum-exp, never from ``log(softmax)``:
    when the true class dominates the loss is computed as
    :math:`\log(1 + \sum_{j \ne y} e^{o_j - o_y})` through ``log1p`` and keeps full relative
    accuracy however small it is.

    Parameters
    ----------%s
    Returns
    -------
    array
        A 0-d array (a NumPy scalar for NumPy input) for ``"mean"`` and ``"sum"``; the
        shape of ``logits`` without ``axis`` for ``"none"``. Same array library and dtype as
        ``logits`` (float32 computes in float64, half precision in float32).

    Notes
    -----
    Equal to PyTorch's value for every combination of options PyTorch accepts (tested). On top
    of PyTorch: ``sample_weight``; any class axis; a target class with logit ``-inf`` gives
    ``+inf``; classes without target mass never contribute (``0 * log 0 = 0``, where PyTorch
    can give NaN); a NaN logit poisons its row, unless the row is outside the loss (ignored, a
    class of weight 0 without smoothing, an all-zero probability row): such a row's loss,
    gradient and HVP are 0 on every path, whatever its logits.
    The gradient is :func:`cross_entropy_grad`, the Hessian-vector product
    :func:`cross_entropy_hvp`.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> float(sg.cross_entropy([2.0, 1.0, 0.1], 0))  # logsumexp(o) - o_0
    0.41703002...
    >>> float(sg.cross_entropy(np.float32([30.0, 0.0]), 0))  # log1p(e^-30), not 0
    9.357623e-14
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]])
    >>> sg.cross_entropy(logits, np.array([0, 1]), reduction="none")
    array([0.41703002, 0.1967341 ])
    """
    if sample_weight is None and _autodiff.adapter(logits) is not None:  # one node, closed-form rules
        return _autodiff.cross_entropy(logits, target, axis, weight, ignore_index, label_smoothing, reduction)
    return _cross_entropy(
        logits, target, axis, weight, ignore_index, label_smoothing, reduction, sample_weight
    )


def _cross_entropy(
    logits: Any,
    target: Any,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    label_smoothing: Any,
    reduction: Any,
    sample_weight: Any = None,
) -> Array:
    """:func:`cross_entropy` computed here (no hand-off to an autodiff rule)."""
    problem = _prepare(logits, target, axis, weight, ignore_index, label_smoothing, reduction, sample_weight)
    return _value_and_grad(problem, _row_step(problem.x, problem.opts), True, False)[0]


def cross_entropy_grad(
    logits: Array,
    target: Array,
    /,
    axis: int = -1,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Array | None = None,
    out: Array | None = None,
) -> Array:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    .. math:: \frac{\partial \ell_i}{\partial o_i} = c_i \left(a_i\, \operatorname{softmax}(o_i) - q_i\right)

    the seed formula ``dl/do = y_hat - y`` with the weighted, smoothed target ``q_i``, its total
    ``a_i`` and the row's share ``c_i`` of the reduction (``sw_i``, divided by the mean's
    denominator for ``"mean"``). For ``reduction="none"`` (a loss per row, each depending on
    its own row only) this is every row's own gradient, i.e. the gradient of their sum.

    The entry at a row's (unique) maximum is computed as
    :math:`\sum_{j \ne k} q_j - a \sum_{j \ne k} p_j` instead of ``a p_k - q_k``: for confident
    predictions ``p_y -> 1`` and ``p_y - 1`` would lose every digit, while this keeps a few ULP
    (float32 logits ``[20, 0, 0, 0]``, target 0: entry 0 is ``-3 e^{-20} / (1 + 3 e^{-20})``).
    The fused CPU kernel does so where it matters, when ``p_k > 1/2``.

    Parameters
    ----------%s
    out : numpy.ndarray, optional
        Where to write the gradient (NumPy only): the shape of ``logits``, its float dtype. It
        may be ``logits`` itself (overwritten in place). Saves allocating (and, for large
        arrays, page-faulting) a new array on every call.

    Returns
    -------
    array
        The shape, array library and dtype of ``logits`` (``out`` when given). Ignored rows and
        rows whose logits are all ``-inf`` get 0; a row holding a NaN logit gets NaN (as its
        loss, and as PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> sg.cross_entropy_grad([2.0, 1.0, 0.1], 0)  # softmax - e_0
    array([-0.34099886,  0.24243297,  0.09856589])
    >>> g = sg.cross_entropy_grad(np.float32([20.0, 0.0, 0.0, 0.0]), 0)
    >>> float(g[0])  # not 0: -3 e^-20 / (1 + 3 e^-20)
    -6.1834...e-09
    """
    problem = _prepare(logits, target, axis, weight, ignore_index, label_smoothing, reduction, sample_weight)
    if out is not None:
        _check_grad_out(problem, out, "out")
    return _value_and_grad(problem, _row_step(problem.x, problem.opts), False, True, out)[1]


def cross_entropy_value_and_grad(
    logits: Array,
    target: Array,
    /,
    axis: int = -1,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Array | None = None,
    grad_out: Array | None = None,
) -> tuple[Array, Array]:
    r""":func:`cross_entropy` and :func:`cross_entropy_grad` from one pass over the logits.

    .. math:: \left(\ell,\; \frac{\partial \ell}{\partial o}\right), \qquad
              \frac{\partial \ell_i}{\partial o_i} = c_i (a_i p_i - q_i)

    Shares the shift by the row maximum and the normalizer between both, which is what a
    solver wants at every iteration.

    Parameters
    ----------%s
    grad_out : numpy.ndarray, optional
        Where to write the gradient, as ``out=`` of :func:`cross_entropy_grad` (NumPy only; may
        be ``logits`` itself). A training loop that reuses one buffer reads the logits once and
        writes the gradient once per step, with no allocation.

    Returns
    -------
    (loss, grad)
        As returned by :func:`cross_entropy` and :func:`cross_entropy_grad`; ``grad`` is
        ``grad_out`` when given.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> loss, grad = sg.cross_entropy_value_and_grad(
    ...     np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.0]]), np.array([0, 1]), reduction="sum")
    >>> float(loss)
    0.61376411...
    >>> grad
    array([[-0.34099886,  0.24243297,  0.09856589],
           [ 0.11116562, -0.17859098,  0.06742536]])
    """
    problem = _prepare(logits, target, axis, weight, ignore_index, label_smoothing, reduction, sample_weight)
    if grad_out is not None:
        _check_grad_out(problem, grad_out, "grad_out")
    step = _row_step(problem.x, problem.opts)
    return _value_and_grad(problem, step, True, True, grad_out)  # type: ignore[return-value]


def cross_entropy_hvp(
    logits: Array,
    target: Array,
    v: Array,
    /,
    axis: int = -1,
    *,
    weight: Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    sample_weight: Array | None = None,
) -> Array:
    r"""Hessian-vector product of :func:`cross_entropy` with respect to the logits.

    .. math:: (H v)_i = c_i\, a_i \left(p_i \odot v_i - p_i\, (p_i \cdot v_i)\right),
              \qquad H_i = c_i a_i \left(\operatorname{diag}(p_i) - p_i p_i^\top\right)

    one O(C) product per row (no Hessian is formed); ``a_i`` is the row's total target weight
    and ``c_i`` its share of the reduction, as in :func:`cross_entropy_grad`. The Hessian does
    not depend on the target beyond ``a_i``: cross-entropy is log-sum-exp plus a linear term.
    For Newton and truncated-Newton solvers.

    Parameters
    ----------%s
    v : array
        The direction, of the shape of ``logits``.

    Returns
    -------
    array
        ``H v`` with the shape, array library and dtype of ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> sg.cross_entropy_hvp([0.0, 0.0], 0, [1.0, 0.0])  # (diag(p) - p p^T) e_0, p = (1/2, 1/2)
    array([ 0.25, -0.25])
    """
    problem = _prepare(logits, target, axis, weight, ignore_index, label_smoothing, reduction, sample_weight)
    vc = _check_tangent(problem, v)
    xp = problem.xp
    scales = _scales(problem)
    blocks = _blocks(problem.x, problem.opts.n_classes)
    out = None
    if len(blocks) > 1:
        import numpy as np

        out = np.empty(problem.x.shape, dtype=problem.out_dtype)
    for sl in blocks:
        a = _row_totals(xp, problem.target[sl, ...], problem.opts, problem.compute_dtype)
        scale = _row_scale(scales.row, sl)
        if scale is not None:
            a = a * (scale[:, None] if scale.ndim else scale)
        probs = _probabilities(xp, xp.astype(problem.x[sl, ...], problem.compute_dtype, copy=False))
        pv = probs * vc[sl, ...]
        hv = a * (pv - probs * xp.sum(pv, axis=-1, keepdims=True))
        hv = xp.where(a == 0, xp.zeros_like(hv), hv)  # a row outside the loss: 0, also at NaN logits
        if out is None:
            out = xp.astype(hv, problem.out_dtype, copy=False)
        else:
            out[sl] = hv
    return _restore(problem, out)


_computes.register("cross_entropy_reference")(_cross_entropy)  # for the autodiff rules
_computes.register("cross_entropy_prepare")(_prepare)  # the JAX lean path validates as the reference
_computes.register("cross_entropy")(cross_entropy)
_computes.register("cross_entropy_grad")(cross_entropy_grad)
_computes.register("cross_entropy_hvp")(cross_entropy_hvp)
_computes.register("cross_entropy_value_and_grad")(cross_entropy_value_and_grad)

for _f in (cross_entropy, cross_entropy_grad, cross_entropy_value_and_grad, cross_entropy_hvp):
    if _f.__doc__ is not None:  # None under ``python -OO``, which strips docstrings
        _f.__doc__ = _f.__doc__ % _OPTIONS_DOC
del _f
