r"""Check a hand-written softmax derivative and name the mistake: :func:`diagnose`.

Probes (random, shifted, tied, batched and large logits) run the user's function, its answers
are compared with softgrad's exact ones, and the catalog (:data:`CATALOG`) names the mistakes
whose numerical signature they show, with the derivation step each one gets wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import config
from ._analysis import analyse
from ._catalog import CATALOG, Evidence, Mistake
from ._kinds import KINDS, REDUCTIONS, TAKES, Kind, Probe
from ._report import Diagnosis, Finding
from ._run import observe_all

__all__ = ["CATALOG", "Diagnosis", "Finding", "diagnose"]

# JIT compilers (JAX, torch.compile, Numba) make a correct function's first calls slow: 5 s was
# spent by jax.nn.softmax on a loaded 2-core machine. The budget guards against endless loops.
DEFAULT_TIME_LIMIT = 30.0


def _check(fn: Any, kind: Any, takes: Any, reduction: Any, time_limit: Any) -> Kind:
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}; got {kind!r}")
    k = KINDS[kind]
    if takes not in TAKES:
        raise ValueError(f"takes: expected 'logits' or 'probs', got {takes!r}")
    if takes == "probs" and not k.takes_probs:
        raise ValueError(f"takes: kind {kind!r} takes logits only, got takes={takes!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    if not (isinstance(time_limit, int | float) and time_limit > 0):
        raise ValueError(f"time_limit: expected a positive number of seconds, got {time_limit!r}")
    return k


def _exact(kind: Kind, probe: Probe) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(kind.exact(probe), dtype=np.float64)


def _finding(m: Mistake, ev: Evidence) -> Finding:
    return Finding(m.id, m.title, ev.summary, m.explanation, m.fix, m.step, ev.probe, dict(ev.numbers))


def diagnose(
    fn: Callable[..., Any],
    kind: str,
    *,
    takes: str = "logits",
    reduction: str = "mean",
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> Diagnosis:
    r"""Check ``fn`` against softgrad's exact answer and name its mistakes.

    ``kind`` says what ``fn`` claims to compute and how it is called:

    ========================  =============  ============================================
    kind                      call           returns
    ========================  =============  ============================================
    ``softmax``               ``fn(x)``      :math:`S = \operatorname{softmax}(x)`, x (n,) or (B, n)
    ``log_softmax``           ``fn(x)``      :math:`\log S`
    ``softmax_jacobian``      ``fn(v)``      :math:`J_{ij} = S_i(\delta_{ij} - S_j)`, (n, n)
    ``softmax_backward``      ``fn(v, g)``   :math:`g^\top J = S \odot (g - g\cdot S)`
    ``cross_entropy_grad``    ``fn(z, y)``   :math:`\partial L/\partial z = (S - Y)/B` (or sum)
    ``layer_grad_W``          ``fn(X, W, y)`` :math:`\partial L/\partial W = (S - Y)^\top X / B`
    ========================  =============  ============================================

    ``v`` is the logits (``takes="logits"``) or the probabilities S (``takes="probs"``).
    ``reduction`` ("mean" or "sum") is the loss's reduction over the batch. ``fn`` gets copies
    of the probe arrays and may return NumPy arrays, PyTorch tensors, JAX arrays or lists. Its
    exceptions are caught and reported; all its calls together get ``time_limit`` seconds.

    Examples
    --------
    >>> import numpy as np
    >>> import softgrad as sg
    >>> def my_jacobian(s):
    ...     return np.diag(s * (1 - s))          # forgets the off-diagonal -S_i S_j
    >>> d = sg.diagnose(my_jacobian, "softmax_jacobian", takes="probs")
    >>> d.ok, d.ids
    (False, ['diagonal-only'])
    >>> d.findings[0].step
    ('softmax', 'case-i-ne-j')
    >>> sg.diagnose(lambda s: np.diag(s) - np.outer(s, s), "softmax_jacobian", takes="probs").ok
    True
    """
    k = _check(fn, kind, takes, reduction, time_limit)
    start = time.perf_counter()
    # softgrad's reference code is exact enough for small probes and needs no compiled kernels
    with config.kernels(False):
        probes = [(p, _exact(k, p)) for p in k.probes(takes, reduction)]
    observations = observe_all(fn, probes, float(time_limit))
    with np.errstate(all="ignore"), config.kernels(False):
        analysis = analyse(k, observations)
        found = [(m, ev) for m in CATALOG if kind in m.kinds and (ev := m.matches(analysis)) is not None]
    return Diagnosis(
        function=getattr(fn, "__qualname__", None) or repr(fn),
        kind=kind,
        takes=takes,
        reduction=reduction if k.uses_reduction else None,
        findings=tuple(_finding(m, ev) for m, ev in found),
        probes=len(observations),
        seconds=time.perf_counter() - start,
    )
