"""SoftmaxRegression on Dask: fit on row-chunked Dask arrays and DataFrames, predict lazily.

The objective ``C * sum_i s_i CE_i + 0.5 * ||W||^2`` is a sum over rows, so each evaluation of
the objective and its gradient, or of a Hessian-vector product, is ONE map-reduce over the row
blocks:

* the blocks (X, the encoded labels, the sample weights) are persisted on the workers once, from
  a graph that the scheduler can recompute, so a block lost with a worker is rebuilt and the fit
  goes on with the same numbers;
* the coefficients enter each evaluation's graph as one key that every block task references,
  so they travel to a worker once per evaluation, not once per block;
* each block computes its partial with the in-memory data term of the model (the library's own
  cross-entropy value, gradient and Hessian-vector product);
* the partials are summed in float64 in a fixed tree (blocks in order, fan-in 8), so the result
  does not depend on which worker finished first and a fit is reproducible bit for bit.

The driver holds the coefficients and the summed partials only, never a block of X.
Dask is imported lazily: importing :mod:`softgrad.models` does not import it.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._dasktools import FAN_IN, is_dask_collection, reduce_tree, sum_in_order
from ._labels import check_two_classes
from ._objective import (
    _KRONECKER_MAX_FEATURES,
    KroneckerFactors,
    SoftmaxObjective,
    block_logits,
    data_curvature_average,
    data_curvature_moments,
    data_feature_sums,
    data_hvp,
    data_value_and_grad,
    moments_from_sums,
)

__all__: list[str] = []  # private module: SoftmaxRegression dispatches here on Dask input



# ---------------------------------------------------------------------------------------------
# Input: Dask arrays and DataFrames chunked by rows
# ---------------------------------------------------------------------------------------------


def _dataframe_kind(x: Any) -> str | None:
    """ "frame" for a Dask DataFrame, "series" for a Dask Series, else None."""
    if not is_dask_collection(x) or not hasattr(x, "map_partitions"):
        return None
    import dask.dataframe as dd

    if isinstance(x, dd.DataFrame):
        return "frame"
    return "series" if isinstance(x, dd.Series) else None


def _is_dataframe(x: Any) -> bool:
    return _dataframe_kind(x) == "frame"


def _is_series(x: Any) -> bool:
    return _dataframe_kind(x) == "series"


def as_row_array(X: Any, name: str = "X", *, lengths: bool = True) -> tuple[Any, list[Any] | None]:
    """``X`` as a 2-D Dask array with one chunk along the features, and its column names.

    A Dask DataFrame becomes an array of its values (every column must be numeric); with
    ``lengths`` the row counts of its partitions are computed (cheap once it is persisted).
    """
    import dask.array as da

    names = None
    if _is_dataframe(X):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        bad = [str(c) for c, t in X.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t))]
        if bad:
            raise TypeError(f"{name} must have numeric columns only, got non-numeric columns {bad}")
        names = list(X.columns)
        with warnings.catch_warnings():  # string columns become object arrays: expected here
            warnings.filterwarnings("ignore", "Dask currently has limited support", UserWarning)
            X = X.to_dask_array(lengths=True if lengths else None)
    elif not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a Dask array or DataFrame, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    elif X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32 if X.dtype == np.float16 else np.float64)
    if len(X.chunks[1]) > 1:  # blocks must hold whole rows
        X = X.rechunk({1: -1})
    return X, names


def as_row_vector(v: Any, rows: tuple[int, ...], name: str) -> Any:
    """``v`` (Dask or NumPy, 1-D) as a Dask array chunked like the rows of X."""
    import dask.array as da

    if _is_dataframe(v):
        if len(v.columns) != 1:
            raise ValueError(f"{name} must be 1-D, got a DataFrame with {len(v.columns)} columns")
        v = v[v.columns[0]]
    if _is_series(v):
        with warnings.catch_warnings():  # string labels become an object array: expected here
            warnings.filterwarnings("ignore", "Dask currently has limited support", UserWarning)
            v = v.to_dask_array(lengths=True)
    elif not isinstance(v, da.Array):
        v = np.asarray(v)
        if v.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
        v = da.from_array(v, chunks=(rows,))
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
    if v.shape[0] != sum(rows):
        raise ValueError(f"{name} has {v.shape[0]} entries but X has {sum(rows)} rows")
    if v.chunks[0] != rows:
        v = v.rechunk((rows,))
    return v


@dataclass
class DaskData:
    """Row blocks persisted on the workers, and what one pass over them found."""

    X: Any  # Dask array (n, N), persisted
    y: Any  # Dask array (n,) of class indices (intp), persisted
    sample_weight: Any  # Dask array (n,) or None, persisted
    classes: np.ndarray
    feature_names: list[Any] | None  # the DataFrame's columns
    class_counts: np.ndarray  # rows per class (unweighted)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def block_keys(self) -> list[tuple[Any, Any, Any]]:
        """The graph keys ``(X_b, y_b, sw_b)`` of each row block (``sw_b`` None without weights)."""
        xs = [row[0] for row in self.X.__dask_keys__()]  # one chunk along the features
        ys = list(self.y.__dask_keys__())
        ss = [None] * len(xs) if self.sample_weight is None else list(self.sample_weight.__dask_keys__())
        return list(zip(xs, ys, ss, strict=True))

    def delayed(self, layer: dict[Any, Any], key: Any) -> Any:
        """A Delayed computing ``key`` of ``layer``, a graph of tasks over the blocks' keys."""
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        deps = [a for a in (self.X, self.y, self.sample_weight) if a is not None]
        name = key if isinstance(key, str) else key[0]
        return Delayed(key, HighLevelGraph.from_collections(name, layer, dependencies=deps))


def _encode_block(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, y).astype(np.intp)


def prepare_data(X: Any, y: Any, sample_weight: Any = None) -> DaskData:
    """Validate, persist and encode the training data in as few passes as the checks allow.

    The sources are read once (``persist``); then one pass over the persisted blocks finds the
    classes and their counts (``da.unique``) and checks that X and the weights are finite; the
    encoded labels are persisted beside X. Nothing but those small results reaches the driver.
    """
    import dask
    import dask.array as da

    if y is None:
        raise ValueError("y is required: SoftmaxRegression is a supervised model")
    if _is_dataframe(X):
        # read the source once: X and y often come from one DataFrame and share its partitions
        if is_dask_collection(y):
            X, y = dask.persist(X, y)
        else:
            (X,) = dask.persist(X)
    X, names = as_row_array(X, "X")
    rows = X.chunks[0]
    y = as_row_vector(y, rows, "y")
    row_weight = None
    if sample_weight is not None:
        row_weight = as_row_vector(sample_weight, rows, "sample_weight")
        if row_weight.dtype.kind not in "fiub":
            raise TypeError(f"sample_weight must hold real numbers, got dtype {row_weight.dtype}")
        row_weight = row_weight.astype(np.float64)
    X, y, row_weight = dask.persist(X, y, row_weight)
    if X.shape[0] == 0:
        raise ValueError("X has 0 rows: at least one sample is required")
    checks = [da.unique(y, return_counts=True), da.isfinite(X).all()]
    if row_weight is not None:
        checks.append((da.isfinite(row_weight) & (row_weight >= 0)).all())
    (classes, counts), x_ok, *sw_ok = dask.compute(*checks)
    if not bool(x_ok):
        raise ValueError("X contains NaN or infinity")
    if sw_ok and not bool(sw_ok[0]):
        raise ValueError("sample_weight must be finite and >= 0")
    classes = np.asarray(classes)
    y_enc = y.map_blocks(_encode_block, dask.delayed(classes), meta=np.empty((0,), dtype=np.intp))
    (y_enc,) = dask.persist(y_enc)
    return DaskData(X, y_enc, row_weight, classes, names, np.asarray(counts))


# ---------------------------------------------------------------------------------------------
# Map-reduce over the blocks
# ---------------------------------------------------------------------------------------------


def _as_partial(result: Any) -> tuple[np.ndarray, ...]:
    """A block's result as a tuple of float64 arrays (scalars become 0-d arrays)."""
    if not isinstance(result, tuple):
        result = (result,)
    return tuple(np.asarray(r, dtype=np.float64) for r in result)


def _aligned(a: Any) -> Any:
    """``a`` itself, or a C-contiguous aligned copy when it is not.

    A block that travelled between workers can arrive in a buffer that is not aligned to its
    item size; NumPy then leaves BLAS and SIMD loops for slower ones that round differently, and
    a block's partial would depend on the worker that computed it. With this copy it does not:
    the fit stays reproducible bit for bit when a block is moved or made again elsewhere.
    """
    if a is None or (a.flags.aligned and a.flags.c_contiguous):
        return a
    return np.require(a, requirements=["C", "A"])


def _run_block(func: Callable[..., Any], X: Any, y: Any, row_weight: Any, shared: tuple[Any, ...]) -> Any:
    return _as_partial(func(_aligned(X), _aligned(y), _aligned(row_weight), *shared))


class BlockMapReduce:
    """Evaluate ``sum_b func(X_b, y_b, sw_b, *vectors)`` over persisted blocks, one graph a call.

    ``vectors`` (the coefficients, a direction) become ONE key of the graph, referenced by every
    block task; the partials (tuples of arrays) are summed in a fixed tree in float64.
    """

    def __init__(self, data: DaskData, fan_in: int = FAN_IN) -> None:
        self.data = data
        self._blocks = data.block_keys()
        self._fan_in = fan_in
        self.n_calls = 0

    def graph(self, func: Callable[..., Any], *vectors: Any) -> Any:
        """The Delayed whose value is the summed partials (one evaluation's graph).

        Tasks: ``softgrad-coef-*`` (the vectors, the only task that holds them),
        ``softgrad-partial-*-i`` (block ``i``'s partial), ``softgrad-sum-*`` (the tree).
        """
        token = uuid.uuid4().hex
        coef = f"softgrad-coef-{token}"
        layer: dict[Any, Any] = {coef: (_shared, *vectors)}
        parts = []
        for i, (xk, yk, sk) in enumerate(self._blocks):
            key = f"softgrad-partial-{token}-{i}"
            layer[key] = (_run_block, func, xk, yk, sk, coef)
            parts.append(key)

        def merge(group: list[str], level: int, i: int) -> str:
            key = f"softgrad-sum-{token}-{level}-{i}"
            layer[key] = (sum_in_order, *group)
            return key

        return self.data.delayed(layer, reduce_tree(parts, merge, self._fan_in))

    def __call__(self, func: Callable[..., Any], *vectors: Any) -> tuple[np.ndarray, ...]:
        import dask

        self.n_calls += 1
        (total,) = dask.compute(self.graph(func, *vectors))
        return tuple(total)


def _shared(*vectors: Any) -> tuple[Any, ...]:
    return vectors


# ---------------------------------------------------------------------------------------------
# The objective: SoftmaxObjective whose data term is a map-reduce over the blocks
# ---------------------------------------------------------------------------------------------


def _block_value_and_grad(
    X: Any, y: Any, row_weight: Any, W: np.ndarray, b: np.ndarray | None
) -> tuple[Any, ...]:
    d, gW, gb = data_value_and_grad(X, y, row_weight, W, b)
    return (d, gW) if gb is None else (d, gW, gb)


def _block_hvp(
    X: Any, y: Any, row_weight: Any, W: np.ndarray, b: np.ndarray | None,
    dW: np.ndarray, db: np.ndarray | None,
) -> tuple[Any, ...]:
    hW, hb = data_hvp(X, y, row_weight, W, b, dW, db)
    return (hW,) if hb is None else (hW, hb)


def _block_curvature_moments(
    X: Any, y: Any, row_weight: Any, W: np.ndarray, b: np.ndarray | None
) -> tuple[Any, ...]:
    squares = X.multiply(X).tocsr() if hasattr(X, "multiply") else np.square(X)
    return data_curvature_moments(X, squares, row_weight, block_logits(X, W, b))


def _block_feature_sums(X: Any, y: Any, row_weight: Any) -> tuple[Any, ...]:
    return data_feature_sums(X, row_weight)


def _block_curvature_average(
    X: Any, y: Any, row_weight: Any, W: np.ndarray, b: np.ndarray | None
) -> tuple[Any, ...]:
    return (data_curvature_average(X, row_weight, W, b),)


class DaskObjective(SoftmaxObjective):
    """The softmax-regression objective over persisted Dask blocks.

    The penalty and the packing come from :class:`~._objective.SoftmaxObjective`; the data term
    and its Hessian-vector product are each one map-reduce (:class:`BlockMapReduce`) of the
    in-memory block functions :func:`~._objective.data_value_and_grad` and
    :func:`~._objective.data_hvp`. ``W`` and ``b`` travel in the training dtype.
    """

    def __init__(self, data: DaskData, *, C: float, fit_intercept: bool, row_weight_sum: float) -> None:
        super().__init__(
            data.n_features,
            len(data.classes),
            C=C,
            fit_intercept=fit_intercept,
            dtype=data.X.dtype,
            row_weight_sum=row_weight_sum,
        )
        self.data = data
        self.map_reduce = BlockMapReduce(data)
        self._moments: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def kronecker_factors(self, w: np.ndarray) -> KroneckerFactors:
        """As the in-memory objective's: the feature moments are one map-reduce per fit, the
        curvature average one per Newton step."""
        if self.n_features > _KRONECKER_MAX_FEATURES:
            raise NotImplementedError
        if self._moments is None:
            total, first, gram = self.map_reduce(_block_feature_sums)
            self._moments = moments_from_sums(float(total[0]), first, gram, centre=self.fit_intercept)
        W, b = self.unpack(w)
        (average,) = self.map_reduce(_block_curvature_average, W, b)
        a, U = np.linalg.eigh(average)
        return KroneckerFactors(*self._moments, a, U)

    def data_value_and_grad(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        d, gW, *gb = self.map_reduce(_block_value_and_grad, W, b)
        return float(d), gW, (gb[0] if gb else None)

    def data_hvp(
        self, W: np.ndarray, b: np.ndarray | None, dW: np.ndarray, db: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        hW, *hb = self.map_reduce(_block_hvp, W, b, dW, db)
        return hW, (hb[0] if hb else None)

    def data_curvature_moments(
        self, W: np.ndarray, b: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s0, s1, s2 = self.map_reduce(_block_curvature_moments, W, b)
        return s0, s1, s2


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


def _class_weight_vector(class_weight: Any, classes: np.ndarray, weighted_counts: np.ndarray) -> np.ndarray:
    """Per-class weights as scikit-learn computes them, from the (weighted) class counts."""
    if isinstance(class_weight, str):  # "balanced": sum(s) / (T * weighted count of the class)
        with np.errstate(divide="ignore"):
            return weighted_counts.sum() / (classes.size * weighted_counts)
    from sklearn.utils.class_weight import compute_class_weight

    return np.asarray(compute_class_weight(class_weight, classes=classes, y=classes), dtype=np.float64)


def _row_weights(y: np.ndarray, row_weight: np.ndarray | None, cw: np.ndarray) -> np.ndarray:
    w = cw[y]
    return w if row_weight is None else (row_weight * w).astype(row_weight.dtype)


def fit(model: Any, X: Any, y: Any, sample_weight: Any = None, callback: Any = None) -> Any:
    """:meth:`SoftmaxRegression.fit` on Dask input: the same objective and solvers, on the workers.

    ``model``'s parameters are already validated. Returns ``model``, fitted: an ordinary
    SoftmaxRegression whose attributes are NumPy arrays.
    """
    import dask
    import dask.array as da
    from sklearn.utils.multiclass import check_classification_targets

    data = prepare_data(X, y, sample_weight)
    classes = data.classes
    check_classification_targets(classes)
    check_two_classes(classes)
    dtype = data.X.dtype
    row_weight = data.sample_weight
    if row_weight is not None:
        row_weight = row_weight.astype(dtype)  # as the in-memory fit: row weights in the training dtype
    if model.class_weight is not None:
        counts = data.class_counts.astype(np.float64)
        if data.sample_weight is not None:
            counts = da.bincount(data.y, weights=data.sample_weight, minlength=classes.size).compute()
        cw = _class_weight_vector(model.class_weight, classes, counts).astype(dtype)
        meta = np.empty((0,), dtype=dtype)
        row_weight = da.map_blocks(_row_weights, data.y, row_weight, dask.delayed(cw), meta=meta)
    if row_weight is None:
        row_weight_sum = float(data.n_samples)
    else:
        (row_weight,) = dask.persist(row_weight)
        row_weight_sum = float(da.sum(row_weight, dtype=np.float64).compute())
    data = DaskData(data.X, data.y, row_weight, classes, data.feature_names, data.class_counts)

    obj = DaskObjective(
        data, C=float(model.C), fit_intercept=model.fit_intercept, row_weight_sum=row_weight_sum
    )

    model._fit_objective(obj, classes, data.n_features, data.n_samples, dtype, callback, sgd=streaming_sgd)
    model.n_features_in_ = data.n_features
    names = data.feature_names
    if names is not None and all(isinstance(c, str) for c in names):
        model.feature_names_in_ = np.asarray(names, dtype=object)
    elif hasattr(model, "feature_names_in_"):
        del model.feature_names_in_
    return model


# ---------------------------------------------------------------------------------------------
# SGD streaming over the blocks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SGDSpec:
    """What a block's SGD task needs besides the block and the state (small, sent per task)."""

    n_classes: int
    n_features: int
    fit_intercept: bool
    dtype: Any
    n_samples: int
    batch_size: int
    eta0: float
    lam: float
    grad_scale: float  # C * scale


def _sgd_block(
    state: tuple[Any, ...], X: Any, y: Any, row_weight: Any, spec: _SGDSpec, epoch: int, seed: int
) -> tuple[Any, ...]:
    """The mini-batch updates of one epoch over one block's rows, in a random order.

    The same update as :func:`._solvers.sgd`: step ``eta0 / (1 + eta0 lam t)``, the gradient of
    the batch's data term scaled to the whole set, Polyak-Ruppert averaging after epoch 1.
    """
    w, avg, n_avg, t = state
    w, avg = w.copy(), avg.copy()
    X, y, row_weight = _aligned(X), _aligned(y), _aligned(row_weight)
    k = spec.n_classes * spec.n_features
    order = np.random.default_rng(seed).permutation(X.shape[0])
    for start in range(0, order.size, spec.batch_size):
        idx = order[start : start + spec.batch_size]
        W = w[:k].reshape(spec.n_classes, spec.n_features).astype(spec.dtype)
        b = w[k:].astype(spec.dtype) if spec.fit_intercept else None
        _, gW, gb = data_value_and_grad(X[idx], y[idx], None if row_weight is None else row_weight[idx], W, b)
        parts = [np.asarray(gW, dtype=np.float64).ravel()]
        if gb is not None:
            parts.append(np.asarray(gb, dtype=np.float64))
        g = np.concatenate(parts) * (spec.grad_scale * spec.n_samples / idx.size)
        if spec.lam:
            g[:k] += spec.lam * w[:k]
        w -= (spec.eta0 / (1.0 + spec.eta0 * spec.lam * t)) * g
        t += 1
        if epoch > 1:
            n_avg += 1
            avg += (w - avg) / n_avg
    return w, avg, n_avg, t


def _max_row_curvature(data: DaskData, fit_intercept: bool) -> float:
    """``max_i s_i (||x_i||^2 + 1)`` (``+1`` for the intercept), one pass over the blocks."""
    import dask.array as da

    X = data.X.astype(np.float64)
    sq = da.sum(X * X, axis=1) + (1.0 if fit_intercept else 0.0)
    if data.sample_weight is not None:
        sq = sq * data.sample_weight.astype(np.float64)
    return float(sq.max().compute())


def streaming_sgd(
    obj: DaskObjective,
    w0: np.ndarray,
    *,
    tol: float,
    max_iter: int,
    batch_size: int,
    learning_rate: float | str,
    rng: np.random.RandomState,
    callback: Any = None,
) -> Any:
    """:func:`._solvers.sgd` streaming over Dask blocks: the state travels, the blocks stay.

    Each epoch visits the blocks in a random order and, inside each block, its rows in a random
    order, in batches of ``batch_size`` (a batch never spans two blocks). One epoch is one chain
    of tasks, each on the worker that holds its block; the coefficients and the running average
    pass from task to task. The schedule, the averaging and the stopping rule are those of the
    in-memory solver; the full objective after each epoch is one map-reduce.
    """
    import math

    import dask

    from ._solvers import SolverResult

    data = obj.data
    n = data.n_samples
    scale = obj.scale
    C = obj.C if np.isfinite(obj.C) else 1.0
    lam = scale if np.isfinite(obj.C) else 0.0
    if learning_rate == "auto":
        lipschitz = _max_row_curvature(data, obj.fit_intercept) * 0.5 * n * scale * C + lam
        eta0 = 1.0 / lipschitz
    else:
        eta0 = float(learning_rate)
    spec = _SGDSpec(
        obj.n_classes,
        obj.n_features,
        obj.fit_intercept,
        obj.dtype,
        n,
        max(1, min(int(batch_size), n)),
        eta0,
        lam,
        C * scale,
    )
    blocks = data.block_keys()
    w = np.array(w0, dtype=np.float64)
    state: tuple[Any, ...] = (w, w.copy(), 0, 0)
    curve: list[float] = []
    f_prev, stalls, converged, epoch = math.inf, 0, False, 0
    for epoch in range(1, max_iter + 1):
        order = rng.permutation(len(blocks))
        seeds = rng.randint(0, 2**31 - 1, size=len(blocks))
        token = uuid.uuid4().hex
        node = f"softgrad-sgd-{token}-start"
        layer: dict[Any, Any] = {node: (_shared, *state)}
        for step, i in enumerate(order):  # a chain: each step on the worker holding its block
            xk, yk, sk = blocks[i]
            key = f"softgrad-sgd-{token}-{step}"
            layer[key] = (_sgd_block, node, xk, yk, sk, spec, epoch, int(seeds[i]))
            node = key
        (state,) = dask.compute(data.delayed(layer, node))
        w, avg, n_avg, _ = state
        current = avg if n_avg else w
        f = obj.value_and_grad(current)[0]
        curve.append(float(f))
        if callback is not None:
            callback(len(curve), float(f))
        fs = f * scale
        if not math.isfinite(fs):
            return SolverResult(current, epoch, False, "diverged: lower learning_rate", curve)
        stalls = stalls + 1 if f_prev - fs < tol * max(1.0, abs(fs)) else 0
        f_prev = min(f_prev, fs)
        if stalls >= 3:
            converged = True
            break
    w, avg, n_avg, _ = state
    message = "objective stopped decreasing" if converged else "maximum number of epochs reached"
    return SolverResult(avg if n_avg else w, epoch, converged, message, curve)


# ---------------------------------------------------------------------------------------------
# Lazy predictions
# ---------------------------------------------------------------------------------------------

_METHODS = ("decision_function", "predict", "predict_proba", "predict_log_proba")


def _predict_block(X: np.ndarray, model: Any, method: str) -> np.ndarray:
    return np.asarray(getattr(model, method)(_aligned(X)))


def _block_model(model: Any) -> Any:
    """A shallow copy of ``model`` that takes NumPy blocks without a feature-name warning."""
    import copy

    light = copy.copy(model)
    if hasattr(light, "feature_names_in_"):
        del light.feature_names_in_  # checked once on the driver against the DataFrame's columns
    return light


def predict(model: Any, X: Any, method: str, *, lengths: bool = False) -> Any:
    """``model.<method>(X)`` as a lazy Dask array: the in-memory method on each row block.

    The model enters the graph as one key. Columns of a DataFrame are checked against
    ``feature_names_in_`` here, on the driver; nothing is computed.
    """
    import dask
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    Xd, names = as_row_array(X, "X", lengths=lengths)
    if Xd.shape[1] != model.n_features_in_:
        raise ValueError(
            f"X has {Xd.shape[1]} features, but SoftmaxRegression is expecting "
            f"{model.n_features_in_} features as input"
        )
    fitted_names = getattr(model, "feature_names_in_", None)
    if names is not None and fitted_names is not None and list(fitted_names) != list(names):
        raise ValueError(
            f"X has columns {list(names)}, but SoftmaxRegression was fitted with {list(fitted_names)}"
        )
    m = dask.delayed(_block_model(model), name=f"softgrad-model-{uuid.uuid4().hex}")
    T = model.classes_.size
    out_dtype = np.result_type(Xd.dtype, model.coef_.dtype)
    if method == "predict":
        meta = np.empty((0,), dtype=model.classes_.dtype)
        return Xd.map_blocks(_predict_block, m, method, drop_axis=1, meta=meta)
    if method == "decision_function" and T == 2:
        return Xd.map_blocks(_predict_block, m, method, drop_axis=1, meta=np.empty((0,), dtype=out_dtype))
    meta = np.empty((0, 0), dtype=out_dtype)
    return Xd.map_blocks(_predict_block, m, method, chunks=(Xd.chunks[0], (T,)), meta=meta)


def score(model: Any, X: Any, y: Any, sample_weight: Any = None) -> float:
    """Mean accuracy of ``model.predict(X)`` against ``y`` (weighted), one pass on the workers."""
    import dask

    # a DataFrame's row counts are computed so that y lines up with X's blocks
    pred = predict(model, X, "predict", lengths=True)
    y = as_row_vector(y, pred.chunks[0], "y")
    correct = (pred == y).astype(np.float64)
    if sample_weight is None:
        return float(correct.mean().compute())
    row_weight = as_row_vector(sample_weight, pred.chunks[0], "sample_weight").astype(np.float64)
    num, den = dask.compute((correct * row_weight).sum(), row_weight.sum())
    return float(num / den)
