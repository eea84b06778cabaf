"""Run the user's function on the probes, safely, and record what it did.

The function gets copies of the probe arrays (the probes are compared with the copies
afterwards, to report a function that writes into its inputs), runs with NumPy's floating-point
warnings and all Python warnings silenced, and has its exceptions caught and recorded. Time is
guarded twice: a wall-clock budget for all the calls together, checked before each call, and,
on the main thread of a POSIX process, an interval timer that interrupts a single call that
runs past the budget.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kinds import Probe


class _TimeUp(BaseException):
    """Raised inside the user's function by the interval timer (not an Exception, so that the
    user's own ``except Exception`` cannot swallow it)."""


@dataclass
class Observation:
    """What the user's function returned on one probe, next to softgrad's exact answer."""

    probe: Probe
    exact: np.ndarray
    output: np.ndarray | None = None
    error: str | None = None  # "ValueError: ...", "timed out", "returned a str"
    error_type: str | None = None
    mutated: tuple[str, ...] = ()
    seconds: float = 0.0


def to_array(value: Any) -> np.ndarray:
    """The user's result as a float NumPy array (PyTorch tensors, JAX arrays and lists too)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, maybe requiring grad
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise TypeError(f"returned {type(value).__name__} of dtype {arr.dtype}, not an array of real numbers")
    return arr


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` where a POSIX interval timer can (main thread only)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def observe(fn: Callable[..., Any], probe: Probe, exact: np.ndarray, seconds_left: float) -> Observation:
    """Call ``fn`` on copies of the probe's arguments and record its answer or its failure."""
    obs = Observation(probe, exact)
    copies = tuple(a.copy() for a in probe.args)
    start = time.perf_counter()
    try:
        with _quiet(), _alarm(seconds_left):
            result = fn(*copies)
        obs.output = to_array(result)
    except _TimeUp:
        obs.error, obs.error_type = (
            f"timed out (the {seconds_left:.1f} s left of the time budget ran out; {_MORE_TIME})",
            "timeout",
        )
    except Exception as exc:  # the user's code may raise anything: record it as evidence
        obs.error, obs.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
    obs.seconds = time.perf_counter() - start
    obs.mutated = tuple(
        name
        for name, a, c in zip(probe.names, probe.args, copies, strict=True)
        if a.shape != np.shape(c) or not np.array_equal(a, c, equal_nan=True)
    )
    return obs


_MORE_TIME = "a slow but finite function needs a larger time_limit= (command line: --time-limit)"


def observe_all(
    fn: Callable[..., Any], probes: list[tuple[Probe, np.ndarray]], budget: float
) -> list[Observation]:
    """Observe every probe until the time budget (seconds, all calls together) is spent."""
    deadline = time.perf_counter() + budget
    out = []
    for probe, exact in probes:
        left = deadline - time.perf_counter()
        if left <= 0:
            skipped = f"skipped: the time budget was spent ({_MORE_TIME})"
            out.append(Observation(probe, exact, error=skipped, error_type="timeout"))
            continue
        out.append(observe(fn, probe, exact, left))
    return out
