r"""softgrad's fused short-row cross-entropy kernel inside XLA, as an FFI custom call (CPU).

``jax.pure_callback`` copies every argument and result (see :mod:`._jax_fast`), which costs more
than XLA's own cross-entropy at (65536, 10). XLA's FFI passes the handler its buffers in place:
the handler here is a Numba ``cfunc`` (no C compiler needed) that reads XLA's call frame, the
structs of ``xla/ffi/api/c_api.h``, and runs the short-row kernels of :mod:`._ce_kernels` on the
logits and into the gradient XLA allocated. Nothing is copied.

It takes rows of 2 to :data:`~softgrad.core._short.SHORT_MAX` classes with class indices,
without class weights or label smoothing (what the short-row kernels compute); everything else
stays on the lean XLA path. Before the call, XLA maps each class index to a code: the index
itself, ``-1`` for ``ignore_index`` and ``-2`` for an index outside ``[0, C)`` (any integer
dtype, so nothing wraps when cast to int32). The handler gives a ``-2`` row a NaN loss and
gradient and counts it in the mean's denominator, as :mod:`._jax_fast` does, and sums the row
losses in float64. Under ``vmap`` XLA prepends the batch axes to every buffer
(``vmap_method="broadcast_all"``); the handler solves each member with its own denominator.

Above the parallel threshold the handler shares the blocks of rows of more than two classes
with XLA's own thread pool (``XLA_FFI_ThreadPool_Schedule``, section "Blocks shared with
XLA's threads"); where the API table has no thread pool, the handler computes every block.

The frame layout is read for the FFI API major version 0 (the version is read from the header
jaxlib ships); another major version, or a jaxlib without ``jax.ffi``, leaves the lean XLA path.
"""

from __future__ import annotations

import ctypes
import platform
import re
from collections import namedtuple
from functools import cache
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..core import _rows, _short
from . import _ce_kernels
from . import _ffi_native as _native

__all__ = ["available", "rows", "takes"]

_REDUCTION = {"none": 0, "sum": 1, "mean": 2}
_IGNORED, _BAD = -1, -2
_TARGET = {np.dtype(np.float32): "softgrad_ce_short_f32", np.dtype(np.float64): "softgrad_ce_short_f64"}
_TASK_SYMBOL = {dtype: f"{name}_task" for dtype, name in _TARGET.items()}

# 8-byte words of XLA_FFI_CallFrame: extension_start, then args.args and rets.rets (c_api.h:
# struct_size, extension_start, api, ctx, stage, then args and rets of 5 words each)
_FRAME_WORDS, _FRAME_EXTENSION, _FRAME_API, _FRAME_CONTEXT, _FRAME_ARGS, _FRAME_RETS = 15, 1, 2, 3, 9, 14
# words of XLA_FFI_Buffer: struct_size, extension_start, dtype, data, rank, dims
_BUFFER_WORDS, _BUFFER_DATA, _BUFFER_RANK, _BUFFER_DIMS = 6, 3, 4, 5
# the metadata extension (XLA asks each handler which API version it was built for):
# extension_base {struct_size, type, next}, metadata -> {struct_size, api_version {struct_size,
# extension_start, int major, int minor}, traits}
_EXTENSION_METADATA, _METADATA_MAJOR_INT32 = 1, 6


def takes(problem: Any) -> bool:
    """Whether this path computes ``problem`` (the rows of :func:`._jax_fast.plan`)."""
    n = problem.opts.n_classes
    return (
        problem.opts.weight is None
        and 2 <= n <= _short.SHORT_MAX
        and np.dtype(problem.x.dtype) in _TARGET
        and available()
    )


@cache
def available() -> bool:
    """Whether jaxlib's FFI speaks the API version whose frame layout this module reads."""
    version = _api_version()
    if version is None or version[0] != 0 or platform.machine().lower() not in ("x86_64", "amd64"):
        return False  # (the handlers read and set x86's MXCSR)
    import jax

    # Numba's worker threads start on the first parallel call and copy the MXCSR of the thread
    # that starts them: started from inside XLA (subnormals flushed), every later NumPy call of
    # softgrad would flush too. Started here, from Python; this also loads the parallel runtime
    # whose symbols the cached handlers link to.
    _start_workers(np.zeros(4 * int(numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    for dtype, symbol in _TASK_SYMBOL.items():  # (first: the handlers link to them)
        task = numba.cfunc(types.void(types.voidptr), cache=True)(_TASKS[dtype])
        _COMPILED.append(task)
        llvm.add_symbol(symbol, task.address)
    for dtype, name in _TARGET.items():
        handler = numba.cfunc(types.voidptr(types.voidptr), cache=True)(_HANDLERS[dtype])
        address: Any = handler.address
        pointer = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(address)
        _COMPILED.append(handler)  # XLA keeps only the address: the code must live as long
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(pointer), platform="cpu")
    return True


_COMPILED: list[Any] = []


def _api_version() -> tuple[int, int] | None:
    try:
        import jax.ffi

        header = Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
        text = header.read_text()
    except (ImportError, AttributeError, OSError):
        return None
    major = re.search(r"#define XLA_FFI_API_MAJOR (\d+)", text)
    minor = re.search(r"#define XLA_FFI_API_MINOR (\d+)", text)
    if major is None or minor is None:
        return None
    return int(major.group(1)), int(minor.group(1))


def rows(problem: Any, want_grad: bool) -> tuple[Any, Any]:
    """``(loss, grad)`` of the rows ``problem.x`` (R, C), as :func:`._jax_fast._rows` returns
    them: the reduced loss (or the (R,) row losses) and the (R, C) gradient or None."""
    import jax
    import jax.numpy as jnp

    x, y = problem.x, problem.target
    n, reduction = problem.opts.n_classes, problem.opts.reduction
    in_range = (y >= 0) & (y < n)
    code = jnp.where(y == problem.opts.ignore_index, _IGNORED, jnp.where(in_range, y, _BAD))
    # numba's thread count as XLA's threads see it (numba.get_num_threads is per thread, and
    # a compiled call to it cannot be cached): the scratch is sized for it
    threads = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    options = jnp.asarray([_REDUCTION[reduction], int(want_grad), threads], dtype=jnp.int32)
    loss_shape = x.shape[:1] if reduction == "none" else ()
    grad_shape = x.shape if want_grad else (1, 1)
    call = jax.ffi.ffi_call(
        _TARGET[np.dtype(x.dtype)],
        (jax.ShapeDtypeStruct(loss_shape, x.dtype), jax.ShapeDtypeStruct(grad_shape, x.dtype)),
        vmap_method="broadcast_all",
    )
    loss, grad = call(x, jnp.astype(code, jnp.int32), options)
    return loss, (grad if want_grad else None)


# ---------------------------------------------------------------------------------------------
# The handler: pointers from XLA's call frame, then the kernels


def _view(context: Any, builder: Any, address: Any, count: Any, dtype: Any) -> Any:
    """LLVM for a 1-D C array of ``count`` ``dtype`` at the integer ``address`` (no owner)."""
    from numba.core import cgutils
    from numba.np.arrayobj import make_array, populate_array

    ptr = builder.inttoptr(address, context.get_value_type(types.CPointer(dtype)))
    ary = make_array(types.Array(dtype, 1, "C"))(context, builder)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))
    populate_array(
        ary,
        data=ptr,
        shape=cgutils.pack_array(builder, [count]),
        strides=cgutils.pack_array(builder, [itemsize]),
        itemsize=itemsize,
        meminfo=None,
    )
    return ary._getvalue()


def _array_at(dtype: Any) -> Any:
    """An intrinsic ``(address, count) -> array`` of ``count`` ``dtype`` values at ``address``."""

    def typer(typingctx: Any, address: Any, count: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return _view(context, builder, args[0], args[1], dtype)

        return types.Array(dtype, 1, "C")(types.int64, types.int64), codegen

    return intrinsic(typer)


def _floats_typer(typingctx: Any, address: Any, count: Any, like: Any) -> Any:
    """``(address, count, like)``: ``count`` floats of ``like``'s type at ``address``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return _view(context, builder, args[0], args[1], like)

    return types.Array(like, 1, "C")(types.int64, types.int64, like), codegen


def _address_typer(typingctx: Any, pointer: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ptrtoint(args[0], context.get_value_type(types.int64))

    return types.int64(pointer), codegen


def _null_typer(typingctx: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return context.get_constant_null(types.voidptr)

    return types.voidptr(), codegen


def _mxcsr_ptr(builder: Any) -> Any:
    from numba.core import cgutils

    return builder.bitcast(cgutils.alloca_once(builder, ir.IntType(32)), ir.IntType(8).as_pointer())


def _get_mxcsr_typer(typingctx: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        slot = _mxcsr_ptr(builder)
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse.stmxcsr", fnty=fnty), [slot])
        return builder.load(builder.bitcast(slot, ir.IntType(32).as_pointer()))

    return types.int32(), codegen


def _set_mxcsr_typer(typingctx: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        slot = _mxcsr_ptr(builder)
        builder.store(args[0], builder.bitcast(slot, ir.IntType(32).as_pointer()))
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse.ldmxcsr", fnty=fnty), [slot])
        return context.get_dummy_value()

    return types.none(types.int32), codegen


def _task_address_typer(typingctx: Any, like: Any) -> Any:
    """``_task_address(like)``: the address of the helper task for ``like``'s float type (a
    symbol that :func:`available` registers before it compiles the handlers)."""
    name = _TASK_SYMBOL[np.dtype(np.float32 if like == types.float32 else np.float64)]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
        task = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.ptrtoint(task, ir.IntType(64))

    return types.int64(like), codegen


_words: Any = _array_at(types.int64)
_int32_at: Any = _array_at(types.int32)
_floats_at: Any = intrinsic(_floats_typer)
_address_of: Any = intrinsic(_address_typer)
_task_address: Any = intrinsic(_task_address_typer)
_no_error: Any = intrinsic(_null_typer)  # the null XLA_FFI_Error*: success
_get_mxcsr: Any = intrinsic(_get_mxcsr_typer)
_set_mxcsr: Any = intrinsic(_set_mxcsr_typer)
_FLUSH_BITS = 0x8040  # MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6)


@numba.njit(parallel=True, cache=True)
def _start_workers(a: Any) -> None:  # pragma: no cover - jitted
    for i in numba.prange(a.shape[0]):
        a[i] += 1.0


@numba.njit(cache=True)
def _describe(extension: int) -> None:  # pragma: no cover - jitted
    """Answer XLA's metadata query: the FFI API version whose structs this handler reads. The
    layout above is the one of 0.1 to 0.3 (c_api.h only appends fields within a major version)."""
    base = _words(extension, 4)
    if (base[1] & 0xFFFFFFFF) == _EXTENSION_METADATA:
        version = _int32_at(base[3], _METADATA_MAJOR_INT32 + 2)
        version[_METADATA_MAJOR_INT32] = 0
        version[_METADATA_MAJOR_INT32 + 1] = 1


@numba.njit(cache=True)
def _handle(frame: int, zero: Any) -> None:  # pragma: no cover - jitted
    words = _words(frame, _FRAME_WORDS)
    if words[_FRAME_EXTENSION] != 0:
        _describe(words[_FRAME_EXTENSION])
        return
    args = _words(words[_FRAME_ARGS], 3)
    rets = _words(words[_FRAME_RETS], 2)
    xb = _words(args[0], _BUFFER_WORDS)
    rank = xb[_BUFFER_RANK]
    dims = _words(xb[_BUFFER_DIMS], rank)
    n, nrows = dims[rank - 1], dims[rank - 2]
    batch = 1
    for d in dims[: rank - 2]:
        batch *= d
    options = _int32_at(_words(args[2], _BUFFER_WORDS)[_BUFFER_DATA], 3)
    reduction, want_grad, threads = options[0], options[1] != 0, options[2]
    x = _floats_at(xb[_BUFFER_DATA], batch * nrows * n, zero).reshape((batch, nrows, n))
    code = _int32_at(_words(args[1], _BUFFER_WORDS)[_BUFFER_DATA], batch * nrows).reshape((batch, nrows))
    per_member = nrows if reduction == 0 else 1
    loss = _floats_at(_words(rets[0], _BUFFER_WORDS)[_BUFFER_DATA], batch * per_member, zero)
    grad_data = _words(rets[1], _BUFFER_WORDS)[_BUFFER_DATA]
    grad = _floats_at(grad_data, batch * nrows * n if want_grad else batch, zero)
    for b in range(batch):
        g = grad[:1].reshape((1, 1))  # (no gradient wanted: XLA's one-entry placeholder)
        if want_grad:
            g = grad[b * nrows * n : (b + 1) * nrows * n].reshape((nrows, n))
        pool = _Pool(words[_FRAME_API], words[_FRAME_CONTEXT], threads)
        _member(x[b], code[b], reduction, want_grad, pool, loss[b * per_member : (b + 1) * per_member], g)


@numba.njit(cache=True)
def _member(
    x: Any, code: Any, reduction: int, want_grad: bool, pool: Any, loss: Any, grad: Any
) -> None:  # pragma: no cover
    """One problem: rows ``x`` (R, n), codes, the reduced loss (or R row losses) and gradient."""
    nrows, n = x.shape
    counted, nbad = 0, 0
    for r in range(nrows):  # (vectorized: a per-row loop here cost 0.1 ms of 2.5 at 65536 x 10)
        counted += code[r] != _IGNORED
        nbad += code[r] == _BAD
    y = code
    if nbad:  # (rare: computed as ignored, then made NaN)
        y = code.copy()
        for r in range(nrows):
            y[r] = _IGNORED if code[r] == _BAD else code[r]
    scale = 1.0
    if reduction == 2:
        scale = 1.0 / counted if counted else 0.0
    row_loss = np.empty(nrows)
    constants = _ce_kernels.Constants(0.0, float(n), _IGNORED, 1, scale, False, False, True, want_grad, False)
    _run(x, y, row_loss, grad, constants, pool)
    if nbad:
        for r in range(nrows):
            if code[r] == _BAD:
                row_loss[r] = np.nan
                if want_grad:
                    grad[r, :] = np.nan
    if reduction == 0:
        for r in range(nrows):
            loss[r] = row_loss[r]
        return
    total = _rows.compensated_sum(row_loss)
    if reduction == 2:
        total = total * scale if counted else np.nan
    loss[0] = total


@numba.njit(cache=True)
def _run(x: Any, y: Any, row_loss: Any, grad: Any, c: Any, pool: Any) -> None:  # pragma: no cover - jitted
    """The short-row kernels of :mod:`._ce_kernels` (:func:`~._ce_kernels.cross_entropy_2d`'s
    choice for rows without class weights or smoothing). Rows of more than two classes share
    their blocks with XLA's own threads (:func:`_take_blocks`); pairs use Numba's threads."""
    nrows, n = x.shape
    nthr = pool.threads if x.size >= _rows.PARALLEL_MIN else 1
    ones = np.ones(1)
    if n == 2:
        flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
        if nthr > 1:
            _ce_kernels._ce_pair_2d(flat_x, y, ones, ones, ones, row_loss, flat_grad, _short.PAIR_ROWS, c)
        else:
            _ce_kernels._ce_pair_2d_serial(
                flat_x, y, ones, ones, ones, row_loss, flat_grad, _short.PAIR_ROWS, c
            )
        return
    if nrows == 0:
        return
    per = max(1, min(nrows, _short._BLOCK_ELEMS // n))
    state = _share_state(x, y, row_loss, grad, c, per)
    if nthr > 1:
        _schedule_helpers(pool, state, nthr - 1, x[0, 0])
    _take_blocks(state, x[0, 0])
    while _native.atomic_load(state + 8 * _S_DONE) < _words(state, _S_WORDS)[_S_NBLOCKS]:
        _native.pause()  # (only for a block a helper has taken and is still writing)
    _release(state)


# ---------------------------------------------------------------------------------------------
# Blocks shared with XLA's threads
#
# Numba's threads, started from XLA's threads, kept a team per calling thread that spun beside
# XLA's own idle workers: a third of the CPU time of a jitted 65536 x 10 step went to spinning.
# Instead the handler asks XLA's thread pool (XLA_FFI_ThreadPool_Schedule) to run helper tasks,
# and the handler and the helpers take blocks of rows from one atomic counter until none is
# left. XLA may run a task on the calling thread, later, or never in parallel: whoever comes
# takes what is left, so nothing waits for a task that has not started; the handler only waits
# for blocks a helper has taken. The shared state lives on the C heap with a reference count,
# because a helper may start after the handler has returned (it then finds no block and only
# drops its reference).

_Pool = namedtuple("_Pool", ["api", "context", "threads"])

# int64 words of the shared state
_S_NEXT, _S_DONE, _S_REFS, _S_NBLOCKS, _S_PER, _S_NROWS, _S_N = 0, 1, 2, 3, 4, 5, 6
_S_X, _S_Y, _S_LOSS, _S_GRAD, _S_WANT_GRAD, _S_SCALE = 7, 8, 9, 10, 11, 12
_S_WORDS = 13
# words of XLA_FFI_Api: XLA_FFI_Error_Destroy and XLA_FFI_ThreadPool_Schedule (c_api.h)
_API_ERROR_DESTROY, _API_SCHEDULE = 8, 17
_SCHEDULE_ARGS_BYTES, _DESTROY_ARGS_BYTES = 40, 24


@numba.njit(cache=True)
def _share_state(x: Any, y: Any, row_loss: Any, grad: Any, c: Any, per: int) -> int:  # pragma: no cover
    """The shared state of one problem on the C heap, holding the handler's reference."""
    nrows, n = x.shape
    state = _native.malloc(8 * _S_WORDS)
    words = _words(state, _S_WORDS)
    words[_S_NEXT] = 0
    words[_S_DONE] = 0
    words[_S_REFS] = 1  # the handler's
    words[_S_NBLOCKS] = (nrows + per - 1) // per
    words[_S_PER] = per
    words[_S_NROWS] = nrows
    words[_S_N] = n
    words[_S_X] = x.ctypes.data
    words[_S_Y] = y.ctypes.data
    words[_S_LOSS] = row_loss.ctypes.data
    words[_S_GRAD] = grad.ctypes.data
    words[_S_WANT_GRAD] = c.want_grad
    _floats_at(state, _S_WORDS, 0.0)[_S_SCALE] = c.row_scale_all
    return state


@numba.njit(cache=True)
def _schedule_helpers(pool: Any, state: int, count: int, like: Any) -> int:  # pragma: no cover
    """Ask XLA's thread pool to run ``count`` helpers on ``state``; how many it accepted."""
    api = _words(pool.api, _API_SCHEDULE + 1)
    if api[0] < 8 * (_API_SCHEDULE + 1) or api[_API_SCHEDULE] == 0:  # (an older table)
        return 0
    args = np.empty(5, np.int64)
    args[0] = _SCHEDULE_ARGS_BYTES
    args[1] = 0
    args[2] = pool.context
    args[3] = _task_address(like)
    args[4] = state
    for accepted in range(count):
        _native.atomic_add(state + 8 * _S_REFS, 1)  # (the helper's, first: it may run at once)
        error = _native.call_api(api[_API_SCHEDULE], args.ctypes.data)
        if error != 0:  # (no thread pool): the handler takes every block
            _native.atomic_add(state + 8 * _S_REFS, -1)
            destroy = np.empty(3, np.int64)
            destroy[0] = _DESTROY_ARGS_BYTES
            destroy[1] = 0
            destroy[2] = error
            _native.call_api(api[_API_ERROR_DESTROY], destroy.ctypes.data)
            return accepted
    return count


@numba.njit(cache=True)
def _take_blocks(state: int, like: Any) -> None:  # pragma: no cover - jitted
    """Compute blocks of ``state`` until none is left (handler and helpers alike)."""
    words = _words(state, _S_WORDS)
    nblocks, per, nrows, n = words[_S_NBLOCKS], words[_S_PER], words[_S_NROWS], words[_S_N]
    if _native.atomic_load(state + 8 * _S_NEXT) >= nblocks:
        return  # (a helper that came late: the buffers may be gone)
    want_grad = words[_S_WANT_GRAD] != 0
    x = _floats_at(words[_S_X], nrows * n, like).reshape((nrows, n))
    y = _int32_at(words[_S_Y], nrows)
    row_loss = _floats_at(words[_S_LOSS], nrows, 0.0)
    grad = _floats_at(words[_S_GRAD], nrows * n if want_grad else 1, like)
    scale = _floats_at(state, _S_WORDS, 0.0)[_S_SCALE]
    c = _ce_kernels.Constants(0.0, float(n), _IGNORED, 1, scale, False, False, True, want_grad, False)
    xt = np.empty((n, per + _short.PAD), x.dtype)  # (as _short.block_scratch)
    et = np.empty((n, per + _short.PAD))
    ot = np.empty((n, per + _short.PAD), x.dtype)
    aux = np.empty((_short.AUX_ROWS, per + _short.PAD))
    ones = np.ones(1)
    while True:
        b = _native.atomic_add(state + 8 * _S_NEXT, 1)
        if b >= nblocks:
            return
        r0 = b * per
        r1 = min(r0 + per, nrows)
        gb = grad[r0 * n : r1 * n].reshape((r1 - r0, n)) if want_grad else grad.reshape((1, 1))
        _ce_kernels._ce_short_block(x[r0:r1], y, ones, ones, ones, row_loss, gb, xt, et, ot, aux, r0, c)
        _native.atomic_add(state + 8 * _S_DONE, 1)


@numba.njit(cache=True)
def _release(state: int) -> None:  # pragma: no cover - jitted
    if _native.atomic_add(state + 8 * _S_REFS, -1) == 1:
        _native.free(state)


# XLA runs its CPU computations with subnormals flushed to zero (MXCSR's FTZ and DAZ); the
# kernels keep softgrad's results, subnormals included, as NumPy calls get them: the handlers
# clear the two bits for the call and restore them.


@numba.njit(cache=True)
def _call(frame: int, zero: Any) -> None:  # pragma: no cover - jitted
    state = _get_mxcsr()
    _set_mxcsr(state & ~_FLUSH_BITS)
    _handle(frame, zero)
    _set_mxcsr(state)


def _handler_f32(frame: Any) -> Any:  # pragma: no cover - compiled by available()
    _call(_address_of(frame), np.float32(0.0))
    return _no_error()


def _handler_f64(frame: Any) -> Any:  # pragma: no cover - compiled by available()
    _call(_address_of(frame), np.float64(0.0))
    return _no_error()


_HANDLERS = {np.dtype(np.float32): _handler_f32, np.dtype(np.float64): _handler_f64}


@numba.njit(cache=True)
def _help(state: int, zero: Any) -> None:  # pragma: no cover - jitted
    """A helper task on XLA's thread: blocks of ``state`` with subnormals kept, then its
    reference dropped."""
    mxcsr = _get_mxcsr()
    _set_mxcsr(mxcsr & ~_FLUSH_BITS)
    _take_blocks(state, zero)
    _set_mxcsr(mxcsr)
    _release(state)


def _task_f32(data: Any) -> None:  # pragma: no cover - compiled by available()
    _help(_address_of(data), np.float32(0.0))


def _task_f64(data: Any) -> None:  # pragma: no cover - compiled by available()
    _help(_address_of(data), np.float64(0.0))


_TASKS = {np.dtype(np.float32): _task_f32, np.dtype(np.float64): _task_f64}
