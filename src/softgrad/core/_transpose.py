"""Block transposes of the short-row kernels by vector shuffles (one LLVM ``shufflevector``).

The short-row kernels (:mod:`._short`) transpose each block of rows ``(rows, n)`` into
columns ``(n, rows)`` and their results back. Done entry by entry, the transposes took about
half of a 65536 x 10 float32 cross-entropy; AVX-512's gathers and scatters are no faster at
10 entries. Here :data:`LANES` rows (one 64-byte vector per column) are read as one contiguous
vector of ``n * LANES`` entries and reordered by a single shuffle with a constant mask, which
LLVM lowers to register permutes for whatever vector unit the machine has (the code is plain
LLVM IR, not x86 intrinsics). The mask depends on ``n``, so each width is its own code: the
intrinsics emit a ``switch`` over the widths in :data:`LOAD_WIDTHS` / :data:`STORE_WIDTHS`
and leave other widths to the callers' entry-by-entry loops.

Measured on 65536 x 10 float32, one thread, 80 blocks of 816 rows (minimum of 200 calls):
the load 0.39-0.57 -> 0.16-0.19 ms, the store 0.42-0.44 -> 0.17-0.19 ms.
"""

from __future__ import annotations

from typing import Any

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LOAD_WIDTHS", "STORE_WIDTHS", "lanes", "shuffled"]

VECTOR_BYTES = 64
"""Bytes per column vector: 16 float32 or 8 float64 rows per shuffle."""

LOAD_WIDTHS: dict[int, tuple[int, ...]] = {4: tuple(range(3, 33)), 8: tuple(range(3, 33))}
"""Row widths whose rows-to-columns transpose is a shuffle, by itemsize."""

STORE_WIDTHS: dict[int, tuple[int, ...]] = {4: tuple(range(3, 13)), 8: tuple(range(3, 9))}
"""Row widths whose columns-to-rows transpose is a shuffle, by itemsize (wider rows measured
slower than the entry-by-entry store)."""


@numba.njit(inline="always", cache=True)
def lanes(itemsize: int) -> int:  # pragma: no cover - jitted
    """Rows per shuffle for entries of ``itemsize`` bytes."""
    return VECTOR_BYTES // itemsize


@numba.njit(inline="always", cache=True)
def shuffled(n: int, itemsize: int, load: bool) -> bool:  # pragma: no cover - jitted
    """Whether rows of ``n`` entries of ``itemsize`` bytes are transposed by shuffles."""
    if itemsize == 4:
        return 3 <= n <= 32 if load else 3 <= n <= 12
    return 3 <= n <= 32 if load else 3 <= n <= 8


def _element(dtype: Any) -> ir.Type:
    return ir.FloatType() if dtype == types.float32 else ir.DoubleType()


def _byte_ptr(builder: Any, array: Any, offset: Any) -> Any:
    base = builder.bitcast(array.data, ir.IntType(8).as_pointer())
    return builder.gep(base, [offset])


def _int64(value: int) -> ir.Constant:
    return ir.Constant(ir.IntType(64), value)


def _mask(indices: list[int]) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(32), len(indices)), indices)


def _switch_on_width(builder: Any, n: Any, widths: tuple[int, ...], emit: Any) -> None:
    """``switch (n)``: a case per width running ``emit(width)``, nothing for other widths."""
    done = builder.append_basic_block("transposed")
    switch = builder.switch(n, done)
    for width in widths:
        case = builder.append_basic_block(f"width{width}")
        switch.add_case(ir.Constant(n.type, width), case)
        builder.position_at_end(case)
        emit(width)
        builder.branch(done)
    builder.position_at_end(done)


def _rows_to_cols_typer(typingctx: Any, x: Any, xt: Any, r0: Any) -> Any:
    """``xt[j, r0 + i] = x[r0 + i, j]`` for the :func:`lanes` rows from ``r0`` (C-contiguous
    ``x``), where the width ``n`` is in :data:`LOAD_WIDTHS`."""
    if not (isinstance(x, types.Array) and x.layout == "C" and isinstance(xt, types.Array)):
        return None
    elt_size = x.dtype.bitwidth // 8
    count, widths = VECTOR_BYTES // elt_size, LOAD_WIDTHS[elt_size]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(signature.args[1])(context, builder, args[1])
        r0v = args[2]
        n = cgutils.unpack_tuple(builder, src.shape, 2)[1]
        column_stride = cgutils.unpack_tuple(builder, dst.strides, 2)[0]
        element = _element(signature.args[0].dtype)
        row_bytes = builder.mul(r0v, _int64(elt_size))

        def emit(width: int) -> None:
            block_type = ir.VectorType(element, width * count)
            start = _byte_ptr(builder, src, builder.mul(row_bytes, _int64(width)))
            block = builder.load(builder.bitcast(start, block_type.as_pointer()), align=elt_size)
            column_type = ir.VectorType(element, count)
            for j in range(width):
                column = builder.shuffle_vector(
                    block, ir.Constant(block_type, ir.Undefined), _mask([j + width * i for i in range(count)])
                )
                offset = builder.add(builder.mul(_int64(j), column_stride), row_bytes)
                at = builder.bitcast(_byte_ptr(builder, dst, offset), column_type.as_pointer())
                builder.store(column, at, align=elt_size)

        _switch_on_width(builder, n, widths, emit)
        return context.get_dummy_value()

    return types.none(x, xt, types.intp), codegen


def _concatenate(builder: Any, vectors: list[Any]) -> Any:
    """One vector of the equal-length ``vectors`` end to end (the last ones padded with undef
    entries while pairing, cut off at the end)."""
    count = vectors[0].type.count
    total = count * len(vectors)
    while len(vectors) > 1:
        paired = []
        for k in range(0, len(vectors) - 1, 2):
            a, b = vectors[k], vectors[k + 1]
            if b.type.count != a.type.count:  # (an odd one out from the level below)
                b = builder.shuffle_vector(
                    b, ir.Constant(b.type, ir.Undefined),
                    _mask([i if i < b.type.count else 0 for i in range(a.type.count)]),
                )
            paired.append(builder.shuffle_vector(a, b, _mask(list(range(2 * a.type.count)))))
        if len(vectors) % 2:
            paired.append(vectors[-1])
        vectors = paired
    whole = vectors[0]
    if whole.type.count == total:
        return whole
    return builder.shuffle_vector(whole, ir.Constant(whole.type, ir.Undefined), _mask(list(range(total))))


def _cols_to_rows_typer(typingctx: Any, ot: Any, out: Any, r0: Any) -> Any:
    """``out[r0 + i, j] = ot[j, r0 + i]`` for the :func:`lanes` rows from ``r0`` (C-contiguous
    ``out``), where the width ``n`` is in :data:`STORE_WIDTHS`."""
    if not (isinstance(out, types.Array) and out.layout == "C" and isinstance(ot, types.Array)):
        return None
    elt_size = out.dtype.bitwidth // 8
    count, widths = VECTOR_BYTES // elt_size, STORE_WIDTHS[elt_size]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(signature.args[1])(context, builder, args[1])
        r0v = args[2]
        n = cgutils.unpack_tuple(builder, dst.shape, 2)[1]
        column_stride = cgutils.unpack_tuple(builder, src.strides, 2)[0]
        element = _element(signature.args[1].dtype)
        row_bytes = builder.mul(r0v, _int64(elt_size))

        def emit(width: int) -> None:
            column_type = ir.VectorType(element, count)
            columns = []
            for j in range(width):
                offset = builder.add(builder.mul(_int64(j), column_stride), row_bytes)
                at = builder.bitcast(_byte_ptr(builder, src, offset), column_type.as_pointer())
                columns.append(builder.load(at, align=elt_size))
            whole = _concatenate(builder, columns)
            rows = builder.shuffle_vector(
                whole, ir.Constant(whole.type, ir.Undefined),
                _mask([(k % width) * count + k // width for k in range(width * count)]),
            )
            start = _byte_ptr(builder, dst, builder.mul(row_bytes, _int64(width)))
            builder.store(rows, builder.bitcast(start, rows.type.as_pointer()), align=elt_size)

        _switch_on_width(builder, n, widths, emit)
        return context.get_dummy_value()

    return types.none(ot, out, types.intp), codegen


rows_to_cols_at: Any = intrinsic(_rows_to_cols_typer)
cols_to_rows_at: Any = intrinsic(_cols_to_rows_typer)
