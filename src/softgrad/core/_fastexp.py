"""A branch-free, vectorizable ``exp`` for the Numba kernels, and the low-level intrinsics they share.

Numba cannot vectorize ``np.exp`` here (no SVML: LLVM splits a vector ``exp`` into scalar libm
calls), so the fused kernels use this one. It is written so that LLVM turns a loop over it into
AVX-512 code: no branches, no table look-ups, only FMAs, integer shifts and selects.

Algorithm (the same for float32 and float64, with its own constants)::

    k  = round(s / ln 2)                       # by adding and subtracting 1.5 * 2**(p-1)
    r1 = s - k * C1                            # exact: C1 = ln 2 rounded, one FMA (see below)
    c  = err - k * C2                          # C2 = ln 2 - C1; err: a correction term, see below
    r  = r1 + c                                # |r| <= 0.347
    exp(r) ~ 1 + (r1 + (c + r**2 Q(r)))        # Q: near-minimax polynomial for (e^r - 1 - r) / r^2
    exp(s + err) = exp(r) * 2**(k >> 1) * 2**(k - (k >> 1))   # two factors: subnormal and
                                                              # overflowing results round once

``r1`` is exact: ``k * C1`` is computed exactly inside the FMA, and ``s - k * C1`` is a multiple
of ``ulp(C1)`` smaller than 1/2, so it fits in the significand. The only roundings that matter
are ``r1 + (...)`` (at most a quarter of an ULP of the result) and ``1 + (...)`` (half an ULP);
the polynomial's own error is below 0.02 ULP. Measured: the float32 version is within
0.857 ULP of the exact ``exp`` for every one of the 2**32 float32 inputs (exhaustive check,
:func:`exhaustive_float32_check`, run as ``python -m softgrad.core._fastexp``), the float64
version within 1 ULP on dense samples (tests/test_fastexp.py).

``err`` lets the kernels pass the rounding error of ``x - max`` (from an error-free TwoSum):
``exp_core(s, err)`` is ``exp(s + err)`` to the same accuracy, with ``err`` folded into the
reduced argument before any rounding that would lose it.

Every operation here is IEEE-exact as written (no ``fastmath``); the FMAs are explicit
``llvm.fma`` calls, which are correctly rounded on every target (a hardware FMA where there is
one).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

__all__ = [
    "exhaustive_float32_check",
    "exp_array",
    "exp_core",
    "exp_fast",
    "exp_full",
    "exp_lowp",
    "f2i",
    "fma",
    "i2f",
    "log1p_pos",
    "nt_affine_line",
    "nt_line",
    "nt_logp_line",
    "nt_scale_line",
    "nt_vjp_line",
    "prefetch",
    "sfence",
    "wide",
]

# ---------------------------------------------------------------------------------------------
# The disk cache: one stamp for all kernel sources.

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every file that defines jitted code or Numba intrinsics, whichever layer it lives in: the
# cross-entropy kernel sits beside cross-entropy in losses/ and calls the row machinery and
# the intrinsics of core/.
_KERNEL_SOURCES = tuple(
    os.path.join(_PACKAGE, *name.split("/"))
    for name in (
        "core/_fastexp.py", "core/_rows.py", "core/_kernels.py", "core/_short.py", "core/_transpose.py",
        "losses/_ce_kernels.py", "models/_data_kernels.py", "losses/_jax_ffi.py", "losses/_ffi_native.py",
    )
)


class _KernelSourcesLocator:
    """Numba cache locator for the kernel modules: a cached function is stale when *any* kernel
    file changes, not only its own (Numba hashes only the defining file, so an edit to an
    intrinsic here or to the row machinery would otherwise leave cached kernels of the other
    files in use). Everything else is delegated to the locator Numba would have picked."""

    def __init__(self, base: Any) -> None:
        self._base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def get_source_stamp(self) -> str:
        digest = hashlib.sha256()
        for path in _KERNEL_SOURCES:
            with open(path, "rb") as f:
                digest.update(f.read())
        return digest.hexdigest()

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if os.path.abspath(py_file) not in _KERNEL_SOURCES:
            return None
        for base_cls in _DEFAULT_LOCATORS:
            base = base_cls.from_function(py_func, py_file)
            if base is not None:
                return cls(base)
        return None


def _install_locator() -> None:
    # Private Numba API (guarded): without it, caching works as Numba's default.
    try:
        from numba.core import caching

        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # type: ignore[attr-defined]
        classes = impl._locator_classes
    except (ImportError, AttributeError):  # pragma: no cover - another Numba
        return
    if _KernelSourcesLocator not in classes:
        global _DEFAULT_LOCATORS
        _DEFAULT_LOCATORS = tuple(classes)
        classes.insert(0, _KernelSourcesLocator)


_DEFAULT_LOCATORS: tuple[Any, ...] = ()
_install_locator()


# ---------------------------------------------------------------------------------------------
# Intrinsics: FMA, bit casts, non-temporal stores.


def _fma_typer(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` with one rounding (``llvm.fma``); all three of one float type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, b, c)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        lty = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic("llvm.fma", [lty], ir.FunctionType(lty, [lty, lty, lty]))
        return builder.call(fn, args)

    return sig, codegen


fma: Any = intrinsic(_fma_typer)


def _bitcast(mapping: dict[Any, Any], doc: str) -> Any:
    """An intrinsic reinterpreting the bits of a scalar of a ``mapping`` key as its value type."""

    def typer(typingctx: Any, x: Any) -> Any:
        if x not in mapping:
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], context.get_value_type(signature.return_type))

        return mapping[x](x), codegen

    typer.__doc__ = doc
    return intrinsic(typer)


f2i: Any = _bitcast({types.float32: types.int32, types.float64: types.int64}, "float bits as int32 / int64")
i2f: Any = _bitcast({types.int32: types.float32, types.int64: types.float64}, "int32 / int64 bits as a float")


def _splat(builder: Any, value: Any, lanes: int) -> Any:
    """A vector of ``lanes`` copies of the scalar ``value``."""
    vty = ir.VectorType(value.type, lanes)
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(i32, 0))
    zeros = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    return builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined), zeros)


def _line_pointers(context: Any, builder: Any, signature: Any, args: Any, lanes: int) -> Any:
    """``(&src[si] as <lanes x src dtype>*, &dst[i] as <lanes x dst dtype>*)`` for the line intrinsics."""
    dst_t, idx_t, src_t, sidx_t = signature.args[:4]
    d = context.make_array(dst_t)(context, builder, args[0])
    s = context.make_array(src_t)(context, builder, args[2])
    i = context.cast(builder, args[1], idx_t, types.intp)
    si = context.cast(builder, args[3], sidx_t, types.intp)
    svty = ir.VectorType(context.get_value_type(src_t.dtype), lanes)
    dvty = ir.VectorType(context.get_value_type(dst_t.dtype), lanes)
    sptr = builder.bitcast(builder.gep(s.data, [si]), svty.as_pointer())
    dptr = builder.bitcast(builder.gep(d.data, [i]), dvty.as_pointer())
    return sptr, dptr


def _store_nt(builder: Any, value: Any, ptr: Any) -> None:
    store = builder.store(value, ptr, align=64)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


def _nt_line_typer(typingctx: Any, dst: Any, idx: Any, src: Any, sidx: Any) -> Any:
    """``dst[i:i+L] = src[si:si+L]`` for one 64-byte line (L = 16 float32 or 8 float64), with a
    non-temporal store that bypasses the caches (no read-for-ownership of ``dst``).

    The caller guarantees that ``&dst[i]`` is 64-byte aligned and both ranges are in bounds
    (C-contiguous arrays of the same float dtype).
    """
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)):
        return None
    if dst.dtype != src.dtype or dst.dtype not in (types.float32, types.float64):
        return None
    lanes = 16 if dst.dtype == types.float32 else 8
    sig = types.void(dst, idx, src, sidx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        sptr, dptr = _line_pointers(context, builder, signature, args, lanes)
        _store_nt(builder, builder.load(sptr, align=64 // lanes), dptr)
        return context.get_dummy_value()

    return sig, codegen


nt_line: Any = intrinsic(_nt_line_typer)


def _map_line(body: Any, doc: str) -> Any:
    """An intrinsic ``f(dst, i, src, si, a, b)``: one 64-byte line of ``dst[i + k] =
    body(src[si + k], a, b)`` in float64 (``src`` float64), rounded once to ``dst``'s dtype
    (16 float32 or 8 float64 lanes) and stored non-temporally. The caller guarantees that
    ``&dst[i]`` is 64-byte aligned and both ranges are in bounds, as for :func:`nt_line`."""

    def typer(typingctx: Any, dst: Any, idx: Any, src: Any, sidx: Any, a: Any, b: Any) -> Any:
        if not (isinstance(dst, types.Array) and isinstance(src, types.Array)):
            return None
        if src.dtype != types.float64 or dst.dtype not in (types.float32, types.float64):
            return None
        if a != types.float64 or b != types.float64:
            return None
        lanes = 16 if dst.dtype == types.float32 else 8
        sig = types.void(dst, idx, src, sidx, a, b)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            sptr, dptr = _line_pointers(context, builder, signature, args, lanes)
            v = builder.load(sptr, align=8)
            y = body(builder, v, _splat(builder, args[4], lanes), _splat(builder, args[5], lanes))
            if lanes == 16:
                y = builder.fptrunc(y, ir.VectorType(ir.FloatType(), lanes))
            _store_nt(builder, y, dptr)
            return context.get_dummy_value()

        return sig, codegen

    typer.__doc__ = doc
    return intrinsic(typer)


def _scale_body(builder: Any, v: Any, hi: Any, lo: Any) -> Any:
    if v.type.count == 16:  # float32 results: v * hi rounded once (lo unused), as scale_sweep
        return builder.fmul(v, hi)
    fnty = ir.FunctionType(v.type, [v.type] * 3)
    fma_v = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.v8f64")
    return builder.call(fma_v, [v, hi, builder.fmul(v, lo)])


def _affine_body(builder: Any, v: Any, a: Any, b: Any) -> Any:
    return builder.fsub(builder.fmul(v, a), b)  # a product, then a difference: no FMA


nt_scale_line: Any = _map_line(
    _scale_body,
    "``dst = src * (hi + lo)``: float32 ``float32(src * hi)``, float64 ``fma(src, hi, src * lo)``.",
)
nt_affine_line: Any = _map_line(_affine_body, "``dst = src * a - b`` (the cross-entropy gradient).")


def _nt_vjp_line_typer(
    typingctx: Any, dst: Any, idx: Any, s: Any, sidx: Any, g: Any, dot: Any, inv: Any
) -> Any:
    """One 64-byte line of ``dst[i + k] = s[si + k] * (g[si + k] - dot) * inv`` (softmax_vjp),
    stored non-temporally: float32 arrays computed in float64 and rounded once, float64 ones
    in float64, the roundings of the scalar loop. ``s``, ``g``, ``dst`` of one dtype."""
    arrays = (dst, s, g)
    if not all(isinstance(a, types.Array) for a in arrays):
        return None
    if not (dst.dtype == s.dtype == g.dtype) or dst.dtype not in (types.float32, types.float64):
        return None
    if dot != types.float64 or inv != types.float64:
        return None
    lanes = 16 if dst.dtype == types.float32 else 8
    sig = types.void(dst, idx, s, sidx, g, dot, inv)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        sptr, dptr = _line_pointers(context, builder, signature, args, lanes)
        garr = context.make_array(signature.args[4])(context, builder, args[4])
        si = context.cast(builder, args[3], signature.args[3], types.intp)
        gptr = builder.bitcast(builder.gep(garr.data, [si]), sptr.type)
        align = 64 // lanes
        sv, gv = builder.load(sptr, align=align), builder.load(gptr, align=align)
        wide_t = ir.VectorType(ir.DoubleType(), lanes)
        if lanes == 16:
            sv, gv = builder.fpext(sv, wide_t), builder.fpext(gv, wide_t)
        y = builder.fmul(sv, builder.fsub(gv, _splat(builder, args[5], lanes)))
        y = builder.fmul(y, _splat(builder, args[6], lanes))
        if lanes == 16:
            y = builder.fptrunc(y, ir.VectorType(ir.FloatType(), lanes))
        _store_nt(builder, y, dptr)
        return context.get_dummy_value()

    return sig, codegen


nt_vjp_line: Any = intrinsic(_nt_vjp_line_typer)


def _nt_logp_line_typer(
    typingctx: Any, dst: Any, idx: Any, src: Any, sidx: Any, m: Any, invt: Any, shift: Any
) -> Any:
    """One 64-byte line (16 float32) of ``dst[i + k] = float32((src[si + k] - m) * invt - shift)``,
    the arithmetic in float64 (``src`` float32, so ``src - m`` is exact there), stored
    non-temporally. Same alignment and bounds contract as :func:`nt_line`.
    """
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)):
        return None
    if src.dtype != types.float32 or dst.dtype != types.float32:
        return None
    if not (m == invt == shift == types.float64):
        return None
    sig = types.void(dst, idx, src, sidx, m, invt, shift)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        lanes = 16
        sptr, dptr = _line_pointers(context, builder, signature, args, lanes)
        wide_t = ir.VectorType(ir.DoubleType(), lanes)
        v = builder.fpext(builder.load(sptr, align=4), wide_t)
        d = builder.fmul(builder.fsub(v, _splat(builder, args[4], lanes)), _splat(builder, args[5], lanes))
        y = builder.fsub(d, _splat(builder, args[6], lanes))
        y = builder.fptrunc(y, ir.VectorType(ir.FloatType(), lanes))
        _store_nt(builder, y, dptr)
        return context.get_dummy_value()

    return sig, codegen


nt_logp_line: Any = intrinsic(_nt_logp_line_typer)


def _prefetch_typer(typingctx: Any, arr: Any, idx: Any) -> Any:
    """Hint the cache to fetch the line holding ``arr[idx]`` (``llvm.prefetch``; never faults)."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        arr_t, idx_t = signature.args
        a = context.make_array(arr_t)(context, builder, args[0])
        i = context.cast(builder, args[1], idx_t, types.intp)
        ptr = builder.bitcast(builder.gep(a.data, [i]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


prefetch: Any = intrinsic(_prefetch_typer)


def _wide_typer(typingctx: Any) -> Any:
    """Let LLVM use 512-bit vectors in the calling function (x86 with AVX-512).

    LLVM prefers 256-bit vectors on recent Intel CPUs (the ``prefer-256-bit`` tuning); for these
    FMA-bound loops 512-bit ones measured about 25 % faster here. The function attribute
    ``"prefer-vector-width"="512"`` is set on the function being compiled only, so nothing
    else in the process changes; every function of a call chain carries it, so inlining keeps
    it. Where the attribute cannot be set (another llvmlite), nothing happens; on CPUs without
    AVX-512 LLVM ignores it.
    """
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except Exception:  # pragma: no cover - an llvmlite without set-based attributes
            pass
        return context.get_dummy_value()

    return sig, codegen


wide: Any = intrinsic(_wide_typer)


def _sfence_typer(typingctx: Any) -> Any:
    """Order the non-temporal stores before anything that follows (x86 ``sfence``)."""
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.sfence")
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


sfence: Any = intrinsic(_sfence_typer)


# ---------------------------------------------------------------------------------------------
# The exp core.

_F32 = np.float32
_LOG2E_32 = _F32(1.4426950408889634)
_MAGIC_32 = _F32(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
_MAGIC_BITS_32 = np.int32(0x4B400000)
_C1_32 = _F32(0.6931471824645996)  # ln 2 rounded to float32
_C2_32 = _F32(-1.904654323148236e-09)  # ln 2 - C1, rounded
# Q(r) ~ (exp(r) - 1 - r) / r^2 on |r| <= 0.3472 (weighted least squares, relative error of
# 1 + r + r^2 Q(r) below 0.02 * 2**-24).
_Q32 = (
    _F32(0.5),
    _F32(0.1666666567325592),
    _F32(0.041666265577077866),
    _F32(0.008333430625498295),
    _F32(0.001394622609950602),
    _F32(0.00019826431525871158),
)

_LOG2E_64 = 1.4426950408889634
_MAGIC_64 = 6755399441055744.0  # 1.5 * 2**52
_MAGIC_BITS_64 = np.int64(0x4338000000000000)
_C1_64 = 0.6931471805599453  # ln 2 rounded to float64
_C2_64 = 2.3190468138462996e-17  # ln 2 - C1
# Q(r) for float64: relative error of 1 + r + r^2 Q(r) below 0.02 * 2**-53 (mpmath fit).
_Q64 = (
    0.5,
    0.16666666666666685,
    0.04166666666666577,
    0.008333333333316489,
    0.0013888888889223051,
    0.00019841269897605339,
    2.48015867661205e-05,
    2.7557233726832238e-06,
    2.755769312512637e-07,
    2.511241141890273e-08,
    2.0797515884834804e-09,
)

# exp_lowp: float64 arithmetic, relative error below 2**-33, for float32 results computed in
# float64 (the float32 kernels): a shorter polynomial than _Q64 is enough there.
_QL = (
    0.500000007897219,
    0.16666666158333127,
    0.04166626743488602,
    0.008333430696456265,
    0.0013946226278583774,
    0.0001982643083699909,
)

# Clamps for exp_full: below LO the result is 0, above HI it is inf, and inside
# the two-factor scaling keeps every exponent field valid.
_LO_32, _HI_32 = _F32(-104.0), _F32(89.0)
_LO_64, _HI_64 = -746.0, 710.0


def exp_core(s: Any, err: Any) -> Any:  # pragma: no cover - replaced by the overload
    """``exp(s + err)`` for finite ``s`` in [-104, 89] (float32) or [-746, 710] (float64).

    ``err`` is a small correction (``|err| <= ulp(s)``), 0 when there is none. Jitted code only.
    """
    raise NotImplementedError


def exp_fast(s: Any, err: Any) -> Any:  # pragma: no cover - replaced by the overload
    """:func:`exp_core` for ``s >= -86`` (float32) or ``s >= -700`` (float64), where the result is
    a normal number: the scale goes straight into the exponent field (same result, fewer
    instructions). Jitted code only."""
    raise NotImplementedError


def exp_full(x: Any) -> Any:  # pragma: no cover - replaced by the overload
    """``exp(x)`` for any float32/float64 ``x`` (±inf, NaN, overflow, underflow). Jitted code only."""
    raise NotImplementedError


def _core32(s: Any, err: Any) -> Any:
    t = fma(s, _LOG2E_32, _MAGIC_32)
    kf = t - _MAGIC_32
    k = f2i(t) - _MAGIC_BITS_32
    r1 = fma(kf, -_C1_32, s)  # exact
    c = fma(kf, -_C2_32, err)
    r = r1 + c
    q = fma(_Q32[5], r, _Q32[4])
    q = fma(q, r, _Q32[3])
    q = fma(q, r, _Q32[2])
    q = fma(q, r, _Q32[1])
    q = fma(q, r, _Q32[0])
    u = fma(r * r, q, c)
    p = _F32(1.0) + (r1 + u)
    k1 = k >> np.int32(1)
    k2 = k - k1
    # Numba widens int32 arithmetic to int64: narrow back before reinterpreting the bits.
    s1 = i2f(np.int32((k1 + 127) << 23))
    s2 = i2f(np.int32((k2 + 127) << 23))
    return (p * s1) * s2


def _core64(s: Any, err: Any) -> Any:
    t = fma(s, _LOG2E_64, _MAGIC_64)
    kf = t - _MAGIC_64
    k = f2i(t) - _MAGIC_BITS_64
    r1 = fma(kf, -_C1_64, s)  # exact
    c = fma(kf, -_C2_64, err)
    r = r1 + c
    q = fma(_Q64[10], r, _Q64[9])
    q = fma(q, r, _Q64[8])
    q = fma(q, r, _Q64[7])
    q = fma(q, r, _Q64[6])
    q = fma(q, r, _Q64[5])
    q = fma(q, r, _Q64[4])
    q = fma(q, r, _Q64[3])
    q = fma(q, r, _Q64[2])
    q = fma(q, r, _Q64[1])
    q = fma(q, r, _Q64[0])
    u = fma(r * r, q, c)
    p = 1.0 + (r1 + u)
    k1 = k >> np.int64(1)
    k2 = k - k1
    s1 = i2f((k1 + np.int64(1023)) << np.int64(52))
    s2 = i2f((k2 + np.int64(1023)) << np.int64(52))
    return (p * s1) * s2


def _fast32(s: Any, err: Any) -> Any:
    # As _core32 where the result is normal (s >= -86): the scale goes into the exponent field.
    t = fma(s, _LOG2E_32, _MAGIC_32)
    kf = t - _MAGIC_32
    k = f2i(t) - _MAGIC_BITS_32
    r1 = fma(kf, -_C1_32, s)
    c = fma(kf, -_C2_32, err)
    r = r1 + c
    q = fma(_Q32[5], r, _Q32[4])
    q = fma(q, r, _Q32[3])
    q = fma(q, r, _Q32[2])
    q = fma(q, r, _Q32[1])
    q = fma(q, r, _Q32[0])
    u = fma(r * r, q, c)
    p = _F32(1.0) + (r1 + u)
    return i2f(np.int32(f2i(p) + (k << 23)))


def _fast64(s: Any, err: Any) -> Any:
    t = fma(s, _LOG2E_64, _MAGIC_64)
    kf = t - _MAGIC_64
    k = f2i(t) - _MAGIC_BITS_64
    r1 = fma(kf, -_C1_64, s)
    c = fma(kf, -_C2_64, err)
    r = r1 + c
    q = fma(_Q64[10], r, _Q64[9])
    q = fma(q, r, _Q64[8])
    q = fma(q, r, _Q64[7])
    q = fma(q, r, _Q64[6])
    q = fma(q, r, _Q64[5])
    q = fma(q, r, _Q64[4])
    q = fma(q, r, _Q64[3])
    q = fma(q, r, _Q64[2])
    q = fma(q, r, _Q64[1])
    q = fma(q, r, _Q64[0])
    u = fma(r * r, q, c)
    p = 1.0 + (r1 + u)
    return i2f(f2i(p) + (k << np.int64(52)))


def _full32(x: Any) -> Any:
    xc = x if x > _LO_32 else _LO_32  # NaN -> LO, fixed below
    xc = xc if xc < _HI_32 else _HI_32
    y = exp_core(xc, _F32(0.0))
    return y if x == x else x


def _full64(x: Any) -> Any:
    xc = x if x > _LO_64 else _LO_64
    xc = xc if xc < _HI_64 else _HI_64
    y = exp_core(xc, 0.0)
    return y if x == x else x


@overload(exp_core, jit_options={"fastmath": False})
def _exp_core_overload(s: Any, err: Any) -> Any:
    if s == types.float32 and err == types.float32:
        return _core32
    if s == types.float64 and err == types.float64:
        return _core64
    return None


@overload(exp_fast, jit_options={"fastmath": False})
def _exp_fast_overload(s: Any, err: Any) -> Any:
    if s == types.float32 and err == types.float32:
        return _fast32
    if s == types.float64 and err == types.float64:
        return _fast64
    return None


@numba.njit(cache=True, fastmath=False)
def exp_lowp(d: float) -> float:  # pragma: no cover - jitted
    """``exp(d)`` in float64 to a relative error below 2**-33, for ``-707 <= d <= 709``.

    Used where a float32 result is computed in float64 and rounded once: the error is far below
    half an ULP of float32, so the rounded result is the correctly rounded one except within
    2**-9 ULP of a tie. The scale goes into the exponent field, so the result must be normal.
    """
    t = fma(d, _LOG2E_64, _MAGIC_64)
    kf = t - _MAGIC_64
    k = f2i(t) - _MAGIC_BITS_64
    # One FMA: the reduction's error, |kf| * (ln 2 - C1) <= 2**-45, is far below the bound.
    r = fma(kf, -_C1_64, d)
    q = fma(_QL[5], r, _QL[4])
    q = fma(q, r, _QL[3])
    q = fma(q, r, _QL[2])
    q = fma(q, r, _QL[1])
    q = fma(q, r, _QL[0])
    p = 1.0 + fma(r * r, q, r)
    return i2f(f2i(p) + (k << np.int64(52)))


# log1p_pos: ln 2 split so that k * LN2_HI is exact for every exponent k of a float64.
_LN2_HI = 0.6931471804855391  # ln 2 rounded to 33 significant bits
_LN2_LO = 7.440617110012397e-11  # ln 2 - LN2_HI
_SQRT2 = 1.4142135623730951
# 2 / (2k + 1), k = 1..10: 2 atanh(s) = 2s + s * sum_k (2 / (2k + 1)) s**(2k); for |s| <= 0.1716
# the terms beyond the tenth are below 2**-53 of the result.
_ATANH = (
    0.6666666666666666,
    0.4,
    0.2857142857142857,
    0.2222222222222222,
    0.18181818181818182,
    0.15384615384615385,
    0.13333333333333333,
    0.11764705882352941,
    0.10526315789473684,
    0.09523809523809523,
)


@numba.njit(cache=True, fastmath=False, error_model="numpy")  # no zero-division branch
def log1p_pos(x: float) -> float:  # pragma: no cover - jitted
    """``log1p(x)`` in float64 for finite ``x >= 0``, branch-free so that loops over it vectorize.

    The kernels take ``log1p`` of a normalizer's "rest" (``sum(e) - 1 >= 0``) once per row;
    libm's scalar call was most of the time of a two-class log_softmax. Method: ``1 + x = t + tl``
    exactly (Fast2Sum), ``t = 2**k f`` with ``f`` in [sqrt(1/2), sqrt(2)) (bits), ``g = f - 1``
    exact, ``log(1 + g) = g - (g**2/2 - s (g**2/2 + R(s**2)))`` with ``s = g / (2 + g)`` and
    ``R`` the atanh series; ``k ln 2`` in two parts, its leading part and ``g`` summed exactly,
    everything else added to the low part. Within 0.6 ULP (tests/test_fastexp.py, mpmath).
    """
    big = x if x > 1.0 else 1.0
    small = x if x < 1.0 else 1.0
    t = 1.0 + x
    tl = (big - t) + small  # exact: t + tl == 1 + x
    bits = f2i(t)
    k = (bits >> np.int64(52)) - np.int64(1023)
    f = i2f((bits & np.int64(0x000FFFFFFFFFFFFF)) | np.int64(0x3FF0000000000000))  # [1, 2)
    up = f > _SQRT2
    f = f * 0.5 if up else f
    k = k + np.int64(1) if up else k
    g = f - 1.0  # exact (Sterbenz)
    s = g / (2.0 + g)
    z = s * s
    r = fma(_ATANH[9], z, _ATANH[8])
    r = fma(r, z, _ATANH[7])
    r = fma(r, z, _ATANH[6])
    r = fma(r, z, _ATANH[5])
    r = fma(r, z, _ATANH[4])
    r = fma(r, z, _ATANH[3])
    r = fma(r, z, _ATANH[2])
    r = fma(r, z, _ATANH[1])
    r = fma(r, z, _ATANH[0])
    r = r * z
    hfsq = 0.5 * g * g
    kf = np.float64(k)
    # k ln2_hi + g as an exact pair (TwoSum), the small terms added to its low part: one
    # rounding of the result instead of two
    khi = kf * _LN2_HI
    hi = khi + g
    bb = hi - khi
    lo = (khi - (hi - bb)) + (g - bb)
    small = (kf * _LN2_LO + tl / t) - (hfsq - s * (hfsq + r))
    return hi + (lo + small)


@overload(exp_full, jit_options={"fastmath": False})
def _exp_full_overload(x: Any) -> Any:
    if x == types.float32:
        return _full32
    if x == types.float64:
        return _full64
    return None


@numba.njit(cache=True, parallel=True)
def _exp_array(x: Any, out: Any) -> None:  # pragma: no cover - jitted
    n = x.size
    nb = (n + 4095) // 4096
    for b in numba.prange(nb):
        lo = b * 4096
        hi = min(lo + 4096, n)
        for i in range(lo, hi):
            out[i] = exp_full(x[i])


def exp_array(x: np.ndarray) -> np.ndarray:
    """``exp`` of a float32/float64 NumPy array with this module's exp (for tests and checks)."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got dtype {x.dtype}")
    out = np.empty_like(x)
    _exp_array(x.reshape(-1), out.reshape(-1))
    return out


# ---------------------------------------------------------------------------------------------
# Exhaustive float32 check against a correctly rounded reference.


@numba.njit(cache=True)
def _ulp32(y: float) -> float:  # pragma: no cover - jitted
    """The float32 ULP at the float64 value ``y >= 0`` (2**-149 below the normal range)."""
    if y < 1.1754943508222875e-38:
        return 1.401298464324817e-45
    e = np.int64((f2i(y) >> np.int64(52)) - np.int64(1023))
    return 2.0 ** np.float64(e - 23)


@numba.njit(cache=True)
def _check_chunk(lo: int, hi: int, step: int) -> Any:  # pragma: no cover - jitted
    flt_max = 3.4028234663852886e38
    w = 0.0
    wi = lo
    nbad = 0
    for b in range(lo, hi, step):
        x = i2f(np.int32(np.uint32(b)))
        y = exp_full(x)
        if x != x:
            if y == y:
                nbad += 1
            continue
        xd = np.float64(x)  # (Numba's float() keeps a float32 a float32)
        if abs(xd) < 1.4901161193847656e-08:  # |x| < 2**-26: exp(x) = 1 + x to 2**-52
            ref = float(1.0 + xd)
        elif xd > 89.0:
            ref = np.inf
        elif xd < -104.0:  # below half the smallest subnormal: rounds to 0
            ref = 0.0
        else:
            ref = float(np.exp(xd))
        if y == np.inf:
            if ref <= flt_max:  # inf is only faithful above FLT_MAX
                nbad += 1
            continue
        e = abs(np.float64(y) - ref) / _ulp32(ref)
        if e > w:
            w = e
            wi = b
    return w, wi, nbad


@numba.njit(cache=True, parallel=True)
def _check_range(start: int, stop: int, chunk: int, step: int) -> Any:  # pragma: no cover - jitted
    """Max ULP error of exp_full over the float32 bit patterns in [start, stop).

    Returns (max error in ULP, the bit pattern where it occurs, number of inputs checked,
    number of special-value failures). The reference is ``np.exp`` in float64 (glibc's exp,
    error below 1 ULP of float64, i.e. 2**-52 relative); a float32 error measured against it
    is off from the exact one by at most 2**-28 ULP, far below the margin reported.
    """
    nchunks = (stop - start + chunk - 1) // chunk
    worst = np.zeros(nchunks)
    where = np.zeros(nchunks, np.int64)
    bad = np.zeros(nchunks, np.int64)
    for c in numba.prange(nchunks):
        lo = start + c * chunk
        hi = min(lo + chunk, stop)
        worst[c], where[c], bad[c] = _check_chunk(lo, hi, step)
    j = np.argmax(worst)
    return worst[j], where[j], (stop - start + step - 1) // step, bad.sum()


def exhaustive_float32_check(
    start: int = 0, stop: int = 1 << 32, step: int = 1
) -> tuple[float, int, int, int]:
    """Max ULP error of the float32 exp over the bit patterns ``range(start, stop, step)``.

    All 2**32 patterns by default (every float32: ±0, subnormals, normals, ±inf, NaNs). Returns
    ``(max_ulp, worst_bits, n_checked, n_special_failures)``; a special failure is a NaN input
    without a NaN result, or an inf result below the overflow threshold. The reference is
    ``exp`` in float64 (glibc: below 1 ULP of float64), so the error measured is within 2**-28
    ULP of the error against the exact value; correctly rounded exp differs from it by at most
    0.5 ULP. Run ``python -m softgrad.core._fastexp`` for the full sweep.
    """
    if step < 1 or not 0 <= start <= stop <= 1 << 32:
        raise ValueError(f"need 0 <= start <= stop <= 2**32 and step >= 1, got {start}, {stop}, {step}")
    chunk = max(step, (1 << 20) // step * step)  # a multiple of step: chunks continue the stride
    worst, bits, n, bad = _check_range(int(start), int(stop), int(chunk), int(step))
    return float(worst), int(bits), int(n), int(bad)


if __name__ == "__main__":  # pragma: no cover - the full sweep, run by hand
    import time

    t0 = time.perf_counter()
    worst, bits, n, bad = exhaustive_float32_check()
    x = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    print(
        f"float32 exp: {n} inputs, max error {worst:.4f} ULP at x = {x!r} (bits {bits:#010x}), "
        f"{bad} special-value failures, {time.perf_counter() - t0:.1f} s"
    )
