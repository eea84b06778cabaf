"""Accuracy of softmax, log_softmax and logsumexp against mpmath at 50 digits, in ULP.

The reference value of every output is computed in mpmath from the exact input (the float32 or
float64 numbers themselves), rounded once to the output dtype, and the distance of softgrad's
result from it is counted in units in the last place (ULP): 0 means correctly rounded. The
contract is 4 ULP in float32 and float64, on random rows and on adversarial ones (huge
magnitudes, wide spreads, ties, one dominant entry, results near 0, subnormal results, a row of
10^6 entries). The largest error found per function, dtype and data set is printed at the end
of the run (see ``accuracy_report`` in conftest.py).

One exception is measured and bounded separately: float64 ``logsumexp`` when all entries are
negative and the result cancels against the maximum (``logsumexp([-0.7, -0.7]) = -0.0069``).
Its condition number is ``|max| / |result|``; no float64 algorithm without extended-precision
``exp`` does better than a few ULP *of the maximum* there, and that is what is asserted.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import numpy as np
import pytest
from mpmath import mp

import softgrad as sg

DPS = 50
MAX_ULP = 4
FUNCTIONS = ("softmax", "log_softmax", "logsumexp")


# --- ULP measurement ------------------------------------------------------------------------


def round_to_dtype(v: Any, dtype: Any) -> Any:
    """The real number ``v`` (mpmath) correctly rounded to ``dtype``: nearest, ties to even.

    Handles the subnormal range (fixed quantum ``2**(emin - p + 1)``) and overflow (values at or
    beyond half an ULP past the largest float become inf), so that float32 is rounded once from
    the exact value and never through float64.
    """
    fi = np.finfo(dtype)
    if mpmath.isnan(v):
        return dtype(np.nan)
    if mpmath.isinf(v):
        return dtype(np.inf if v > 0 else -np.inf)
    if v == 0:
        return dtype(0.0)
    p = fi.nmant + 1
    _, e = mpmath.frexp(v)  # v = f * 2**e with 0.5 <= |f| < 1
    quantum = max(int(e) - 1, fi.minexp) - (p - 1)
    with mp.workprec(mp.prec + 2 * p + 64):
        n = mpmath.nint(mpmath.ldexp(v, -quantum))  # nint rounds ties to even
    r = mpmath.ldexp(n, quantum)  # exact: n has at most p + 1 bits
    if abs(r) > mpmath.mpf(float(fi.max)):
        return dtype(np.inf if r > 0 else -np.inf)
    return dtype(float(r))


def _ordinal(a: np.ndarray) -> np.ndarray:
    """Map floats to integers so that adjacent floats differ by 1 (and -0 == +0)."""
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    i = a.view(ints).astype(np.int64)
    magnitude = i & np.int64(np.iinfo(ints).max)
    return np.where(i < 0, -magnitude, magnitude)


def ulp_distance(computed: Any, exact: Any) -> np.ndarray:
    """How many floats of ``computed``'s dtype lie between ``computed`` and ``exact`` (inf if NaN).

    ``exact`` must already be rounded to that dtype (see :func:`round_to_dtype`).
    """
    computed = np.asarray(computed)
    exact = np.asarray(exact, dtype=computed.dtype)
    dist = np.abs(_ordinal(computed) - _ordinal(exact)).astype(np.float64)
    nan_c, nan_e = np.isnan(computed), np.isnan(exact)
    dist = np.where(nan_c | nan_e, np.inf, dist)
    return np.where(nan_c & nan_e, 0.0, dist)


def test_ulp_helper_counts_floats():
    one = np.float32(1.0)
    assert ulp_distance(np.nextafter(one, np.float32(2)), one) == 1
    assert ulp_distance(np.float32(-0.0), np.float32(0.0)) == 0
    tiny = np.float64(5e-324)
    assert ulp_distance(-tiny, tiny) == 2  # across zero
    assert ulp_distance(np.float64(np.nan), 1.0) == np.inf
    with mp.workdps(DPS):
        third = mpmath.mpf(1) / 3
        assert round_to_dtype(third, np.float32) == np.float32(1 / 3)
        assert round_to_dtype(third, np.float64) == 1 / 3
        # a float32 tie that double rounding through float64 would get wrong
        tie = mpmath.mpf(1) + mpmath.mpf(2) ** -24 + mpmath.mpf(2) ** -80
        assert round_to_dtype(tie, np.float32) == np.nextafter(np.float32(1), np.float32(2))
        assert round_to_dtype(mpmath.mpf(2) ** -149 * 0.6, np.float32) == np.float32(2**-149)
        assert round_to_dtype(mpmath.mpf(2) ** 128, np.float32) == np.inf


# --- mpmath references ---------------------------------------------------------------------


def mp_family(row: Sequence[float], temperature: float = 1.0) -> tuple[list, list, Any]:
    """softmax, log_softmax and logsumexp of a finite row, in mpmath at the current precision.

    The normalizer is ``1 + rest`` with ``rest`` the sum over all entries but one maximum, and
    its log goes through ``log1p``: at 50 digits ``log(1 + 1e-60)`` would be 0.
    """
    t = mpmath.mpf(temperature)
    xs = [mpmath.mpf(float(v)) / t for v in row]
    m = max(xs)
    k = xs.index(m)
    es = [mpmath.exp(v - m) for v in xs]
    rest = mpmath.fsum(es[:k] + es[k + 1 :])
    log_total = mpmath.log1p(rest)
    total = 1 + rest
    return [e / total for e in es], [(v - m) - log_total for v in xs], m + log_total


def mp_family_counts(values: Sequence[float], counts: Sequence[int]) -> tuple[list, list, Any]:
    """As :func:`mp_family` for a row holding ``counts[i]`` copies of ``values[i]``."""
    xs = [mpmath.mpf(float(v)) for v in values]
    m = max(xs)
    k = xs.index(m)
    es = [mpmath.exp(v - m) for v in xs]
    rest = mpmath.fsum(c * e for c, e in zip(counts, es, strict=True)) - es[k]
    log_total = mpmath.log1p(rest)
    total = 1 + rest
    return [e / total for e in es], [(v - m) - log_total for v in xs], m + log_total


@functools.cache
def _reference_rows(key: tuple[str, str, float]) -> list[dict[str, np.ndarray]]:
    """References for every row of data set ``key = (name, dtype, temperature)``, cached."""
    name, dtype_name, temperature = key
    dtype = np.dtype(dtype_name).type
    out = []
    with mp.workdps(DPS):
        for x in DATA_SETS[name](dtype):
            refs = {}
            batch = x.reshape(-1, x.shape[-1])
            per_row = [mp_family(row, temperature) for row in batch]
            refs["softmax"] = np.array([[round_to_dtype(v, dtype) for v in r[0]] for r in per_row])
            refs["log_softmax"] = np.array([[round_to_dtype(v, dtype) for v in r[1]] for r in per_row])
            refs["logsumexp"] = np.array([round_to_dtype(r[2], dtype) for r in per_row])
            refs["logsumexp_max"] = np.max(batch, axis=-1)
            refs["logsumexp_exact"] = np.array([float(r[2]) for r in per_row])
            out.append({k: v.reshape(x.shape[:-1] + v.shape[1:]) for k, v in refs.items()})
    return out


# --- data sets: functions of the dtype, returning a list of arrays (rows along the last axis) --


def random_set(dtype: Any) -> list[np.ndarray]:
    """Normal rows of length 1..200 at scales 0.1..300, in batches."""
    rng = np.random.default_rng(20261122)
    arrays = []
    for n in (1, 2, 3, 5, 10, 31, 200):
        for scale in (0.1, 1.0, 10.0, 300.0):
            arrays.append((rng.standard_normal((6, n)) * scale).astype(dtype))
    arrays.append((rng.uniform(-1e4, 1e4, (4, 7))).astype(dtype))  # wide spreads
    arrays.append((rng.standard_normal((4, 9)) + 1e4).astype(dtype))  # large common offset
    return arrays


def adversarial_set(dtype: Any) -> list[np.ndarray]:
    """Rows built to break naive and half-careful implementations."""
    fi = np.finfo(dtype)
    big = float(fi.max) * 0.9
    huge = 1e300 if dtype == np.float64 else 3e38
    low = -745.0 if dtype == np.float64 else -104.0  # near where exp underflows (float64/32)
    rows: list[list[float]] = [
        [huge, -huge, 0.0],  # huge magnitudes
        [big, -big],  # the difference is beyond the largest float
        [big, big * (1 - 4 * float(fi.eps)), 0.0],
        [-huge, -huge],  # a tie at a huge negative value
        [0.0, -700.123456789, 3.3],  # a wide spread
        [1000.0, 2000.0, 3000.0],
        [0.0, -30.0],  # logsumexp near 0: log1p(exp(-30))
        [0.0, -50.0],
        [0.0, -100.0],  # softmax below the float32 normal range
        [0.0, low],  # exp at the underflow edge
        [0.0, low + 40.0],
        [5.0, 5.0, 5.0, 5.0],  # ties
        [1.0, 1.0, 0.5],
        [2.5, 2.5, -40.0],
        [-50.5, -50.5, -50.5],
        [100.0, 0.0, -1.0, -2.0],  # one dominant entry
        [1e-8, 0.0, -1e-8],  # nearly equal
        [1.0, 1.0 + float(fi.eps), 1.0 - float(fi.eps)],
        [-1e-300 if dtype == np.float64 else -1e-38, 0.0],
        [709.0, 710.0, 0.0],
        [-1000.0, -1000.5, -2000.0],
        [1e8, 1e8 + 1.0, 1e8 - 3.0],
        [-0.75, -0.75],  # all negative: logsumexp cancels against the maximum
        [-0.6931471805599453, -0.6931471805599453],
        [-3.0, -2.5, -2.0, -2.2],
        [7.0],  # a single entry
    ]
    arrays = [np.array(r, dtype=dtype)[None, :] for r in rows]
    dominant = np.full(1000, -20.0)
    dominant[417] = 0.0
    arrays.append(dominant.astype(dtype)[None, :])
    arrays.append(np.zeros((1, 4096), dtype=dtype))  # 4096 ties: softmax 2**-12
    return arrays


DATA_SETS: dict[str, Callable[[Any], list[np.ndarray]]] = {
    "random": random_set,
    "adversarial": adversarial_set,
}


def _check(fn: str, got: Any, refs: dict[str, np.ndarray], dtype: Any, where: str) -> tuple[float, float]:
    """Max ULP error of ``got`` (and, for cancelling float64 logsumexp, the bounded remainder)."""
    got = np.asarray(got)
    assert got.dtype == dtype, (fn, got.dtype)
    dist = ulp_distance(got, refs[fn])
    if fn != "logsumexp" or dtype != np.float64:
        assert dist.max() <= MAX_ULP, f"{fn} {where}: {dist.max()} ULP"
        return float(dist.max()), 0.0
    # logsumexp, float64: ULP of the result, except where it cancels against a negative maximum;
    # there the error is bounded in ULP of the maximum (the problem's condition number).
    m = refs["logsumexp_max"]
    cancels = (m < 0) & (np.abs(refs["logsumexp_exact"]) < np.abs(m))
    assert dist[~cancels].max(initial=0) <= MAX_ULP, f"{fn} {where}: {dist.max()} ULP"
    err_in_max_ulp = np.abs(got - refs["logsumexp_exact"]) / np.spacing(np.abs(m))
    assert err_in_max_ulp[cancels].max(initial=0) <= MAX_ULP, f"{fn} {where} (cancelling)"
    return float(dist[~cancels].max(initial=0)), float(err_in_max_ulp[cancels].max(initial=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_set", ["random", "adversarial"])
def test_within_4_ulp_of_mpmath(data_set, dtype, kernel_path, accuracy_report):
    arrays = DATA_SETS[data_set](dtype)
    references = _reference_rows((data_set, np.dtype(dtype).name, 1.0))
    worst = dict.fromkeys(FUNCTIONS, 0.0)
    cancelling = 0.0
    for x, refs in zip(arrays, references, strict=True):
        for fn in FUNCTIONS:
            err, err_cancel = _check(fn, getattr(sg, fn)(x), refs, dtype, f"{x[0][:4]}...")
            worst[fn] = max(worst[fn], err)
            cancelling = max(cancelling, err_cancel)
    label = f"{data_set} ({kernel_path})"
    for fn, err in worst.items():
        accuracy_report(f"{fn} [ULP]", np.dtype(dtype).name, label, err)
    if dtype == np.float64:
        accuracy_report("logsumexp, cancelling [ULP of max]", "float64", label, cancelling)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_last_axis_and_batches_within_4_ulp(dtype, kernel_path):
    """The same references, with the rows laid along axis 1 of a 3-D array."""
    x = random_set(dtype)[15]  # 6 rows of length 5 at scale 300
    refs = _reference_rows(("random", np.dtype(dtype).name, 1.0))[15]
    x3 = np.stack([x.T, x.T[:, ::-1]], axis=0)  # (2, n, 6): softmax along axis 1
    for fn in FUNCTIONS:
        got = getattr(sg, fn)(x3, axis=1)
        if fn == "logsumexp":
            got0, got1 = got[0], got[1][::-1]
            want = refs[fn]
        else:
            got0, got1 = got[0].T, got[1].T[::-1]
            want = refs[fn]
        assert ulp_distance(got0, want).max() <= MAX_ULP
        assert ulp_distance(got1, want).max() <= MAX_ULP


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.3, 3.0, 7.1])
def test_temperature_within_4_ulp_of_mpmath(dtype, temperature, kernel_path, accuracy_report):
    """softmax(x, temperature=T) is measured against the exact softmax(x / T)."""
    arrays = random_set(dtype)[8:16]
    references = _reference_rows(("random", np.dtype(dtype).name, temperature))[8:16]
    for fn in ("softmax", "log_softmax"):
        worst = 0.0
        for x, refs in zip(arrays, references, strict=True):
            got = getattr(sg, fn)(x, temperature=temperature)
            assert got.dtype == dtype
            worst = max(worst, float(ulp_distance(got, refs[fn]).max()))
        assert worst <= MAX_ULP, (fn, worst)
        accuracy_report(f"{fn} [ULP]", np.dtype(dtype).name, f"temperature ({kernel_path})", worst)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_of_a_million_entries(dtype, kernel_path, accuracy_report):
    """10^6 entries, 241 distinct values in random order: mpmath sums value x multiplicity."""
    rng = np.random.default_rng(7)
    values = np.unique((rng.standard_normal(240) * 8.0).astype(dtype))
    values = np.append(values, dtype(30.5))  # one dominant entry, 1/4 of the mass at most
    counts = rng.multinomial(10**6 - 1, np.full(values.size - 1, 1 / (values.size - 1)))
    counts = np.append(counts, 1)
    row = np.repeat(values, counts)
    order = rng.permutation(row.size)
    row = row[order]
    with mp.workdps(DPS):
        s, logp, lse = mp_family_counts(values.tolist(), counts.tolist())
        s_ref = np.array([round_to_dtype(v, dtype) for v in s])
        logp_ref = np.array([round_to_dtype(v, dtype) for v in logp])
        lse_ref = round_to_dtype(lse, dtype)
    index = np.repeat(np.arange(values.size), counts)[order]  # which value each entry holds
    errors = {
        "softmax": ulp_distance(sg.softmax(row), s_ref[index]).max(),
        "log_softmax": ulp_distance(sg.log_softmax(row), logp_ref[index]).max(),
        "logsumexp": ulp_distance(sg.logsumexp(row), lse_ref).max(),
    }
    for fn, err in errors.items():
        accuracy_report(f"{fn} [ULP]", np.dtype(dtype).name, f"10^6 row ({kernel_path})", err)
    assert max(errors.values()) <= MAX_ULP, errors


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_half_precision_rounds_once_from_float32(dtype, kernel_path, accuracy_report):
    """float16 computes in float32 and rounds once: within 1 ULP of the exact result."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((20, 6)) * 4).astype(dtype)
    x[0] = [60000.0, -60000.0, 0.0, 1.0, 2.0, 3.0]
    x[1] = [0.0, -20.0, -15.0, -10.0, -12.0, 0.0]  # results in the float16 subnormal range
    bound = 1 if dtype == np.float16 else MAX_ULP
    with mp.workdps(DPS):
        refs = [mp_family(row) for row in x]
    for fn, pick in (("softmax", 0), ("log_softmax", 1)):
        want = np.array([[round_to_dtype(v, dtype) for v in r[pick]] for r in refs])
        got = getattr(sg, fn)(x)
        assert got.dtype == dtype
        err = ulp_distance(got, want).max()
        accuracy_report(f"{fn} [ULP]", np.dtype(dtype).name, f"half check ({kernel_path})", err)
        assert err <= bound, (fn, err)
    want = np.array([round_to_dtype(r[2], dtype) for r in refs])
    got = sg.logsumexp(x)
    assert got.dtype == dtype
    assert ulp_distance(got, want).max() <= bound


# --- seed examples and exact results ----------------------------------------------------------


def test_seed_examples(kernel_path):
    np.testing.assert_allclose(
        sg.softmax([1.0, 2.0, 3.0]), [0.09003057, 0.24472847, 0.66524096], rtol=0, atol=5e-9
    )
    for dtype in (np.float32, np.float64):
        got = sg.softmax(np.array([1000.0, 2000.0, 3000.0], dtype=dtype))
        assert got.dtype == dtype
        assert np.array_equal(got, [0.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_log_softmax_exact_where_softmax_underflows(dtype, kernel_path):
    x = np.array([0.0, -1000.0], dtype=dtype)
    got = sg.log_softmax(x)
    assert got.dtype == dtype
    assert np.array_equal(got, [0.0, -1000.0])  # exp(-1000) is below every dtype's ULP of 0
    assert np.array_equal(sg.softmax(x), [1.0, 0.0])


def test_logsumexp_near_zero_is_log1p(kernel_path):
    """logsumexp([0, -30]) = log1p(e^-30) ~ 9.36e-14: relative, not absolute, accuracy."""
    with mp.workdps(DPS):
        want = float(mpmath.log1p(mpmath.exp(-30)))
    got = sg.logsumexp(np.array([0.0, -30.0]))
    assert ulp_distance(got, want) <= 1
    naive = np.log(np.sum(np.exp([0.0, -30.0])))  # what log(1 + tiny) loses
    assert ulp_distance(naive, want) > 100


# --- SciPy, where its results are exact -------------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_agrees_with_scipy(axis, kernel_path):
    """On moderate input SciPy is within a few ULP of the natural scale; agree to that.

    SciPy's log_softmax takes ``log(sum)`` without ``log1p``, so near 0 (the maximal entry of a
    row) it is a few ULP off in relative terms; there the comparison is absolute, at the scale
    of ``log(sum) ~ 1``.
    """
    special = pytest.importorskip("scipy.special")
    eps = np.finfo(np.float64).eps
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 5, 6)) * 3
    for fn in FUNCTIONS:
        ours = getattr(sg, fn)(x, axis=axis)
        theirs = getattr(special, fn)(x, axis=axis)
        assert ours.shape == theirs.shape
        atol = 4 * eps if fn == "log_softmax" else 0.0
        np.testing.assert_allclose(ours, theirs, rtol=8 * eps, atol=atol)
    # masked entries equal SciPy on the array with those entries removed
    mask = np.ones(6, dtype=bool)
    mask[[1, 4]] = False
    np.testing.assert_allclose(
        sg.softmax(x, where=mask)[..., mask], special.softmax(x[..., mask], axis=-1), rtol=1e-15
    )
    np.testing.assert_allclose(
        sg.logsumexp(x, where=mask), special.logsumexp(x[..., mask], axis=-1), rtol=1e-15
    )


def test_agrees_with_scipy_float32(kernel_path):
    special = pytest.importorskip("scipy.special")
    x = np.random.default_rng(12).standard_normal((8, 10)).astype(np.float32)
    for fn in FUNCTIONS:
        ours = getattr(sg, fn)(x)
        theirs = getattr(special, fn)(x.astype(np.float64), axis=-1).astype(np.float32)
        assert ours.dtype == np.float32
        assert ulp_distance(ours, theirs).max() <= 1


# --- regression tests, named for the bug they pin -------------------------------------------


def test_regression_difference_beyond_largest_float_warned_and_gave_nan(kernel_path):
    """x - max overflowed for [1e308, -1e308]: RuntimeWarning, then NaN from the TwoSum term."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = np.array([1e308, -1e308, 0.0])
        assert np.array_equal(sg.softmax(x), [1.0, 0.0, 0.0])
        assert np.array_equal(sg.log_softmax(x), [0.0, -np.inf, -1e308])  # -2e308 rounds to -inf
        assert sg.logsumexp(x) == 1e308
        x32 = np.array([3e38, -3e38], dtype=np.float32)  # the float64 result -6e38 overflowed the cast
        assert np.array_equal(sg.log_softmax(x32), np.array([0.0, -np.inf], dtype=np.float32))


def test_regression_temperature_below_one_overflowed_huge_logits(kernel_path):
    """x / T was taken before the shift: [1e308, 9e307] / 0.5 gave [inf, inf] and softmax 1/2."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(sg.softmax(np.array([1e308, 9e307]), temperature=0.5), [1.0, 0.0])
        got = sg.log_softmax(np.array([1e308, 0.0, -1e308]), temperature=3.0)
        with mp.workdps(DPS):
            want = [round_to_dtype(v, np.float64) for v in mp_family([1e308, 0.0, -1e308], 3.0)[1]]
        assert ulp_distance(got, want).max() <= 1  # the difference -2e308 is finite once divided


def test_regression_temperature_rounded_x_over_t_was_hundreds_of_ulp_off(kernel_path):
    """float64 softmax(x, temperature=0.3) rounded x / T first: 493 ULP here, 1141 at worst seen."""
    x = np.array([-512.25, 201.5, 300.0, 299.875])
    with mp.workdps(DPS):
        s, logp, _ = mp_family(x, 0.3)
        s_ref = [round_to_dtype(v, np.float64) for v in s]
        logp_ref = [round_to_dtype(v, np.float64) for v in logp]
    assert ulp_distance(sg.softmax(x, temperature=0.3), s_ref).max() <= MAX_ULP
    assert ulp_distance(sg.log_softmax(x, temperature=0.3), logp_ref).max() <= MAX_ULP


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_differences_beyond_the_largest_float_after_a_small_temperature(dtype, kernel_path):
    """(x - max) / T below -max rounds to -inf: log_softmax -inf there, never NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = np.array([-1e30, 1.0, 0.0], dtype=dtype)
        for t in (1e-10, 1e-300):
            with mp.workdps(DPS):
                want = [round_to_dtype(v, dtype) for v in mp_family(x, t)[1]]
            logp = sg.log_softmax(x, temperature=t)
            assert logp.dtype == dtype
            assert ulp_distance(logp, want).max() <= MAX_ULP, (t, logp, want)
            assert np.array_equal(sg.softmax(x, temperature=t), [0.0, 1.0, 0.0])
