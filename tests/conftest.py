"""Shared fixtures: one ``backend`` per installed array library, and the kernel switch.

A test that takes ``backend`` runs once per installed array library (NumPy, array-api-strict,
PyTorch, JAX, Dask). It builds its data in NumPy, moves it to the backend with
``backend.asarray``, checks the result with ``backend.check_type`` (the input's array type:
a torch tensor back for torch, a still-lazy Dask array for Dask) and brings it back with
``backend.to_numpy`` for the comparison.

JAX computes in float32 unless ``jax_enable_x64`` is on; the tests need float64, so it is
switched on here, before anything imports JAX.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass
else:
    # CI explores the same examples every run (a red CI must mean a regression, not a new draw);
    # local runs keep drawing fresh examples and remembering failures.
    _hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")

os.environ.setdefault("JAX_ENABLE_X64", "1")
if "jax" in sys.modules:  # imported by a plugin before us: switch it on directly
    sys.modules["jax"].config.update("jax_enable_x64", True)

BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "jax", "dask")
_MODULES = {"dask": "dask.array"}


def installed_backends() -> list[str]:
    """The array libraries of ``BACKEND_NAMES`` that can be imported here."""
    found = []
    for name in BACKEND_NAMES:
        top = _MODULES.get(name, name).split(".")[0]
        if importlib.util.find_spec(top) is not None:
            found.append(name)
    return found


@dataclass
class Backend:
    """How to move NumPy test data to one array library and back."""

    name: str
    lib: Any = field(repr=False)  # the library's own namespace: numpy, torch, jax.numpy, ...

    @property
    def float_dtypes(self) -> list[str]:
        """The floating dtypes softgrad supports on this backend, by name."""
        names = ["float32", "float64"]
        if self.name != "array_api_strict":  # the standard has no half precision
            names.insert(0, "float16")
        if self.name in ("torch", "jax"):
            names.insert(0, "bfloat16")
        return names

    def dtype(self, name: str) -> Any:
        if self.name == "jax" and name == "bfloat16":
            import jax.numpy as jnp

            return jnp.bfloat16
        if self.name == "dask":
            return np.dtype(name)
        return getattr(self.lib, name)

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """``a`` (NumPy or nested lists) as an array of this backend, in ``dtype`` if given."""
        a = np.asarray(a)
        if self.name == "numpy":
            out = a.copy()
        elif self.name == "torch":
            out = self.lib.asarray(a.copy())
        elif self.name == "dask":
            # two chunks along the last axis, which the functions reduce over by default
            chunks = (*a.shape[:-1], max(1, (a.shape[-1] + 1) // 2)) if a.ndim else ()
            out = self.lib.from_array(a.copy(), chunks=chunks or -1)
        else:
            out = self.lib.asarray(a)
        if dtype is not None:
            out = self._astype(out, dtype)
        return out

    def _astype(self, a: Any, dtype: str) -> Any:
        d = self.dtype(dtype)
        if self.name == "torch":
            return a.to(d)
        if self.name == "array_api_strict":
            return self.lib.astype(a, d)
        return a.astype(d)

    def check_type(self, result: Any) -> None:
        """Assert that ``result`` is an array of this backend (Dask: not computed yet)."""
        if self.name == "numpy":
            assert isinstance(result, np.ndarray | np.generic), type(result)
        elif self.name == "torch":
            assert isinstance(result, self.lib.Tensor), type(result)
        elif self.name == "jax":
            import jax

            assert isinstance(result, jax.Array), type(result)
        elif self.name == "dask":
            assert isinstance(result, self.lib.Array), type(result)
        else:
            assert type(result).__module__.startswith("array_api_strict"), type(result)

    def to_numpy(self, a: Any) -> np.ndarray:
        """``a`` as a NumPy array; half precision comes back as float32 for comparisons."""
        if self.name == "dask" and hasattr(a, "compute"):
            a = a.compute()
        elif self.name == "torch":
            a = a.detach()
            if a.dtype == self.lib.bfloat16:
                a = a.to(self.lib.float32)
            a = a.numpy()
        elif self.name == "array_api_strict":
            a = np.from_dlpack(a)
        out = np.asarray(a)
        if out.dtype.name == "bfloat16":
            out = out.astype(np.float32)
        return out

    def dtype_name(self, a: Any) -> str:
        """The name of ``a``'s dtype (``"float32"``, ``"bfloat16"``, ...)."""
        return str(a.dtype).rsplit(".", 1)[-1]


def make_backend(name: str) -> Backend:
    module = _MODULES.get(name, name)
    if name == "jax":
        module = "jax.numpy"
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
    lib = pytest.importorskip(module)
    return Backend(name, lib)


@pytest.fixture(params=installed_backends())
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each installed array library in turn (see :class:`Backend`)."""
    return make_backend(request.param)


@pytest.fixture(params=["default", "reference"])
def kernel_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on the path active by default, then on the pure reference path (no kernels)."""
    sg = importlib.import_module("softgrad")
    if request.param == "default":
        yield "default"
    else:
        with sg.config.kernels(False):
            yield "reference"


# --- the accuracy report: tests record the largest error they measured, printed at the end ----

_REPORT = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def accuracy_report(pytestconfig: pytest.Config) -> Any:
    """``record(quantity, dtype, data_set, value)``: keep the largest ``value`` for the summary.

    ``quantity`` names the function and the unit (``"softmax [ULP]"``); the table is printed at
    the end of the run, so the measured numbers are visible in every ``make test`` log.
    """
    table: dict[tuple[str, str, str], float] = pytestconfig.stash.setdefault(_REPORT, {})

    def record(quantity: str, dtype: str, data_set: str, value: float) -> None:
        key = (quantity, dtype, data_set)
        table[key] = max(table.get(key, 0.0), float(value))

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand the measured table to the controller, which prints it."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        table = session.config.stash.get(_REPORT, {})
        output["softgrad_accuracy"] = [[*key, value] for key, value in table.items()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the pytest-xdist controller: merge a finished worker's table (the largest error wins)."""
    table: dict[tuple[str, str, str], float] = node.config.stash.setdefault(_REPORT, {})
    for quantity, dtype, data_set, value in getattr(node, "workeroutput", {}).get("softgrad_accuracy", []):
        key = (quantity, dtype, data_set)
        table[key] = max(table.get(key, 0.0), float(value))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    table = config.stash.get(_REPORT, None)
    if not table:
        return
    terminalreporter.write_sep("-", "softgrad accuracy: largest error measured (mpmath, 50 digits)")
    width = max(len(q) for q, _, _ in table) + 2
    for (quantity, dtype, data_set), value in sorted(table.items()):
        terminalreporter.write_line(f"{quantity:<{width}} {dtype:<9} {data_set:<24} {value:8.3g}")


def _converter(name: str, dask_chunks: int) -> Any:
    """A function that moves a NumPy array to the array library ``name`` (skips if absent)."""
    if name == "torch":
        return pytest.importorskip("torch").tensor
    if name == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray
    if name == "dask":
        da = pytest.importorskip("dask.array")
        return lambda a: da.from_array(a, chunks=dask_chunks)
    return pytest.importorskip(name).asarray


@pytest.fixture
def to_backend() -> Any:
    """``to_backend(name, dask_chunks)``: a converter of NumPy arrays to that array library,
    for tests that pick their own backends and Dask chunking."""
    return _converter


@pytest.fixture
def finite_difference_hessian() -> Any:
    """``hessian(obj, w, h=1e-5)``: the columns ``(g(w + h e_j) - g(w - h e_j)) / 2h`` of an
    objective's exact float64 gradient ``g = obj.value_and_grad(.)[1]``."""

    def hessian(obj: Any, w: np.ndarray, h: float = 1e-5) -> np.ndarray:
        grad = lambda v: obj.value_and_grad(v)[1]  # noqa: E731
        return np.stack([(grad(w + h * e) - grad(w - h * e)) / (2 * h) for e in np.eye(obj.n_params)], axis=1)

    return hessian
