"""The short-row kernels' block transposes (core/_transpose.py through core/_short.py's _load and
_store) against NumPy's transpose: every width the kernels take, both float types, row counts
with and without a partial group of rows, and a block that starts inside a larger array."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from softgrad.core import _short, _transpose


@numba.njit
def _load_block(x, xt, single):
    rows = x.shape[0]
    m = np.empty(rows)
    lo = np.empty(rows)
    total = np.empty(rows)
    _short._load(x, xt, m, lo, total, single)
    return m, total


@numba.njit
def _store_block(ot, out):
    _short._store(ot, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 15, 16, 17, 819])
def test_load_and_store_are_transposes(dtype, rows):
    rng = np.random.default_rng(rows)
    single = np.dtype(dtype).itemsize == 4
    for n in range(2, _short.SHORT_MAX + 1):
        big = rng.normal(size=(rows + 5, n)).astype(dtype)
        x = big[3 : 3 + rows]  # (a block inside the array: rows start at any offset)
        xt = np.full((n, rows + _short.PAD), np.nan, dtype)
        m, total = _load_block(x, xt, single)
        np.testing.assert_array_equal(xt[:, :rows], x.T, err_msg=f"load, n={n}")
        np.testing.assert_array_equal(m, x.max(axis=1).astype(np.float64))
        np.testing.assert_allclose(total, x.astype(np.float64).sum(axis=1), rtol=1e-12, atol=1e-12)
        out = np.full_like(big, np.nan)
        _store_block(xt, out[1 : 1 + rows])
        np.testing.assert_array_equal(out[1 : 1 + rows], x, err_msg=f"store, n={n}")
        assert np.isnan(out[0]).all() and np.isnan(out[1 + rows :]).all(), f"store wrote outside, n={n}"


def test_the_widths_taken_by_shuffles_are_the_tables():
    for itemsize in (4, 8):
        for n in range(2, _short.SHORT_MAX + 1):
            assert _transpose.shuffled(n, itemsize, True) == (n in _transpose.LOAD_WIDTHS[itemsize])
            assert _transpose.shuffled(n, itemsize, False) == (n in _transpose.STORE_WIDTHS[itemsize])
