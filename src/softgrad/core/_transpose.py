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

from typing import Any, NamedTuple

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LOAD_WIDTHS", "STORE_WIDTHS", "cols_to_rows", "lanes", "rows_to_cols", "shuffled"]

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


class _Group(NamedTuple):
    """LLVM values of one group of :func:`lanes` rows: the rows' and the columns' arrays, the
    group's first row as a byte offset into one row of the columns, and the column stride."""

    builder: Any
    rows: Any
    cols: Any
    row_bytes: Any
    column_stride: Any
    element: ir.Type
    per_vector: int
    itemsize: int

    def column_ptr(self, j: int) -> Any:
        offset = self.builder.add(self.builder.mul(_int64(j), self.column_stride), self.row_bytes)
        column_type = ir.VectorType(self.element, self.per_vector)
        return self.builder.bitcast(_byte_ptr(self.builder, self.cols, offset), column_type.as_pointer())

    def rows_ptr(self, width: int) -> Any:
        start = _byte_ptr(self.builder, self.rows, self.builder.mul(self.row_bytes, _int64(width)))
        return self.builder.bitcast(start, ir.VectorType(self.element, width * self.per_vector).as_pointer())


def _emit_load(group: _Group, width: int) -> None:
    """Rows to columns: one load of the group's rows, a shuffle and a store per column."""
    b = group.builder
    block = b.load(group.rows_ptr(width), align=group.itemsize)
    undefined = ir.Constant(block.type, ir.Undefined)
    for j in range(width):
        column = b.shuffle_vector(block, undefined, _mask([j + width * i for i in range(group.per_vector)]))
        b.store(column, group.column_ptr(j), align=group.itemsize)


def _emit_store(group: _Group, width: int) -> None:
    """Columns to rows: a load per column, the columns end to end, one shuffle and one store."""
    b = group.builder
    whole = _concatenate(b, [b.load(group.column_ptr(j), align=group.itemsize) for j in range(width)])
    order = [(k % width) * group.per_vector + k // width for k in range(width * group.per_vector)]
    b.store(b.shuffle_vector(whole, ir.Constant(whole.type, ir.Undefined), _mask(order)),
            group.rows_ptr(width), align=group.itemsize)


def _transpose_typer(rows_arg: int, widths: dict[int, tuple[int, ...]], emit: Any) -> Any:
    """The typer of an intrinsic ``(a, b, r0)`` that transposes the :func:`lanes` rows from
    ``r0`` between the C-contiguous rows array (argument ``rows_arg``, 2-D, ``n`` entries a
    row) and the columns array (the other one, ``(n, rows)``), where ``n`` is in ``widths``."""

    def typer(typingctx: Any, a: Any, b: Any, r0: Any) -> Any:
        rows_type, cols_type = (a, b) if rows_arg == 0 else (b, a)
        if not (isinstance(rows_type, types.Array) and isinstance(cols_type, types.Array)):
            return None
        if rows_type.layout != "C":
            return None
        itemsize = rows_type.dtype.bitwidth // 8

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            arrays = [context.make_array(signature.args[k])(context, builder, args[k]) for k in (0, 1)]
            rows, cols = arrays[rows_arg], arrays[1 - rows_arg]
            group = _Group(
                builder, rows, cols, builder.mul(args[2], _int64(itemsize)),
                cgutils.unpack_tuple(builder, cols.strides, 2)[0],
                _element(rows_type.dtype), VECTOR_BYTES // itemsize, itemsize,
            )
            n = cgutils.unpack_tuple(builder, rows.shape, 2)[1]
            _switch_on_width(builder, n, widths[itemsize], lambda width: emit(group, width))
            return context.get_dummy_value()

        return types.none(a, b, types.intp), codegen

    return typer


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


rows_to_cols_at: Any = intrinsic(_transpose_typer(0, LOAD_WIDTHS, _emit_load))
"""``rows_to_cols_at(x, xt, r0)``: ``xt[j, r0 + i] = x[r0 + i, j]`` for the :func:`lanes` rows
from ``r0``, where the width is in :data:`LOAD_WIDTHS` (else nothing)."""
cols_to_rows_at: Any = intrinsic(_transpose_typer(1, STORE_WIDTHS, _emit_store))
"""``cols_to_rows_at(ot, out, r0)``: ``out[r0 + i, j] = ot[j, r0 + i]``, where the width is in
:data:`STORE_WIDTHS` (else nothing)."""


@numba.njit(inline="always", cache=True)
def _whole_groups(rows_array: Any, load: bool) -> int:  # pragma: no cover - jitted
    """Rows of ``rows_array`` in whole groups of :func:`lanes` if its width is shuffled, else 0."""
    rows, n = rows_array.shape
    return rows - rows % lanes(rows_array.itemsize) if shuffled(n, rows_array.itemsize, load) else 0


@numba.njit(inline="always", cache=True)
def rows_to_cols(x: Any, xt: Any) -> int:  # pragma: no cover - jitted
    """Transpose the whole groups of rows of ``x`` into ``xt`` by shuffles where its width is in
    :data:`LOAD_WIDTHS`; the number of rows done (the caller does the rest)."""
    done = _whole_groups(x, True)
    for r0 in range(0, done, lanes(x.itemsize)):
        rows_to_cols_at(x, xt, r0)
    return done


@numba.njit(inline="always", cache=True)
def cols_to_rows(ot: Any, out: Any) -> int:  # pragma: no cover - jitted
    """Transpose ``ot`` back into the whole groups of rows of ``out`` by shuffles where its width
    is in :data:`STORE_WIDTHS`; the number of rows done."""
    done = _whole_groups(out, False)
    for r0 in range(0, done, lanes(out.itemsize)):
        cols_to_rows_at(ot, out, r0)
    return done
