r"""``SoftmaxRegression``: multinomial logistic regression as a scikit-learn estimator.

It minimizes

.. math:: f(W, b) = C \sum_i s_i\, \mathrm{CE}(W x_i + b,\ y_i) + \tfrac12 \lVert W\rVert_F^2

the objective of scikit-learn's ``LogisticRegression(C=C)`` (l2 penalty, multinomial), so both
reach the same coefficients. The loss, its gradient and its Hessian-vector product are
softgrad's (:mod:`softgrad.losses`); the objective lives in :mod:`._objective`, the solvers in
:mod:`._solvers` and the file format in :mod:`._persist`.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, check_random_state

from .. import core
from .._dasktools import is_dask_collection
from . import _dask, _solvers
from ._labels import check_two_classes
from ._objective import ArrayObjective, SoftmaxObjective

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def validate_data(
        estimator: Any, /, X: Any = "no_validation", y: Any = "no_validation", **kw: Any
    ) -> Any:
        return estimator._validate_data(X, y, **kw)


__all__ = ["SoftmaxRegression"]

_SOLVERS = ("lbfgs", "newton-cg", "sgd")
# The scaled gradient of float32 data carries round-off of 1e-8 or so (logits with ~1e-7
# relative error, summed over rows): keep tol ten times above it.
_FLOAT32_TOL_FLOOR = 1e-7


def _make_objective(
    X: Any,
    y_idx: np.ndarray,
    row_weight: np.ndarray | None,
    n_classes: int,
    *,
    C: float,
    fit_intercept: bool,
) -> SoftmaxObjective:
    """The one place ``fit`` builds its objective (other row containers plug in here)."""
    return ArrayObjective(X, y_idx, row_weight, n_classes, C=C, fit_intercept=fit_intercept)


def _lazy_on_dask(method: Callable[[Any, Any], np.ndarray]) -> Callable[[Any, Any], np.ndarray]:
    """The prediction ``method`` in memory; on Dask input, the same method as a lazy Dask array,
    block by block (:func:`._dask.predict`, #6): one place that picks the path for all four."""

    @functools.wraps(method)
    def predict_any(self: Any, X: Any) -> np.ndarray:
        if is_dask_collection(X):
            return _dask.predict(self, X, method.__name__)
        return method(self, X)

    return predict_any


def _check_feature_scale(X: Any) -> None:
    """ValueError when a row's squared norm overflows X's dtype (features near 1e154 in float64,
    1e19 in float32): the objective's products ``X w`` and ``X^T X`` would overflow, and a fit
    would end at the starting point with a non-finite objective (issue #16)."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    import scipy.sparse as sp

    with np.errstate(over="ignore"):  # the overflow is what is being detected
        if sp.issparse(X):
            sq = np.asarray(X.multiply(X).sum(axis=1, dtype=np.float64)).ravel()
        else:
            sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    limit = float(np.finfo(X.dtype).max)
    if not float(np.max(sq)) < limit:
        big = float(abs(X).max())
        raise ValueError(
            f"X holds features too large to fit on (largest |x| = {big:.3g}): a row's squared norm "
            f"overflows {np.dtype(X.dtype).name}, and so would the objective; scale the features "
            f"first (e.g. sklearn.preprocessing.StandardScaler)"
        )


def _check_finite_result(result: _solvers.SolverResult) -> None:
    """A fit that ends on a non-finite point or objective is an error, never a model."""
    last = result.loss_curve[-1] if result.loss_curve else 0.0
    if not (np.all(np.isfinite(result.w)) and np.isfinite(last)):
        raise ValueError(
            f"the fit ended with a non-finite objective ({last}): the features are too large "
            f"or badly scaled for the objective to be computed; scale them first (e.g. "
            f"sklearn.preprocessing.StandardScaler)"
        )


class SoftmaxRegression(ClassifierMixin, BaseEstimator):
    r"""Multinomial (softmax) logistic regression with an exact-derivative solver.

    Minimizes

    .. math:: f(W, b) = C \sum_i s_i\, \mathrm{CE}(W x_i + b,\ y_i) + \tfrac12 \lVert W\rVert_F^2

    over ``W`` of shape ``(T, N)`` and ``b`` of shape ``(T,)`` (``T`` classes, ``N`` features),
    with ``s_i`` the sample weight times the class weight of row ``i``. The intercept is not
    penalized. This is scikit-learn's ``LogisticRegression(C=C)`` objective, so with the same
    ``C`` both give the same ``coef_`` and ``intercept_`` (for three classes or more; see the
    Notes for two).

    Parameters
    ----------
    C : float, default=1.0
        Inverse penalty strength, ``> 0``; ``np.inf`` for no penalty (then the optimum exists
        only when no class is linearly separable from the others).
    fit_intercept : bool, default=True
        Fit the intercepts ``b`` (not penalized).
    solver : {"lbfgs", "newton-cg", "sgd"}, default="newton-cg"
        ``"lbfgs"``: SciPy's L-BFGS-B on the exact gradient. ``"newton-cg"``: trust-region
        Newton-CG (Steihaug), each CG step one exact Hessian-vector product (the Hessian is
        never formed), preconditioned by a Kronecker-factored model of the Hessian (the
        centred features' covariance times the average curvature wrt the logits), so
        unscaled or correlated features do not stall it; fewest passes over the data near
        the optimum; the default, chosen by measurement (#15, benchmarks/bench_regression.py,
        to a relative objective gap of 1e-8 on a shared two-core machine: MNIST-5k 2.9 s
        against lbfgs's 14.3 s and scikit-learn newton-cg's 8.9 s, 100k x 50 x 10 2.5 s
        against lbfgs's 2.1 s, and unscaled wine, where lbfgs has not converged after 1000
        iterations). ``"sgd"``:
        mini-batch stochastic gradient with a decreasing step and iterate averaging, for data
        too large for full-batch passes; it gets near the optimum, not to it.
    max_iter : int, default=1000
        Iterations (L-BFGS, Newton) or epochs (SGD).
    tol : float, default=1e-8
        Stop when the largest gradient component of the scaled objective
        ``f / (C * sum(s))`` is ``<= tol`` (lbfgs, newton-cg; scikit-learn's ``tol`` means the
        same). For float32 data at least ``1e-7``, ten times the float32 gradient's
        round-off. For sgd: stop when the scaled objective decreased by less than ``tol``
        (relative) for five epochs in a row.
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into the sample weights; ``"balanced"`` uses
        ``n_samples / (n_classes * count)`` as scikit-learn does.
    warm_start : bool, default=False
        Start from the previous ``coef_`` and ``intercept_`` when the classes and features
        are the same.
    batch_size : int or None, default=None
        Rows per SGD step; None means ``min(256, n_samples)``.
    learning_rate : float or "auto", default="auto"
        Initial SGD step ``eta_0``; ``"auto"`` takes ``1 / L`` from the largest row curvature.
    random_state : int, RandomState or None, default=None
        Shuffling for SGD.
    verbose : int, default=0
        Print the objective after each iteration when positive.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        ``W``, in the dtype of the training data (float32 or float64). One row per class,
        also for two classes.
    intercept_ : ndarray of shape (n_classes,)
        ``b``, centred to sum to zero (the objective does not depend on a common shift).
    classes_ : ndarray of shape (n_classes,)
        The labels, sorted.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on data with string column names (a DataFrame).
    n_iter_ : int
        Iterations (or epochs) run.
    loss_curve_ : ndarray of shape (n_iter_,)
        The objective ``f`` after each iteration.

    Notes
    -----
    **Two classes.** ``coef_`` keeps one row per class, shape ``(2, N)``: the symmetric
    penalty makes ``W_1 = -W_0`` at the optimum. The log-odds are ``(W_1 - W_0) x + b_1 - b_0``,
    which is what :meth:`decision_function` returns (1-D, as scikit-learn); scikit-learn's
    binary ``LogisticRegression(C=2C)`` has ``coef_ == W_1 - W_0``: the same model.

    **dtype.** float32 data trains in float32: the products with ``X`` run in float32 and
    ``coef_`` is float32; the loss accumulates in float64 (softgrad's compute dtype).
    ``predict_log_proba`` is ``log_softmax`` of the logits, finite where ``predict_proba``
    underflows to 0.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> import softgrad as sg
    >>> X, y = load_iris(return_X_y=True)
    >>> model = sg.SoftmaxRegression(C=10.0).fit(X, y)
    >>> model.coef_.shape, model.intercept_.shape
    ((3, 4), (3,))
    >>> round(float(model.score(X, y)), 2)
    0.98
    >>> bool(np.allclose(model.predict_proba(X[:2]).sum(axis=1), 1.0))
    True
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "C": [Interval(Real, 0, None, closed="neither"), Options(Real, {np.inf})],
        "fit_intercept": ["boolean"],
        "solver": [StrOptions(set(_SOLVERS))],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "warm_start": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        C: float = 1.0,
        fit_intercept: bool = True,
        solver: str = "newton-cg",
        max_iter: int = 1000,
        tol: float = 1e-8,
        class_weight: dict[Any, float] | str | None = None,
        warm_start: bool = False,
        batch_size: int | None = None,
        learning_rate: float | str = "auto",
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        callback: Callable[[int, float], Any] | None = None,
    ) -> SoftmaxRegression:
        """Fit the model to ``X`` (n_samples, n_features) and labels ``y`` (n_samples,).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            float32 data trains in float32; anything else is converted to float64. Sparse
            input is used as CSR.
        y : array-like of shape (n_samples,)
            Labels of any sortable type (integers, strings); at least two classes.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative row weights ``s_i`` (times the class weights).
        callback : callable, optional
            ``callback(iteration, objective)`` after each iteration (epoch for SGD), e.g. to
            draw a progress bar.

        Returns
        -------
        self
        """
        if is_dask_collection(X):  # Dask input: the same fit, data term on the workers (#6)
            return _dask.fit(self, X, y, sample_weight, callback)
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32])
        _check_feature_scale(X)
        check_classification_targets(y)
        encoder = LabelEncoder()
        y_idx = encoder.fit_transform(y).astype(np.intp)
        classes = encoder.classes_
        check_two_classes(classes)
        row_weight = None
        if sample_weight is not None or self.class_weight is not None:
            row_weight = _check_sample_weight(
                sample_weight, X, dtype=X.dtype, ensure_non_negative=True, copy=True
            )
        if self.class_weight is not None:
            cw = compute_class_weight(self.class_weight, classes=classes, y=y, sample_weight=sample_weight)
            row_weight = row_weight * cw[y_idx].astype(X.dtype)

        obj = _make_objective(
            X, y_idx, row_weight, classes.size, C=float(self.C), fit_intercept=self.fit_intercept
        )
        with _solvers.blas_threads_for(X.shape[0] * X.shape[1] * classes.size):
            self._fit_objective(obj, classes, X.shape[1], X.shape[0], X.dtype, callback)
        return self

    def _fit_objective(
        self,
        obj: Any,
        classes: np.ndarray,
        n_features: int,
        n_samples: int,
        dtype: Any,
        callback: Callable[[int, float], Any] | None,
        sgd: Callable[..., _solvers.SolverResult] | None = None,
    ) -> None:
        """Minimize ``obj`` and set the fitted attributes (in memory and Dask alike)."""
        w0 = self._initial_point(obj, classes, n_features)
        cb = self._verbose_callback(callback)
        tol = float(self.tol)
        if dtype == np.float32 and self.solver != "sgd":
            tol = max(tol, _FLOAT32_TOL_FLOOR)
        result = self._solve(obj, w0, cb, n_samples, tol, sgd)
        _check_finite_result(result)
        if not result.converged and self.solver != "sgd":
            advice = "; increase max_iter" if result.n_iter >= self.max_iter else ""
            warnings.warn(
                f"SoftmaxRegression (solver={self.solver!r}) did not reach tol={tol} in "
                f"{result.n_iter} iterations ({result.message}){advice}.",
                ConvergenceWarning,
                stacklevel=3,
            )
        elif self.solver == "sgd" and np.array_equal(result.w, w0):
            warnings.warn(
                f"SoftmaxRegression (solver='sgd') made no progress in {result.n_iter} epochs: no "
                f"epoch improved on the starting point (learning_rate={self.learning_rate!r} too "
                f"large?); try learning_rate='auto' or a smaller one.",
                ConvergenceWarning,
                stacklevel=3,
            )
        W, b = obj.unpack(result.w)
        W = np.array(W, dtype=dtype)
        b = np.zeros(classes.size, dtype=dtype) if b is None else np.array(b, dtype=dtype)
        if self.fit_intercept:
            b -= b.mean(dtype=np.float64).astype(dtype)  # f is invariant to a common shift
        if not np.isfinite(self.C):
            W -= W.mean(axis=0, dtype=np.float64).astype(dtype)  # so is W without penalty
        self.coef_, self.intercept_, self.classes_ = W, b, classes
        self.n_iter_ = int(result.n_iter)
        self.loss_curve_ = np.asarray(result.loss_curve, dtype=np.float64)

    def _initial_point(self, obj: SoftmaxObjective, classes: np.ndarray, n_features: int) -> np.ndarray:
        if (
            self.warm_start
            and hasattr(self, "coef_")
            and self.coef_.shape == (classes.size, n_features)
            and np.array_equal(self.classes_, classes)
        ):
            return obj.pack(self.coef_, self.intercept_)
        return np.zeros(obj.n_params)

    def _verbose_callback(
        self, callback: Callable[[int, float], Any] | None
    ) -> Callable[[int, float], Any] | None:
        if not self.verbose:
            return callback

        def both(iteration: int, objective: float) -> None:
            print(f"SoftmaxRegression[{self.solver}] iteration {iteration}: objective {objective:.10g}")
            if callback is not None:
                callback(iteration, objective)

        return both

    def _solve(
        self,
        obj: Any,
        w0: np.ndarray,
        cb: Any,
        n_samples: int,
        tol: float,
        sgd: Callable[..., _solvers.SolverResult] | None = None,
    ) -> _solvers.SolverResult:
        """Run the chosen solver; ``sgd`` replaces the in-memory SGD (``_dask.streaming_sgd``)."""
        if self.solver == "lbfgs":
            return _solvers.lbfgs(obj, w0, tol=tol, max_iter=self.max_iter, callback=cb)
        if self.solver == "newton-cg":
            return _solvers.newton_cg(obj, w0, tol=tol, max_iter=self.max_iter, callback=cb)
        if sgd is None:
            if not isinstance(obj, ArrayObjective):
                raise ValueError(f"solver='sgd' needs the rows in memory, got {type(obj).__name__}")
            sgd = _solvers.sgd
        return sgd(
            obj,
            w0,
            tol=tol,
            max_iter=self.max_iter,
            batch_size=min(256, n_samples) if self.batch_size is None else self.batch_size,
            learning_rate=self.learning_rate,
            rng=check_random_state(self.random_state),
            callback=cb,
        )

    # --------------------------------------------------------------- predicting
    def _logits(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=False)
        z = np.asarray(X @ self.coef_.T)
        return z + self.intercept_

    @_lazy_on_dask
    def decision_function(self, X: Any) -> np.ndarray:
        r"""The logits ``X W^T + b``, shape (n_samples, n_classes).

        For two classes, the log-odds of ``classes_[1]``, ``z_1 - z_0``, shape (n_samples,),
        as scikit-learn's classifiers return.

        Examples
        --------
        >>> import softgrad as sg
        >>> m = sg.SoftmaxRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["a", "a", "b", "b"])
        >>> m.decision_function([[0.0], [3.0]]).shape
        (2,)
        """
        z = self._logits(X)
        if z.shape[1] == 2:
            return z[:, 1] - z[:, 0]
        return z

    @_lazy_on_dask
    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row, shape (n_samples,).

        Examples
        --------
        >>> import softgrad as sg
        >>> m = sg.SoftmaxRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["a", "a", "b", "b"])
        >>> m.predict([[0.0], [3.0]]).tolist()
        ['a', 'b']
        """
        z = self._logits(X)
        return self.classes_[np.argmax(z, axis=1)]

    @_lazy_on_dask
    def predict_proba(self, X: Any) -> np.ndarray:
        r"""Class probabilities ``softmax(X W^T + b)``, shape (n_samples, n_classes).

        Rows sum to 1; columns follow ``classes_``; the dtype is the logits' (float32 for a
        float32 model on float32 data).

        Examples
        --------
        >>> import softgrad as sg
        >>> m = sg.SoftmaxRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        >>> float(m.predict_proba([[1.5]]).sum())
        1.0
        """
        return np.asarray(core.softmax(self._logits(X), axis=1))

    @_lazy_on_dask
    def predict_log_proba(self, X: Any) -> np.ndarray:
        r"""Log-probabilities ``log_softmax(X W^T + b)``, shape (n_samples, n_classes).

        Computed by :func:`softgrad.log_softmax`, never as ``log(predict_proba)``: finite
        (e.g. ``-1000``) where the probability underflows to 0.

        Examples
        --------
        >>> import softgrad as sg
        >>> m = sg.SoftmaxRegression(C=1e3).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        >>> bool(m.predict_log_proba([[1e6]])[0, 0] < -1e3)
        True
        """
        return np.asarray(core.log_softmax(self._logits(X), axis=1))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y`` (scikit-learn's ``score``).

        On Dask input it is computed on the workers, one pass (issue #6).

        Examples
        --------
        >>> import softgrad as sg
        >>> m = sg.SoftmaxRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        >>> m.score([[0.0], [3.0]], [0, 1])
        1.0
        """
        if is_dask_collection(X):
            return _dask.score(self, X, y, sample_weight)
        return float(super().score(X, y, sample_weight=sample_weight))

    # -------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path``, without pickle.

        A path that is an existing folder, or ends with a path separator, gets ``model.json``
        (metadata, parameters, checksum) and the arrays file it names; any other path is written
        as one ``.npz`` file at exactly that name. Written atomically (temporary file, then
        rename; a folder's new arrays are committed by the one rename of ``model.json``).
        See :func:`SoftmaxRegression.load`.

        Examples
        --------
        >>> import os, tempfile
        >>> import softgrad as sg
        >>> m = sg.SoftmaxRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["a", "a", "b", "b"])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.sg")
        >>> m.save(path)
        >>> sg.SoftmaxRegression.load(path).predict([[3.0]]).tolist()
        ['b']
        """
        from ._persist import save_model

        check_is_fitted(self)
        save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SoftmaxRegression:
        """Read a model written by :meth:`save`, as plain data: never unpickled.

        Raises
        ------
        ValueError
            When the file or folder is missing, truncated, corrupt, of another format version,
            fails its checksum, holds arrays of the wrong shapes, declares arrays larger than the
            file, or has metadata of the wrong form.
        """
        from ._persist import load_model

        return load_model(cls, path)
