"""The few machine operations the XLA FFI handlers need beyond Numba: atomics, the C heap, and
calls through the function pointers of XLA's ``XLA_FFI_Api`` table.

Every function here is a Numba intrinsic on integer addresses (no Python objects), usable
from ``cfunc`` handlers. Atomics are sequentially consistent: the handlers use them to hand
out blocks of rows between threads and to learn that every block is written.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["atomic_add", "atomic_load", "call_api", "free", "malloc", "pause"]

_I64 = ir.IntType(64)
_BYTE_PTR = ir.IntType(8).as_pointer()


def _word_ptr(builder: Any, address: Any) -> Any:
    return builder.inttoptr(address, _I64.as_pointer())


def _atomic_add_typer(typingctx: Any, address: Any, value: Any) -> Any:
    """``atomic_add(address, value)``: adds to the int64 at ``address``, returns the old value."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.atomic_rmw("add", _word_ptr(builder, args[0]), args[1], "seq_cst")

    return types.int64(types.int64, types.int64), codegen


def _atomic_load_typer(typingctx: Any, address: Any) -> Any:
    """``atomic_load(address)``: the int64 at ``address``, read atomically."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.load_atomic(_word_ptr(builder, args[0]), "seq_cst", 8)

    return types.int64(types.int64), codegen


def _pause_typer(typingctx: Any) -> Any:
    """``pause()``: a spin-wait hint to the core (x86 ``pause``)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [])
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=fnty), [])
        return context.get_dummy_value()

    return types.none(), codegen


def _malloc_typer(typingctx: Any, nbytes: Any) -> Any:
    """``malloc(nbytes)``: the address of ``nbytes`` from the C heap (0 when out of memory)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_BYTE_PTR, [_I64]), "malloc")
        return builder.ptrtoint(builder.call(fn, [args[0]]), _I64)

    return types.int64(types.int64), codegen


def _free_typer(typingctx: Any, address: Any) -> Any:
    """``free(address)``: returns memory of :func:`malloc` to the C heap."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [_BYTE_PTR])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "free")
        builder.call(fn, [builder.inttoptr(args[0], _BYTE_PTR)])
        return context.get_dummy_value()

    return types.none(types.int64), codegen


def _call_api_typer(typingctx: Any, function: Any, arguments: Any) -> Any:
    """``call_api(function, arguments)``: calls the ``XLA_FFI_Error* f(Args*)`` at address
    ``function`` with the address of its argument struct; returns the error's address (0: none)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(_BYTE_PTR, [_BYTE_PTR])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        error = builder.call(fn, [builder.inttoptr(args[1], _BYTE_PTR)])
        return builder.ptrtoint(error, _I64)

    return types.int64(types.int64, types.int64), codegen


atomic_add: Any = intrinsic(_atomic_add_typer)
atomic_load: Any = intrinsic(_atomic_load_typer)
pause: Any = intrinsic(_pause_typer)
malloc: Any = intrinsic(_malloc_typer)
free: Any = intrinsic(_free_typer)
call_api: Any = intrinsic(_call_api_typer)
