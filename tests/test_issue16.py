"""Regression tests for issue #16: what broke when softgrad was tried as a new user would.

One test (or a few) per item, named for it. Oracles: mpmath at 50 digits for the tiny-temperature
limits, int64 labels for the small-dtype labels, the solver's own starting point for sgd, and the
files on disk for the command line. The hostile-file items (5, 6) are in test_persist_hostile.py;
the command line's bad paths in test_cli_paths.py; the fuzz of every public function in
test_fuzz_public.py.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

import softgrad as sg
from softgrad.interfaces.cli import main

LONGDOUBLE_IS_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------- 1. longdouble input


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize(
    "call",
    [
        lambda x: sg.softmax(x),
        lambda x: sg.log_softmax(x),
        lambda x: sg.logsumexp(x),
        lambda x: sg.softmax_jacobian(x),
        lambda x: sg.log_softmax_jacobian(x),
        lambda x: sg.softmax_hessian(x),
        lambda x: sg.softmax_vjp(x, x),
        lambda x: sg.log_softmax_jvp(x, x),
        lambda x: sg.cross_entropy(x[None], np.array([0])),
        lambda x: sg.dense_softmax(x[None], np.eye(3, dtype=x.dtype)),
    ],
)
def test_issue16_longdouble_refused_with_typeerror(call):
    """log_softmax([0, -2, -0.5]) as longdouble gave [-0.555, -inf, -inf] and logsumexp([5, 1])
    gave inf: longdouble computed in float32 with an infinite clamp. Now: a TypeError that says
    what to do."""
    x = np.array([0.0, -2.0, -0.5], dtype=np.longdouble)
    with pytest.raises(TypeError, match=r"longdouble.*astype\(np\.float64\)"):
        call(x)


def test_issue16_longdouble_converted_gives_the_float64_result():
    x = np.array([0.0, -2.0, -0.5], dtype=np.longdouble)
    np.testing.assert_allclose(
        sg.log_softmax(x.astype(np.float64)),
        [float(v - mpmath.log(sum(mpmath.exp(w) for w in (0, -2, -0.5)))) for v in (0, -2, -0.5)],
        rtol=1e-15,
    )
    assert float(sg.logsumexp(np.array([5.0, 1.0]))) == pytest.approx(5 + np.log1p(np.exp(-4.0)), rel=1e-15)


# ------------------------------------------------------------------- 2. tiny temperatures

# Temperatures whose inverse is beyond the largest float: x / T of [1, 2, 3] is then one-hot.
TINY = [1e-310, 5e-324, 5e-309]
# Around the point where the kernels hand over to the reference (2**-896), and far below it.
SMALL = [*TINY, 1e-320, 3e-308, 1e-300, 2.0**-896 * 0.75, 2.0**-896, 1e-200]


def _mp_softmax(x, t):
    """softmax(x / t) with mpmath at 50 digits, rounded to float64 (the oracle)."""
    with mpmath.workdps(50):
        z = [mpmath.mpf(float(v)) / mpmath.mpf(t) for v in x]
        m = max(z)
        e = [mpmath.exp(v - m) for v in z]
        total = sum(e)
        return np.array([float(v / total) for v in e])


@pytest.mark.parametrize("t", TINY)
def test_issue16_tiny_temperature_softmax_is_the_limit_on_both_paths(t, kernel_path):
    x = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(sg.softmax(x, temperature=t), [0.0, 0.0, 1.0])
        np.testing.assert_array_equal(sg.log_softmax(x, temperature=t), [-np.inf, -np.inf, 0.0])
        np.testing.assert_array_equal(sg.softmax([3.0, 1.0, 3.0], temperature=t), [0.5, 0.0, 0.5])
        np.testing.assert_array_equal(
            sg.softmax(x.astype(np.float32), temperature=t), np.array([0, 0, 1], np.float32)
        )


@pytest.mark.parametrize("t", SMALL)
@pytest.mark.parametrize("spread", [[0.0, 0.5, 1.5, 3.0], [-700.0, -3.3, 1.25, 0.0]])
def test_issue16_tiny_temperature_matches_mpmath_where_x_over_t_is_moderate(t, spread, kernel_path):
    """Differences of the order of ``t`` itself: ``x / t`` is moderate, the result is not one-hot,
    and it is as accurate as at ``T = 1`` (a few ULP: the division's remainder is kept even
    where Dekker's products would underflow)."""
    x = np.array(spread) * t
    expected = _mp_softmax(x, t)
    got = sg.softmax(x, temperature=t)
    np.testing.assert_allclose(got, expected, rtol=4 * 2.0**-52, atol=0)
    z = np.array([float(v) for v in (mpmath.mpf(float(a)) / mpmath.mpf(t) for a in x)])
    np.testing.assert_allclose(sg.log_softmax(x, temperature=t), np.log(expected), rtol=1e-15, atol=1e-15)
    assert np.all(np.isfinite(z))


@pytest.mark.parametrize("t", TINY)
def test_issue16_tiny_temperature_jacobian_limit(t, kernel_path):
    """J = S (I - S) / T: 0 for a one-hot S (the limit), +-inf (beyond every float) for tied maxima;
    no NaN and no overflow warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(sg.softmax_jacobian(np.array([1.0, 2.0, 3.0]), temperature=t), 0.0)
        np.testing.assert_array_equal(sg.softmax_jacobian([1.0, 2.0, 3.0], temperature=t), 0.0)
        np.testing.assert_array_equal(sg.softmax_hessian(np.array([1.0, 2.0, 3.0]), temperature=t), 0.0)
        tied = sg.softmax_jacobian(np.array([1.0, 3.0, 3.0]), temperature=t)
        q = float(mpmath.mpf(0.25) / t)  # S_i (1 - S_i) / T for S = [0, 1/2, 1/2]: inf when beyond
        np.testing.assert_array_equal(tied, [[0, 0, 0], [0, q, -q], [0, -q, q]])
        s = sg.softmax(np.array([1.0, 2.0, 3.0]), temperature=t)
        g = np.array([0.3, -1.0, 2.0])
        np.testing.assert_array_equal(sg.softmax_vjp(s, g, temperature=t), 0.0)
        # d log S_i / dx_j = (delta_ij - S_j) / T: 1/T beyond every float on the diagonal
        lj = sg.log_softmax_jacobian(np.array([1.0, 2.0, 3.0]), temperature=t)
        r = float(1 / mpmath.mpf(t))
        np.testing.assert_array_equal(lj, [[r, 0, -r], [0, r, -r], [0, 0, 0]])


def test_issue16_tiny_temperature_on_the_command_line(capsys):
    rc, out, err = run(capsys, "softmax", "1", "2", "3", "--temperature", "5e-324", "--json")
    assert rc == 0, err
    assert "Traceback" not in err
    assert "nan" not in out.lower()


# ------------------------------------------------------------------- 3. small integer labels

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_issue16_small_int_labels_out_of_range_is_valueerror(dtype):
    logits = np.random.default_rng(0).normal(size=(4, 3))
    label = 100 if dtype == "int8" else 200
    with pytest.raises(ValueError, match=rf"class index {label}, outside \[0, 3\)"):
        sg.cross_entropy(logits, np.array([0, 1, label, 2], dtype=dtype))
    with pytest.raises(ValueError, match=r"class index -?\d+, outside"):
        sg.cross_entropy(logits, np.array([0, 1, -1, 2]).astype(dtype))


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_issue16_small_int_labels_in_range_equal_int64(dtype):
    logits = np.random.default_rng(1).normal(size=(5, 3))
    y = np.array([0, 1, 2, 1, 0])
    for fn in (sg.cross_entropy, sg.cross_entropy_grad):
        np.testing.assert_array_equal(fn(logits, y.astype(dtype)), fn(logits, y))


def test_issue16_uint8_labels_with_an_ignore_index_they_hold():
    logits = np.random.default_rng(2).normal(size=(3, 3))
    got = sg.cross_entropy(logits, np.array([0, 255, 2], dtype=np.uint8), ignore_index=255)
    assert got == pytest.approx(float(sg.cross_entropy(logits[[0, 2]], np.array([0, 2]))), rel=1e-15)


# ------------------------------------------------------------------- 7. sgd without progress


def _iris_standardized():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_issue16_sgd_no_progress_warns_and_is_not_converged():
    X, y = _iris_standardized()
    model = sg.SoftmaxRegression(solver="sgd", learning_rate=1000, random_state=0)
    with pytest.warns(ConvergenceWarning, match="made no progress"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.coef_, 0.0)  # the starting point, now reported as such


def test_issue16_sgd_no_progress_solver_result_is_not_converged():
    from softgrad.models import _solvers
    from softgrad.models._objective import ArrayObjective

    X, y = _iris_standardized()
    obj = ArrayObjective(X, y.astype(np.intp), None, 3, C=1.0, fit_intercept=True)
    w0 = np.zeros(obj.n_params)
    result = _solvers.sgd(
        obj, w0, tol=1e-4, max_iter=50, batch_size=32, learning_rate=1000.0, rng=np.random.default_rng(0)
    )
    assert not result.converged and "no epoch improved" in result.message


def test_issue16_sgd_with_progress_does_not_warn():
    X, y = _iris_standardized()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = sg.SoftmaxRegression(solver="sgd", random_state=0, max_iter=50).fit(X, y)
    assert np.abs(model.coef_).max() > 0.1


# ------------------------------------------------------------------- 8. a feature of 1e200


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "sgd"])
@pytest.mark.parametrize("sparse", [False, True])
def test_issue16_huge_feature_is_a_valueerror(solver, sparse):
    X, y = _iris_standardized()
    X[0, 0] = 1e200
    if sparse:
        import scipy.sparse

        X = scipy.sparse.csr_matrix(X)
    with pytest.raises(ValueError, match=r"too large.*1e\+200.*scale"):
        sg.SoftmaxRegression(solver=solver).fit(X, y)


def test_issue16_huge_feature_on_the_command_line_saves_nothing(tmp_path, capsys):
    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=list("abcd"))
    df.loc[0, "a"] = 1e200
    df["label"] = y
    data = tmp_path / "big.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "m.npz"
    rc, _, err = run(capsys, "train", data, "--target", "label", "--out", out, "--quiet", "--test-size", "0")
    assert rc == 2 and err.startswith("softgrad: error:") and "scale" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "m.npz").exists()


def test_issue16_nonfinite_fit_result_is_never_a_model():
    from softgrad.models import _solvers
    from softgrad.models.regression import _check_finite_result

    with pytest.raises(ValueError, match="non-finite objective"):
        _check_finite_result(_solvers.SolverResult(np.zeros(3), 1, True, "", [np.nan]))
    with pytest.raises(ValueError, match="non-finite objective"):
        _check_finite_result(_solvers.SolverResult(np.array([np.inf]), 1, True, "", [1.0]))


# ------------------------------------------------------------------- 9. a duplicated header


def test_issue16_duplicated_header_is_refused(tmp_path, capsys):
    data = tmp_path / "dup.csv"
    data.write_text("a,b,label,label\n1,2,0,0\n3,4,1,1\n5,6,0,0\n7,8,1,1\n")
    rc, _, err = run(capsys, "train", data, "--target", "label", "--out", tmp_path / "m.npz", "--quiet")
    assert rc == 2 and "more than once" in err and "label" in err
    assert not (tmp_path / "m.npz").exists()


def test_issue16_a_column_really_named_label_1_is_fine(tmp_path, capsys):
    data = tmp_path / "ok.csv"
    rows = "\n".join(f"{i},{i % 2 + 0.5 * (i % 3)},{i % 2}" for i in range(12))
    data.write_text("label.1,b,label\n" + rows + "\n")
    rc, _, err = run(
        capsys, "train", data, "--target", "label", "--out", tmp_path / "m.npz", "--quiet", "--test-size", "0"
    )
    assert rc == 0, err


# ------------------------------------------------------------------- 10. usage errors


@pytest.mark.parametrize("seed", ["-1", str(2**32), "x"])
def test_issue16_bad_seed_names_seed(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "iris", "--out", str(tmp_path / "m.npz"), "--seed", seed])
    _, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]
    assert exc.value.code == 2
    assert "--seed" in last and "--test-size" not in last


def test_issue16_largest_seed_is_accepted(tmp_path, capsys):
    rc, _, err = run(
        capsys, "train", "--dataset", "iris", "--out", tmp_path / "m.npz", "--quiet", "--seed", 2**32 - 1
    )
    assert rc == 0, err


# ------------------------------------------------------------------- found by the fuzz


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16"])
def test_issue16_fuzz_small_int_labels_with_more_classes_than_the_dtype_holds(dtype, kernel_path):
    """The reference path built its one-hot with ``arange(C, dtype=target.dtype)``, which wraps:
    label 127 of 1000 classes hit classes 127, 383, 639 and 895 (a loss of 4 log 1000)."""
    n = 70_000 if dtype == "int16" else 1000
    logits = np.zeros((2, n))
    target = np.array([127, 3], dtype=dtype)
    for smoothing in (0.0, 0.1):
        got = sg.cross_entropy(logits, target, label_smoothing=smoothing)
        assert got == pytest.approx(np.log(n), rel=1e-14)
        grad = sg.cross_entropy_grad(logits, target, label_smoothing=smoothing)
        np.testing.assert_allclose(
            grad,
            sg.cross_entropy_grad(logits, target.astype(np.int64), label_smoothing=smoothing),
            rtol=1e-14,
        )


def test_issue16_fuzz_zero_classes_all_rows_ignored_with_smoothing():
    """``eps / C`` with C = 0 raised ZeroDivisionError; now the empty mean of PyTorch (NaN)."""
    got = sg.cross_entropy(
        np.zeros((2, 0)), np.array([0, 0], dtype=np.int8), ignore_index=0, label_smoothing=0.1
    )
    assert np.isnan(got)
    assert sg.cross_entropy(np.zeros((2, 0)), np.array([0, 0]), ignore_index=0, reduction="sum") == 0.0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_issue16_fuzz_linear_cross_entropy_empty_batch(reduction):
    """No rows: 'need at least one array to concatenate'; now what cross_entropy returns."""
    W = np.ones((2, 3))
    loss, (dx, dW, db) = sg.linear_cross_entropy(
        np.zeros((0, 3)), W, np.zeros(0, dtype=np.int64), reduction=reduction, return_grad=True
    )
    expected = sg.cross_entropy(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), reduction=reduction)
    np.testing.assert_array_equal(loss, expected)
    assert dx.shape == (0, 3) and np.all(dW == 0) and np.all(db == 0)


@pytest.mark.parametrize("x", [[np.inf, 0.0], [np.nan, 1.0], [1.7976931348623157e308, 0.0]])
def test_issue16_fuzz_numerical_jacobian_needs_a_finite_point(x):
    """Central differences at inf (or where x + h overflows) gave NaN with an 'invalid value'
    RuntimeWarning; now a ValueError naming x."""
    with pytest.raises(ValueError, match="x must be finite"):
        sg.numerical_jacobian(sg.softmax, np.array(x))


def test_issue16_fuzz_numerical_jacobian_step_below_resolution():
    """eps=1e-4 at x = 3.77 in float16 rounds the step to 0: 0/0 with a RuntimeWarning before."""
    with pytest.raises(ValueError, match="step of 0"):
        sg.numerical_jacobian(sg.softmax, np.array([3.771], dtype=np.float16), eps=1e-4)
