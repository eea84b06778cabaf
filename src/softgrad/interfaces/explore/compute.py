r"""What the explorer shows, computed by softgrad: plain functions from validated numbers to dicts.

The web server (:mod:`.app`) only parses requests, calls these functions and sends their
result as JSON; the page only draws it. Each function returns NumPy arrays and floats;
:func:`jsonable` turns them into JSON values (non-finite numbers become the strings ``"inf"``,
``"-inf"`` and ``"nan"``, as ``softgrad ... --json`` writes them).

>>> view = compute_view([1.0, 2.0, 3.0], temperature=1.0, target=2)
>>> view["softmax"]
array([0.09003057, 0.24472847, 0.66524096])
>>> view["grad"]                                  # S - y at T = 1
array([ 0.09003057,  0.24472847, -0.33475904])
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ... import core, losses

__all__ = [
    "JACOBIAN_AUTO_N",
    "JACOBIAN_MAX_N",
    "LAYER_MAX",
    "MAX_LOGITS",
    "STABILITY_DTYPES",
    "TIMING_MAX_N",
    "TIMING_MAX_SIZES",
    "Stopped",
    "compute_view",
    "derivation",
    "jsonable",
    "layer_view",
    "stability",
    "stop_work",
    "timing",
    "warm_up",
]

MAX_LOGITS = 4096  # one request's logits; the page draws far fewer
JACOBIAN_AUTO_N = 128  # the Jacobian is sent by default up to this n (a heat map this size still reads)
JACOBIAN_MAX_N = 1024  # and on request ("jacobian": true) up to this n: 1M numbers, about 20 MB of JSON
LAYER_MAX = 16  # classes T and inputs N of the layer view
TIMING_MAX_N = 4096  # the dense Jacobian is n^2 float64: 128 MiB at this n
TIMING_MAX_SIZES = 8
STABILITY_DTYPES = ("float16", "float32", "float64")

_TIMING_LOCK = threading.Lock()  # one timing at a time: concurrent runs would time each other
_STOPPING = threading.Event()  # set on Ctrl-C: a timing in a worker thread ends at its next sample


class Stopped(RuntimeError):
    """The server is shutting down: long work in a worker thread gives up."""


def stop_work() -> None:
    """Make any running :func:`timing` stop at its next sample (the server calls it on Ctrl-C)."""
    _STOPPING.set()


def compute_view(
    logits: Sequence[float] | np.ndarray, *, temperature: float, target: int, jacobian: bool | None = None
) -> dict[str, Any]:
    r"""Softmax, log-softmax, the Jacobian, the cross-entropy and its gradient at ``logits``.

    .. math::
        S = \mathrm{softmax}(x / T), \quad J_{ij} = \frac{\partial S_i}{\partial x_j}
          = S_i (\delta_{ij} - S_j) / T, \quad
        L = -\log S_k, \quad \frac{\partial L}{\partial x} = (S - y) / T

    ``jacobian``: None sends it for n <= :data:`JACOBIAN_AUTO_N`, True always (n <=
    :data:`JACOBIAN_MAX_N`), False never. The stability lab (:func:`stability`) comes along.

    >>> compute_view([0.0, 0.0], temperature=1.0, target=0)["loss"]
    0.6931471805599453
    """
    x = np.asarray(logits, dtype=np.float64)
    n = x.shape[0]
    z = x / temperature
    loss, s_minus_y = losses.cross_entropy_value_and_grad(z, np.asarray(target))
    send_jacobian = n <= JACOBIAN_AUTO_N if jacobian is None else jacobian
    return {
        "n": n,
        "temperature": temperature,
        "target": target,
        "logits": x,
        "softmax": core.softmax(x, temperature=temperature),
        "log_softmax": core.log_softmax(x, temperature=temperature),
        "logsumexp": float(core.logsumexp(z)),
        "jacobian": core.softmax_jacobian(x, temperature=temperature) if send_jacobian else None,
        "loss": float(loss),
        "s_minus_y": s_minus_y,
        "grad": s_minus_y / temperature,
        "stability": stability(x, temperature=temperature),
    }


def _naive_softmax(z: np.ndarray) -> np.ndarray:
    """exp(z) / sum(exp(z)) with no shift: what overflows. Warnings are the point, so silenced."""
    with np.errstate(all="ignore"):
        e = np.exp(z)
        return e / e.sum()


def stability(logits: Sequence[float] | np.ndarray, *, temperature: float) -> dict[str, Any]:
    r"""The naive softmax and :math:`\log(\mathrm{softmax})` beside softgrad's, in each dtype.

    The logits are rounded to the dtype first (float16 holds nothing above 65504), then the
    naive versions compute :math:`e^{z} / \sum e^{z}` with no max-shift and its logarithm,
    while softgrad's :func:`~softgrad.softmax` and :func:`~softgrad.log_softmax` get the same
    rounded input. ``exp_overflow`` is :math:`\log(\text{largest finite})`, the ``z`` above
    which ``exp`` overflows to inf in that dtype.

    >>> lab = stability([1000.0, 2000.0, 3000.0], temperature=1.0)
    >>> lab["float64"]["naive_softmax"], lab["float64"]["softmax"]
    (array([nan, nan, nan]), array([0., 0., 1.]))
    """
    out: dict[str, Any] = {}
    x = np.asarray(logits, dtype=np.float64)
    for name in STABILITY_DTYPES:
        dtype = np.dtype(name)
        with np.errstate(over="ignore"):  # float16 rounds 1e5 to inf: that is what the lab shows
            xd = x.astype(dtype)
        zd = xd / dtype.type(temperature)
        naive = _naive_softmax(zd)
        with np.errstate(divide="ignore", invalid="ignore"):
            naive_log = np.log(naive)
        row = {
            "input": xd,
            "exp_overflow": float(np.log(np.finfo(dtype).max.astype(np.float64))),
            "naive_softmax": naive,
            "naive_log_softmax": naive_log,
            "softmax": core.softmax(xd, temperature=temperature),
            "log_softmax": core.log_softmax(xd, temperature=temperature),
        }
        out[name] = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in row.items()}
    return out


def layer_view(
    x: Sequence[float] | np.ndarray,
    W: Sequence[Sequence[float]] | np.ndarray,
    *,
    target: int,
    b: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    r"""The softmax layer :math:`S = \mathrm{softmax}(Wx + b)` with cross-entropy and its gradients.

    .. math::
        \frac{\partial L}{\partial z} = S - y, \quad
        \frac{\partial L}{\partial W} = (S - y)\, x^\top, \quad
        \frac{\partial L}{\partial x} = W^\top (S - y), \quad
        \frac{\partial L}{\partial b} = S - y

    ``W`` has shape (T, N): one row per class. The gradients come from
    :func:`~softgrad.linear_cross_entropy`.

    >>> layer_view([1.0, 2.0], [[1.0, 0.0], [0.0, 1.0]], target=1)["grad_W"]
    array([[ 0.26894142,  0.53788284],
           [-0.26894142, -0.53788284]])
    """
    xv = np.asarray(x, dtype=np.float64)
    Wm = np.asarray(W, dtype=np.float64)
    bv = None if b is None else np.asarray(b, dtype=np.float64)
    k = np.asarray(target)
    loss, (dx, dW, db) = losses.linear_cross_entropy(xv, Wm, k, bv, return_grad=True)
    logits = Wm @ xv if bv is None else Wm @ xv + bv
    return {
        "x": xv,
        "W": Wm,
        "b": bv,
        "target": target,
        "logits": logits,
        "softmax": losses.dense_softmax(xv, Wm, bv),
        "loss": float(loss),
        "grad_logits": db,  # dL/db = dL/dz = S - y
        "grad_W": dW,
        "grad_x": dx,
        "grad_b": db,
    }


def _check_not_stopping() -> None:
    if _STOPPING.is_set():
        raise Stopped("the server is stopping")


def _median_seconds(fn: Callable[[], Any], *, budget: float = 0.15) -> float:
    """The median of 5 timings of ``fn`` (3 when one call takes more than the budget), each
    looping it enough to last about budget / 5."""
    start = time.perf_counter()
    fn()  # warm up (and a first estimate)
    once = max(time.perf_counter() - start, 1e-7)
    repeat = 3 if once > budget else 5
    loops = max(1, int(budget / repeat / once))
    samples = []
    for _ in range(repeat):
        _check_not_stopping()
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t0) / loops)
    return statistics.median(samples)


def _dense_backward(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g @ core.softmax_jacobian(x)  # type: ignore[no-any-return]


def timing(sizes: Sequence[int], *, seed: int = 0) -> list[dict[str, Any]]:
    r"""Backward through softmax two ways, timed: the dense Jacobian product against the VJP.

    For each n, with random logits ``x`` and upstream gradient ``g``: ``dense`` builds
    :math:`J = \mathrm{diag}(S) - S S^\top` (:func:`~softgrad.softmax_jacobian`, O(n²) memory
    and time) and multiplies :math:`g^\top J`; ``vjp`` computes
    :math:`S \odot (g - g \cdot S)` (:func:`~softgrad.softmax_vjp`, O(n)). Times are medians in
    seconds; ``max_abs_diff`` shows that both give the same vector.

    >>> row = timing([8])[0]
    >>> row["n"], row["max_abs_diff"] < 1e-15, row["dense_s"] > 0 and row["vjp_s"] > 0
    (8, True, True)
    """
    rng = np.random.default_rng(seed)
    rows = []
    with _TIMING_LOCK:
        for n in sizes:
            _check_not_stopping()
            x, g = rng.standard_normal(n), rng.standard_normal(n)
            s = core.softmax(x)
            dense, fast = _dense_backward(x, g), core.softmax_vjp(s, g)
            dense_s = _median_seconds(functools.partial(_dense_backward, x, g))
            vjp_s = _median_seconds(functools.partial(core.softmax_vjp, s, g))
            rows.append(
                {
                    "n": int(n),
                    "dense_s": dense_s,
                    "vjp_s": vjp_s,
                    "ratio": dense_s / vjp_s,
                    "jacobian_bytes": int(n) * int(n) * 8,
                    "max_abs_diff": float(np.max(np.abs(dense - fast))),
                }
            )
    return rows


def derivation(
    topic: str,
    logits: Sequence[float] | None,
    *,
    temperature: float = 1.0,
    target: int | None = None,
    W: Sequence[Sequence[float]] | None = None,
    b: Sequence[float] | None = None,
) -> dict[str, Any]:
    """``derive(topic, at=z, target=, W=, b=).to_dict()`` from :mod:`softgrad.teaching` at
    ``z = logits / T``.

    The derivations are written for T = 1; at the scaled logits their numbers (S, the
    Jacobian of S with respect to z, the gradient) are those of the page. For the layer topics
    ``logits`` is the layer's input x (and ``temperature`` 1), and ``W``, ``b`` and ``target``
    are the layer card's, so the panel shows the page's own numbers.
    """
    from ...teaching import derive

    at = None if logits is None else (np.asarray(logits, dtype=np.float64) / temperature).tolist()
    return derive(topic, at=at, target=target, W=W, b=b).to_dict()


def warm_up() -> None:
    """Run each view once, so the first page load does not pay for loading the kernels (~1 s);
    called before serving, it also clears a previous :func:`stop_work`."""
    _STOPPING.clear()
    compute_view([1.0, 2.0, 3.0], temperature=1.0, target=0)
    layer_view([1.0], [[1.0], [2.0]], target=0)
    timing([4])


def _number(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)  # JSON has no inf/nan: "inf", "-inf", "nan"


def jsonable(value: Any) -> Any:
    """``value`` with arrays as nested lists and non-finite floats as strings, ready for JSON.

    >>> jsonable({"a": np.array([1.0, np.inf]), "b": [np.float32(0.5), None]})
    {'a': [1.0, 'inf'], 'b': [0.5, None]}
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return jsonable(value.tolist())
        return value.tolist()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return _number(value)
    return value
