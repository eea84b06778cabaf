"""softgrad: the softmax family, its exact derivatives, and the classifiers built on them.

>>> import softgrad as sg
>>> sg.softmax([1.0, 2.0, 3.0])
array([0.09003057, 0.24472847, 0.66524096])

Layers, each importing only the ones before it: ``_array``/``_dasktools``/``config`` (array and
Dask helpers) → ``core`` (softmax family, derivatives) → ``losses`` (cross-entropy, the layer) →
``models`` (estimators), beside it ``teaching`` and the autodiff adapters ``torch``/``jax`` →
``interfaces`` (command line, plots, benchmarks). README.md, "Development", has the table.
"""

from __future__ import annotations

from typing import Any

from . import config as config
from .core import *  # noqa: F403
from .core import __all__ as _core_all
from .losses import *  # noqa: F403
from .losses import __all__ as _losses_all

__version__ = "0.1.0"

# Models pull in scikit-learn, so they load on first use: ``sg.SoftmaxRegression``.
_LAZY_MODELS = ("SoftmaxRegression",)
# The teaching layer loads on first use too: ``sg.derive``, ``sg.diagnose``. Name -> subpackage.
_LAZY = {**dict.fromkeys(_LAZY_MODELS, "models"), "derive": "teaching", "diagnose": "teaching"}

__all__ = sorted([*_core_all, *_losses_all, *_LAZY, "config"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'softgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
