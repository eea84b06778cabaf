"""The kernels' own exp (core/_fastexp.py) against correctly rounded references.

float32: at most 1 ULP from the correctly rounded exp. The full sweep over all 2**32 float32
bit patterns is ``python -m softgrad.core._fastexp`` (run by hand, its result is recorded in
docs/performance.md); here a dense deterministic subset (every 257th bit pattern: every
binade, both signs, subnormals, infinities and NaNs, 16.7 million inputs) and the edges where
exp overflows, underflows and turns subnormal. float64: at most 2 ULP, against mpmath at 40
digits and against glibc's exp on millions of inputs. The reference for the float32 sweep is
exp in float64 (glibc), which is within 2**-28 float32 ULP of the exact value.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mp

from softgrad.core import _fastexp


def _ulp_error32(x: np.ndarray) -> np.ndarray:
    """|ours - exact| in float32 ULP, with exp in float64 (and mpmath near ties) as the truth."""
    ours = _fastexp.exp_array(x.astype(np.float32)).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    ulp = np.where(ref < np.finfo(np.float32).tiny, 2.0**-149, ulp)
    return np.abs(ours - ref) / ulp


def test_float32_dense_subset_within_one_ulp():
    worst, bits, n, bad = _fastexp.exhaustive_float32_check(0, 1 << 32, 257)
    assert n == -(-(1 << 32) // 257)
    assert bad == 0
    assert worst < 1.0, (worst, hex(bits))


def test_float32_contiguous_blocks_within_one_ulp():
    """Every float32 in [0.5, 1), in [-1, -0.5) and around the overflow and underflow edges."""
    for lo, hi in [(0x3F000000, 0x3F800000), (0xBF000000, 0xBF800000)]:
        worst, bits, n, bad = _fastexp.exhaustive_float32_check(lo, hi)
        assert n == hi - lo and bad == 0 and worst < 1.0, (worst, hex(bits))
    edges = [np.float32(88.72283), np.float32(-87.33654), np.float32(-103.97208), np.float32(-104.0)]
    for e in edges:
        b = int(np.array([e]).view(np.uint32)[0])
        worst, bits, n, bad = _fastexp.exhaustive_float32_check(b - 4096, b + 4096)
        assert bad == 0 and worst < 1.0, (e, worst, hex(bits))


def test_float32_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.8, 89.0, 1e30, -104.0, -1e30, 1e-45], np.float32)
    y = _fastexp.exp_array(x)
    assert y.dtype == np.float32
    assert np.array_equal(y[:4], [1.0, 1.0, np.inf, 0.0])
    assert np.isnan(y[4])
    assert np.all(np.isinf(y[5:8])) and np.array_equal(y[8:10], [0.0, 0.0]) and y[10] == 1.0
    # subnormal results are within one subnormal ULP
    z = np.linspace(-103.9, -87.4, 2001, dtype=np.float32)
    assert _ulp_error32(z).max() < 1.0


def test_float64_within_two_ulp_of_mpmath():
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.uniform(-745.1, 709.7, 1500),
            rng.uniform(-0.35, 0.35, 300),
            rng.uniform(-745.13, -708.0, 300),  # subnormal results
            np.array([1e-300, -1e-300, 5e-324, 709.78, -745.13, 0.34657359027997264]),
        ]
    )
    y = _fastexp.exp_array(x)
    worst = 0.0
    with mp.workdps(40):
        for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
            exact = mpmath.exp(mpmath.mpf(xi))
            tiny = exact <= 2.0**-1022
            ulp = mpmath.mpf(2) ** -1074 if tiny else mpmath.mpf(float(np.spacing(np.float64(float(exact)))))
            worst = max(worst, float(abs(mpmath.mpf(yi) - exact) / ulp))
    assert worst <= 1.0, worst  # the contract is 2 ULP; the design gives below 1


def test_float64_dense_against_glibc():
    x = np.linspace(-745.0, 709.0, 4_000_001)
    y = _fastexp.exp_array(x)
    ref = np.exp(x)
    ulp = np.spacing(ref)
    assert np.max(np.abs(y - ref) / ulp) <= 2.0
    special = np.array([np.inf, -np.inf, np.nan, 710.0, -746.0, 0.0])
    out = _fastexp.exp_array(special)
    assert np.array_equal(out[[0, 1, 3, 4, 5]], [np.inf, 0.0, np.inf, 0.0, 1.0]) and np.isnan(out[2])


def test_lowp_exp_for_float32_results_is_within_2_pow_minus_33():
    """exp_lowp (float32 results computed in float64) against glibc."""
    import numba

    @numba.njit
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = _fastexp.exp_lowp(x[i])

    x = np.linspace(-706.0, 708.0, 2_000_001)
    out = np.empty_like(x)
    run(x, out)
    rel = np.abs(out / np.exp(x) - 1.0)
    assert rel.max() < 2.0**-33, rel.max()


def test_core_folds_the_correction_term():
    """exp_core(s, err) == exp(s + err) with err far below ulp(s) (the TwoSum tail)."""
    import numba

    @numba.njit
    def run(s, e, out):
        for i in range(s.shape[0]):
            out[i] = _fastexp.exp_core(s[i], e[i])

    rng = np.random.default_rng(9)
    s = rng.uniform(-700.0, 0.0, 400)
    err = s * rng.uniform(-1.1e-16, 1.1e-16, 400)
    out = np.empty_like(s)
    run(s, err, out)
    with mp.workdps(50):
        worst = max(
            float(abs(mpmath.mpf(o) - mpmath.exp(mpmath.mpf(a) + mpmath.mpf(b))) / mpmath.mpf(np.spacing(o)))
            for a, b, o in zip(s.tolist(), err.tolist(), out.tolist(), strict=True)
        )
    assert worst <= 1.0, worst


def test_ulp_helper_matches_numpy_spacing():
    """The sweep's ULP (float32 spacing at a float64 value, 2**-149 below the normal range)."""
    for v in (1.0, 3.0e-38, 1.5, 2.0**-130, 1e38):
        assert _fastexp._ulp32(v) == float(np.spacing(np.float32(v))), v


def test_bad_arguments():
    with pytest.raises(ValueError, match="step"):
        _fastexp.exhaustive_float32_check(0, 10, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        _fastexp.exp_array(np.arange(3))


def _log1p_pos(x: np.ndarray) -> np.ndarray:
    import numba

    @numba.njit(error_model="numpy")
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = _fastexp.log1p_pos(x[i])

    out = np.empty_like(x)
    run(x, out)
    return out


def test_log1p_pos_within_0_8_ulp_of_mpmath():
    """The kernels' branch-free log1p (x >= 0: a normalizer's rest) against 40-digit mpmath,
    from subnormal x through x = 31 (rows of 32 tied entries), every binade and the reduction's
    edges (1 + x next to sqrt(2), 2, 4)."""
    rng = np.random.default_rng(9)
    x = np.concatenate(
        [
            rng.random(3000),
            10.0 ** rng.uniform(-320, 1.5, 3000),
            np.sqrt(2.0) - 1.0 + rng.uniform(-1e-6, 1e-6, 200),
            np.array([0.0, 5e-324, 2.0**-53, 2.0**-52, 1e-300, 1.0, 3.0, 31.0, np.nextafter(1.0, 0.0)]),
        ]
    )
    y = _log1p_pos(x)
    worst = 0.0
    with mp.workdps(40):
        for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
            exact = mpmath.log1p(mpmath.mpf(xi))
            if exact == 0:
                assert yi == 0.0
                continue
            ulp = mpmath.mpf(float(np.spacing(np.float64(float(exact)))))
            worst = max(worst, float(abs(mpmath.mpf(yi) - exact) / ulp))
    assert worst <= 0.8, worst


def test_log1p_pos_dense_against_glibc():
    x = np.concatenate([np.linspace(0.0, 32.0, 1_000_001), np.geomspace(1e-300, 1.0, 1_000_001)])
    ref = np.log1p(x)
    assert np.max(np.abs(_log1p_pos(x) - ref) / np.spacing(np.maximum(ref, 5e-324))) <= 1.5
