"""SoftmaxRegression on Dask input under Dask's default local scheduler (issue #6).

Oracles: the in-memory fit of the same model (the issue's "same answer": objective within 1e-8
relative, coefficients within 1e-6 relative, float64, whatever the chunking), scikit-learn's
``LogisticRegression`` and ``log_loss`` (independent), and a scheduler that raises to prove
laziness. The distributed scheduler, the killed worker and the driver's memory are in
``test_dask_distributed.py``.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from sklearn.datasets import load_wine  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402

from softgrad import SoftmaxRegression  # noqa: E402
from softgrad.models import _dask  # noqa: E402

OBJ_RTOL = 1e-8
COEF_RTOL = 1e-6


def _never_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("a Dask graph was computed where the result should stay lazy")


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_wine(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n, N, T = 700, 6, 4
    X = rng.standard_normal((n, N))
    W = rng.standard_normal((T, N))
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, T)), axis=1)
    sw = rng.uniform(0.2, 3.0, n)
    return X, y, sw


def _fit(model: SoftmaxRegression, *args: object, **kwargs: object) -> SoftmaxRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol below what float64 reaches
        return model.fit(*args, **kwargs)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _objective(
    model: SoftmaxRegression, X: np.ndarray, y: np.ndarray, C: float, sw: np.ndarray | None = None
) -> float:
    """``C sum_i s_i CE_i + 0.5 ||W||^2`` from scikit-learn's log_loss: independent of softgrad."""
    n = X.shape[0] if sw is None else float(np.sum(sw))
    ce = log_loss(y, model.predict_proba(X), sample_weight=sw, labels=model.classes_) * n
    return C * ce + 0.5 * float(np.sum(model.coef_.astype(np.float64) ** 2))


# ------------------------------------------------------------------ same answer as in memory


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg"])
@pytest.mark.parametrize(
    "chunks",
    [(178, 13), (50, 13), ((60, 1, 40, 77), 13), (17, 5)],
    ids=["one-block", "even", "uneven", "rows-and-columns"],
)
def test_fit_matches_in_memory(wine: tuple[np.ndarray, np.ndarray], solver: str, chunks: tuple) -> None:
    X, y = wine
    ref = _fit(SoftmaxRegression(C=0.5, solver=solver, tol=1e-10), X, y)
    Xd = da.from_array(X, chunks=chunks)
    yd = da.from_array(y, chunks=(Xd.chunks[0],))
    model = _fit(SoftmaxRegression(C=0.5, solver=solver, tol=1e-10), Xd, yd)

    assert type(model) is SoftmaxRegression and isinstance(model.coef_, np.ndarray)
    assert _rel(model.coef_, ref.coef_) < COEF_RTOL
    assert _rel(model.intercept_, ref.intercept_) < COEF_RTOL
    f_dask, f_ref = _objective(model, X, y, 0.5), _objective(ref, X, y, 0.5)
    assert abs(f_dask - f_ref) <= OBJ_RTOL * f_ref
    assert abs(model.loss_curve_[-1] - f_dask) <= 1e-10 * f_dask  # the objective it reports
    np.testing.assert_array_equal(model.classes_, ref.classes_)
    assert model.n_features_in_ == 13


def test_fit_matches_scikit_learn(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, y, _ = synthetic
    sk = LogisticRegression(C=2.0, tol=1e-12, max_iter=10_000).fit(X, y)
    Xd = da.from_array(X, chunks=(128, 6))
    model = _fit(SoftmaxRegression(C=2.0, tol=1e-10), Xd, da.from_array(y, chunks=128))
    sk_b = sk.intercept_ - sk.intercept_.mean()
    assert _rel(model.coef_, sk.coef_) < 1e-4
    assert _rel(model.intercept_, sk_b) < 1e-4


@pytest.mark.parametrize("class_weight", [None, "balanced", {0: 2.0, 1: 0.5, 2: 1.0, 3: 3.0}])
def test_sample_and_class_weights(
    synthetic: tuple[np.ndarray, np.ndarray, np.ndarray], class_weight: object
) -> None:
    X, y, sw = synthetic
    kw = {"C": 1.0, "tol": 1e-8, "class_weight": class_weight}
    ref = _fit(SoftmaxRegression(**kw), X, y, sample_weight=sw)
    Xd = da.from_array(X, chunks=(100, 6))
    model = _fit(
        SoftmaxRegression(**kw), Xd, da.from_array(y, chunks=100), sample_weight=da.from_array(sw, chunks=100)
    )
    assert _rel(model.coef_, ref.coef_) < COEF_RTOL
    assert _rel(model.intercept_, ref.intercept_) < COEF_RTOL
    assert abs(model.loss_curve_[-1] - ref.loss_curve_[-1]) <= OBJ_RTOL * ref.loss_curve_[-1]
    # NumPy sample weights with Dask X are accepted too
    model2 = _fit(SoftmaxRegression(**kw), Xd, da.from_array(y, chunks=100), sample_weight=sw)
    np.testing.assert_array_equal(model2.coef_, model.coef_)


def test_no_intercept_and_no_penalty(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, y, _ = synthetic
    for kw in ({"fit_intercept": False, "C": 1.0}, {"C": np.inf}):
        ref = _fit(SoftmaxRegression(tol=1e-8, **kw), X, y)
        model = _fit(
            SoftmaxRegression(tol=1e-8, **kw), da.from_array(X, chunks=(90, 6)), da.from_array(y, chunks=90)
        )
        assert _rel(model.coef_, ref.coef_) < COEF_RTOL, kw
        assert abs(model.loss_curve_[-1] - ref.loss_curve_[-1]) <= OBJ_RTOL * ref.loss_curve_[-1]


def test_float32_trains_in_float32(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, y, _ = synthetic
    X32 = X.astype(np.float32)
    ref64 = _fit(SoftmaxRegression(tol=1e-10), X32.astype(np.float64), y)
    # tol above float32's noise floor, so both fits stop on the gradient test
    ref32 = _fit(SoftmaxRegression(tol=1e-4, max_iter=100), X32, y)
    model = _fit(
        SoftmaxRegression(tol=1e-4, max_iter=100),
        da.from_array(X32, chunks=(100, 6)),
        da.from_array(y, chunks=100),
    )
    assert model.coef_.dtype == np.float32 and model.intercept_.dtype == np.float32
    # float32 products round differently in blocks: as close to the float64 optimum as in memory
    err, err_ref = _rel(model.coef_, ref64.coef_), _rel(ref32.coef_, ref64.coef_)
    assert err < max(2 * err_ref, 1e-4), (err, err_ref)
    f64 = _objective(ref64, X, y, 1.0)
    assert _objective(model, X, y, 1.0) <= f64 * (1 + 1e-6)


def test_dataframe_with_string_labels(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, y, _ = synthetic
    names = np.array(["cat", "dog", "emu", "gnu"])
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    frame["label"] = names[y]
    ref = _fit(SoftmaxRegression(tol=1e-8), frame.drop(columns="label"), frame["label"])
    ddf = dd.from_pandas(frame, npartitions=5)
    model = _fit(SoftmaxRegression(tol=1e-8), ddf.drop(columns="label"), ddf["label"])
    np.testing.assert_array_equal(model.classes_, names)
    np.testing.assert_array_equal(model.feature_names_in_, ref.feature_names_in_)
    assert _rel(model.coef_, ref.coef_) < COEF_RTOL
    # lazy predictions on the DataFrame, columns checked against the fitted names
    proba = model.predict_proba(ddf.drop(columns="label"))
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(
        proba.compute(), ref.predict_proba(frame.drop(columns="label")), rtol=1e-6, atol=1e-12
    )
    assert model.score(ddf.drop(columns="label"), ddf["label"]) == pytest.approx(
        ref.score(frame.drop(columns="label"), frame["label"])
    )
    with pytest.raises(ValueError, match="columns"):
        model.predict(ddf.drop(columns="label").rename(columns={"f0": "zz"}))


# -------------------------------------------------------------------------- lazy predictions


@pytest.mark.parametrize("dataset", ["wine", "binary"])
def test_predictions_are_lazy_and_equal(wine: tuple[np.ndarray, np.ndarray], dataset: str) -> None:
    X, y = wine
    if dataset == "binary":
        y = np.where(y == 0, "first", "other")  # decision_function is 1-D for two classes
    model = _fit(SoftmaxRegression(C=1.0), X, y)
    Xd = da.from_array(X, chunks=(40, 13))
    with dask.config.set(scheduler=_never_compute):  # building them computes nothing
        lazy = {m: getattr(model, m)(Xd) for m in _dask._METHODS}
    for method, out in lazy.items():
        assert isinstance(out, da.Array), method
        expected = getattr(model, method)(X)
        assert out.shape == expected.shape and out.dtype == expected.dtype, method
        got = out.compute()
        if method == "predict":
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
    yd = da.from_array(y, chunks=40)
    assert model.score(Xd, yd) == pytest.approx(model.score(X, y))
    sw = np.linspace(0.1, 2.0, X.shape[0])
    assert model.score(Xd, yd, sample_weight=sw) == pytest.approx(model.score(X, y, sample_weight=sw))


def test_prediction_errors(wine: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = wine
    model = _fit(SoftmaxRegression(), X, y)
    with pytest.raises(ValueError, match="12 features"):
        model.predict(da.from_array(X[:, :12], chunks=(40, 12)))
    with pytest.raises(Exception, match="not fitted"):
        SoftmaxRegression().predict(da.from_array(X, chunks=(40, 13)))


def test_fitted_model_is_ordinary(wine: tuple[np.ndarray, np.ndarray], tmp_path: object) -> None:
    X, y = wine
    model = _fit(SoftmaxRegression(), da.from_array(X, chunks=(40, 13)), da.from_array(y, chunks=40))
    path = f"{tmp_path}/model.sg"
    model.save(path)
    loaded = SoftmaxRegression.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# ---------------------------------------------------------------- how the data are evaluated


def test_blocks_generated_once_per_fit(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Persisted once: every evaluation reads the persisted blocks, never the source again."""
    X, y, _ = synthetic
    calls: list[int] = []
    lock = threading.Lock()

    def source(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        with lock:
            calls.append(block_info[0]["chunk-location"][0] if block_info else -1)
        return block * 1.0

    Xd = da.from_array(X, chunks=(100, 6)).map_blocks(source, dtype=X.dtype)
    model = _fit(SoftmaxRegression(solver="newton-cg", tol=1e-8), Xd, da.from_array(y, chunks=100))
    assert model.n_iter_ >= 3  # several passes over the data...
    assert sorted(c for c in calls if c >= 0) == list(range(7))  # ...but each block made once


def test_evaluation_graph(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """One evaluation: the coefficients are ONE key; X enters only through its persisted keys."""
    X, y, sw = synthetic
    Xd = da.from_array(X, chunks=(100, 6)).map_blocks(np.negative, dtype=X.dtype)  # some source
    data = _dask.prepare_data(Xd, da.from_array(y, chunks=100), sw)
    obj = _dask.DaskObjective(data, C=1.0, fit_intercept=True, row_weight_sum=float(sw.sum()))
    W = np.arange(24.0).reshape(4, 6) / 100
    b = np.ones(4)
    graph = dict(obj.map_reduce.graph(_dask._block_value_and_grad, W, b).__dask_graph__())
    persisted = set()
    for a in (data.X, data.y, data.sample_weight):
        persisted |= set(dict(a.__dask_graph__()))
    own = {k for k in graph if isinstance(k, str) and k.startswith("softgrad-")}
    assert set(graph) - own <= persisted  # no task re-reads or re-derives X:
    for k in set(graph) - own:  # the blocks are there as data (persisted), not as tasks
        assert isinstance(graph[k], np.ndarray), (k, type(graph[k]))
    coef = [k for k in own if k.startswith("softgrad-coef-")]
    assert len(coef) == 1
    blocks = [k for k in own if k.startswith("softgrad-partial-")]
    assert len(blocks) == 7
    for k in own - set(coef):  # the coefficients are embedded in the coef task only
        assert not any(isinstance(a, np.ndarray) for a in _task_args(graph[k])), k
    for k in blocks:
        assert coef[0] in _task_args(graph[k])
    # and the value is the in-memory data term
    from softgrad.models._objective import data_value_and_grad

    d, gW, gb = data_value_and_grad(-X, y, sw, W, b)
    (total,) = dask.compute(obj.map_reduce.graph(_dask._block_value_and_grad, W, b))
    np.testing.assert_allclose(total[0], d, rtol=1e-13)
    np.testing.assert_allclose(total[1], gW, rtol=1e-12)
    np.testing.assert_allclose(total[2], gb, rtol=1e-12, atol=1e-12)


def _task_args(task: object) -> list[object]:
    """The arguments of a task: a legacy tuple ``(func, *args)`` or a ``Task`` object."""
    if isinstance(task, tuple):
        return list(task[1:])
    return [getattr(a, "key", getattr(a, "value", a)) for a in getattr(task, "args", ())]


def test_sgd_streams_over_blocks(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, y, _ = synthetic
    best = _fit(SoftmaxRegression(C=1.0, tol=1e-10), X, y).loss_curve_[-1]
    kw = {"C": 1.0, "solver": "sgd", "max_iter": 30, "batch_size": 32, "random_state": 0}
    Xd, yd = da.from_array(X, chunks=(100, 6)), da.from_array(y, chunks=100)
    model = _fit(SoftmaxRegression(**kw), Xd, yd)
    again = _fit(SoftmaxRegression(**kw), Xd, yd)
    np.testing.assert_array_equal(model.coef_, again.coef_)  # reproducible with random_state
    assert model.loss_curve_[-1] <= best * 1.02  # near the optimum, as SGD gets
    assert model.loss_curve_[-1] >= best * (1 - 1e-9)  # and not below it
    assert model.loss_curve_[-1] == pytest.approx(_objective(model, X, y, 1.0), rel=1e-10)


# ------------------------------------------------------------------------------- bad input


def test_bad_input(synthetic: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, y, sw = synthetic
    Xd, yd = da.from_array(X, chunks=(100, 6)), da.from_array(y, chunks=100)
    with pytest.raises(ValueError, match="2-D"):
        SoftmaxRegression().fit(Xd[:, 0], yd)
    with pytest.raises(ValueError, match="y has 699 entries"):
        SoftmaxRegression().fit(Xd, yd[:-1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        SoftmaxRegression().fit(da.where(Xd > 2.5, np.nan, Xd), yd)
    with pytest.raises(ValueError, match="only one class"):
        SoftmaxRegression().fit(Xd, da.zeros_like(yd))
    with pytest.raises(ValueError, match="sample_weight"):
        SoftmaxRegression().fit(Xd, yd, sample_weight=-sw)
    with pytest.raises(ValueError, match=r"[Uu]nknown label type"):
        SoftmaxRegression().fit(Xd, yd + 0.5)
