"""Models layer: estimators and their solvers.

:class:`SoftmaxRegression` is multinomial logistic regression on softgrad's exact
cross-entropy derivatives (:mod:`.regression`); its objective is in :mod:`._objective`, its
solvers in :mod:`._solvers`, its file format in :mod:`._persist`.
"""

from .regression import SoftmaxRegression

__all__ = ["SoftmaxRegression"]
