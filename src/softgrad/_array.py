"""Array helpers: namespace lookup, validation and dtype rules shared by every layer.

This is the bottom layer of softgrad: it imports nothing from the rest of the package.
Generic code receives ``xp`` (an Array API namespace from array-api-compat) and never calls
NumPy directly, so Dask arrays stay lazy and JAX functions stay jittable.
"""

from __future__ import annotations

import math
import operator
import struct
from typing import Any

import array_api_compat

Array = Any  # any Array API array: NumPy, PyTorch, JAX, CuPy, Dask, array-api-strict

__all__ = [
    "Array",
    "array_namespace",
    "as_float_array",
    "as_int",
    "cast_result",
    "check_out",
    "check_same_shape",
    "check_temperature",
    "compute_dtype",
    "is_numpy_array",
    "normalize_axis",
    "store_out",
    "temperature_in",
    "validate_where",
]


def array_namespace(*arrays: Any) -> Any:
    """The Array API namespace of ``arrays``; Python scalars and lists count as NumPy."""
    arrays = tuple(a for a in arrays if a is not None)
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        raise TypeError(
            f"expected arrays of one array library, got {', '.join(type(a).__name__ for a in arrays)}"
        ) from exc


def is_numpy_array(x: Any) -> bool:
    return bool(array_api_compat.is_numpy_array(x))


def _is_floating(xp: Any, dtype: Any) -> bool:
    return bool(xp.isdtype(dtype, "real floating"))


def _default_float(xp: Any, x: Any) -> Any:
    try:
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=array_api_compat.device(x))["real floating"]
    except (AttributeError, TypeError):
        return xp.float64


def as_float_array(x: Any, name: str) -> tuple[Any, Any]:
    """Return ``(xp, x)`` with ``x`` an array of a real floating dtype.

    Python scalars, lists and tuples become NumPy arrays. Integer and boolean arrays are promoted
    to the namespace's default floating dtype; complex and non-numeric input is a ``TypeError``.
    """
    if isinstance(x, (int, float, list, tuple)):
        import numpy as np

        x = np.asarray(x)
        if x.dtype == object or x.dtype.kind in "USV":
            raise TypeError(f"{name} must hold real numbers, got {x.dtype} values")
    # Strings, objects and dates; not "V": ml_dtypes bfloat16 (JAX) has kind "V" and is a float.
    if hasattr(x, "dtype") and getattr(x.dtype, "kind", None) in ("O", "U", "S", "M", "m"):
        raise TypeError(f"{name} must be a real floating array, got dtype {x.dtype}")
    try:
        xp = array_api_compat.array_namespace(x)
    except TypeError as exc:
        raise TypeError(f"{name} must be an array, got {type(x).__name__}") from exc
    dtype = x.dtype
    if xp.isdtype(dtype, "complex floating"):
        raise TypeError(f"{name} must be real, got complex dtype {dtype}")
    _refuse_extended(x, name)
    if not _is_floating(xp, dtype):
        if xp.isdtype(dtype, "integral") or xp.isdtype(dtype, "bool"):
            x = xp.astype(x, _default_float(xp, x))
        else:
            raise TypeError(f"{name} must be a real floating array, got dtype {dtype}")
    return xp, x


def _refuse_extended(x: Any, name: str) -> None:
    """A ``TypeError`` for NumPy's extended precision (``np.longdouble``, float80/float128).

    softgrad computes in float64 at most: its error-free transformations and clamps are written
    for IEEE binary64 and below. Rounding longdouble input to float64 would return float64
    accuracy dressed as longdouble (and turn values beyond 1.8e308 into inf), so it is refused
    and the caller converts explicitly.
    """
    if not is_numpy_array(x):
        return
    if x.dtype.kind == "f" and x.dtype.itemsize > 8:
        raise TypeError(
            f"{name} has dtype {x.dtype} (np.longdouble), which softgrad does not compute in; "
            f"convert it with {name}.astype(np.float64) (float64 precision) first"
        )


def as_int(value: Any, name: str, expected: str = "an int") -> int:
    """``value`` as a Python int (anything with ``__index__``, not a bool), or a ``TypeError``."""
    if isinstance(value, bool):  # True would silently mean 1
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {value!r}") from None


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """``axis`` as a non-negative int, or a ``ValueError`` naming it."""
    axis = as_int(axis, name)
    if ndim == 0:
        raise ValueError(f"expected an array with at least one dimension, got a 0-d array ({name}={axis})")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a finite positive float, or a ``ValueError``."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a real number, got {temperature!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    return t


def temperature_in(xp: Any, dtype: Any, t: float) -> float:
    """The temperature ``t`` as a number of the compute ``dtype`` holds it, as a Python float.

    float64 holds every valid ``t``. In float32 (half precision input) ``t`` is rounded and kept
    inside the normal range, so that dividing by it never meets 0 or inf; after the final
    rounding to half precision the results are those of the exact ``t``.
    """
    fi = xp.finfo(dtype)
    if float(fi.eps) <= 2.0**-52:
        return t
    tc = min(max(t, float(fi.smallest_normal)), float(fi.max))
    return float(struct.unpack("f", struct.pack("f", tc))[0])


def check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _broadcast_shape(shape: tuple[Any, ...], target: tuple[Any, ...]) -> bool:
    if len(shape) > len(target):
        return False
    for s, t in zip(reversed(shape), reversed(target), strict=False):
        if s != 1 and s != t:
            return False
    return True


def validate_where(xp: Any, where: Any, x: Any) -> Any:
    """``where`` as a boolean array of ``x``'s namespace broadcast to ``x``'s shape, or None."""
    if where is None:
        return None
    if isinstance(where, (bool, list, tuple)):
        import numpy as np

        where = xp.asarray(np.asarray(where))
    elif is_numpy_array(where) and not is_numpy_array(x):
        where = xp.asarray(where)  # a NumPy mask for another library's array
    if not hasattr(where, "dtype") or not hasattr(where, "shape"):
        raise TypeError(f"where must be a boolean array, got {type(where).__name__}")
    if not xp.isdtype(where.dtype, "bool"):
        raise TypeError(f"where must be a boolean array, got dtype {where.dtype}")
    if not _broadcast_shape(tuple(where.shape), tuple(x.shape)):
        raise ValueError(
            f"where of shape {tuple(where.shape)} does not broadcast to x of shape {tuple(x.shape)}"
        )
    return xp.broadcast_to(where, x.shape)


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """The dtype that softgrad computes in for input of ``dtype``.

    float32 and float64 compute in float64 where the backend has it (so float32 results are
    correctly rounded up to an ULP); half precision (float16, bfloat16) computes in float32.
    """
    if dtype == xp.float64:
        return dtype
    if dtype == xp.float32:
        return xp.float64 if _has_float64(xp) else dtype
    eps = float(xp.finfo(dtype).eps)
    if eps < 2.0**-52:  # extended precision: refused at the boundary (as_float_array)
        raise TypeError(f"softgrad does not compute in {dtype}; convert the input to float64")
    if eps == 2.0**-52:  # a longdouble that is binary64 (Windows, Apple silicon)
        return xp.float64
    return xp.float32


def cast_result(xp: Any, result: Any, dtype: Any) -> Any:
    """``result`` (in the compute dtype) rounded to ``dtype``, without overflow warnings.

    Values beyond the largest finite ``dtype`` number by half an ULP or more round to +-inf, as
    round-to-nearest does; they are set to +-inf first so that the cast itself never overflows.
    """
    if result.dtype == dtype:
        return result
    fi = xp.finfo(dtype)
    fmax = float(fi.max)
    emax = math.frexp(fmax)[1]
    bits = round(1 - math.log2(float(fi.eps)))
    omega = math.ldexp(1.0, emax) - math.ldexp(1.0, emax - bits - 1)  # halfway past fmax
    if omega < float(xp.finfo(result.dtype).max):
        inf = xp.asarray(xp.inf, dtype=result.dtype, device=array_api_compat.device(result))
        result = xp.where(result >= omega, inf, xp.where(result <= -omega, -inf, result))
    return xp.astype(result, dtype)


def _has_float64(xp: Any) -> bool:
    name = getattr(xp, "__name__", "")
    if name.startswith("jax"):
        import jax

        return bool(jax.config.read("jax_enable_x64"))
    return hasattr(xp, "float64")


def check_out(
    out: Any, shape: tuple[int, ...], dtype: Any, like: Any, name: str = "out", what: str = "input"
) -> None:
    """Check an ``out=`` (or ``grad_out=``) array before any work is done; one wording for all.

    ``out`` must be a NumPy array of the result's ``shape`` and ``dtype``, and the input
    ``like`` (called ``what`` in the message) a NumPy array. ``None`` passes.
    """
    if out is None:
        return
    import numpy as np

    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}= must be a NumPy array, got {type(out).__name__}")
    if not is_numpy_array(like):
        raise TypeError(f"{name}= is supported for NumPy {what} only, got {type(like).__name__} {what}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
            f"got {out.shape} and {out.dtype}"
        )


def store_out(result: Any, out: Any) -> Any:
    """Write ``result`` into ``out`` (checked by :func:`check_out`) when given; return what to return.

    Without ``out``, a 0-d NumPy result becomes a NumPy scalar, as NumPy's own reductions return.
    """
    import numpy as np

    if out is None:
        if isinstance(result, np.ndarray) and result.ndim == 0:
            return result[()]
        return result
    np.copyto(out, result)
    return out
