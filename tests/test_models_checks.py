"""scikit-learn's own estimator checks (the scikit-learn contract) for SoftmaxRegression."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from softgrad.models import SoftmaxRegression


@parametrize_with_checks([SoftmaxRegression(), SoftmaxRegression(solver="newton-cg")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
