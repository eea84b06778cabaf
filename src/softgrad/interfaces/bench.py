"""``softgrad bench``: softgrad's fused kernels side by side with SciPy, NumPy, PyTorch and JAX.

Every implementation runs in this one process on the same arrays, timed as the median of
``repeat`` runs after one warm-up, with ``np.copyto`` of the input as the bandwidth floor (one
read and one write of the data). The runs go round-robin (each round calls every
implementation of a function once, ``np.copyto`` included), so that a slow phase of a shared
machine lands on all of them and the ratios hold. For each shape and function the table gives the time, the
bytes moved per second (the function's compulsory traffic: inputs read once, outputs written
once), the share of ``np.copyto``'s bandwidth, and the time relative to softgrad. PyTorch and
JAX run when installed. ``linear_cross_entropy`` is measured against PyTorch's unfused
``Linear`` + ``cross_entropy`` + ``backward``; its peak memory is the growth of the resident
set of a fresh subprocess per implementation (``VmHWM`` after the call, reset before it, minus
``VmRSS`` before it, after a small warm-up call), which sees the allocations of every library
(``tracemalloc`` sees only Python's; ``ru_maxrss`` keeps the parent's peak across fork).
Linux only (``/proc``).

Benchmarks are programs that print tables, not assertions: the goals of issue #5 are checked
and printed at the end, met or not.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FULL_SHAPES", "QUICK_SHAPES", "SHORT_SHAPES", "Result", "run_bench"]

# Few classes, many rows (#15): where classifiers live.
SHORT_SHAPES: tuple[tuple[tuple[int, int], str], ...] = (
    ((1_000_000, 10), "float32"),
    ((1_000_000, 10), "float64"),
    ((2_000_000, 2), "float64"),
)
FULL_SHAPES: tuple[tuple[tuple[int, int], str], ...] = (
    ((4096, 32000), "float32"),
    ((65536, 1000), "float32"),
    *SHORT_SHAPES,
    ((64, 1_000_000), "float32"),
)
QUICK_SHAPES: tuple[tuple[tuple[int, int], str], ...] = (
    ((256, 2000), "float32"),
    ((2048, 100), "float32"),
    ((20_000, 10), "float64"),
    ((4, 100_000), "float32"),
)
FUNCTIONS = ("softmax", "log_softmax", "softmax_vjp", "cross_entropy", "linear_cross_entropy")
# linear_cross_entropy: (rows B, features N, classes T), float32; also run with a larger chunk
# (1024 rows: 131 MB of logits) to show the time / memory trade-off of the chunk size.
LINEAR_FULL = (4096, 256, 32000)
LINEAR_QUICK = (256, 32, 2000)


@dataclass
class Result:
    """One timed implementation of one function on one shape."""

    function: str
    shape: tuple[int, ...]
    dtype: str
    implementation: str
    ms: float
    gbps: float | None = None
    copy_share: float | None = None
    vs_softgrad: float | None = None
    peak_mb: float | None = None
    note: str = ""
    times_ms: list[float] = field(default_factory=list)


def _round_robin_ms(
    impls: dict[str, Callable[[], Any]], repeat: int, log: Callable[[str], None], label: str
) -> dict[str, list[float]]:
    """Times of ``repeat`` rounds, each calling every implementation once in turn.

    On a shared machine whose speed drifts over seconds (other tenants' memory traffic), timing
    one implementation's runs back to back puts the slow phases on whoever runs then; taking
    turns spreads them over all, so the ratios of the medians hold. An implementation that
    fails its warm-up call is reported and left out.
    """
    ready: dict[str, Callable[[], Any]] = {}
    for name, fn in impls.items():
        try:
            fn()  # warm-up: compilation, caches, page faults of first allocations
        except Exception as exc:  # a peer that cannot run this case: say so, go on
            log(f"  {label} {name}: skipped ({type(exc).__name__}: {exc})")
            continue
        ready[name] = fn
    times: dict[str, list[float]] = {name: [] for name in ready}
    for _ in range(repeat):
        for name, fn in ready.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def _optional(name: str) -> Any:
    """The module ``name`` when it can be imported, else None (optional peers)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --- implementations -----------------------------------------------------------------------------


def _numpy_softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The textbook max-shift softmax in NumPy; into ``out`` without temporaries when given."""
    if out is None:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def _numpy_log_softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    if out is None:
        y = x - m
        return y - np.log(np.exp(y).sum(axis=-1, keepdims=True))
    np.subtract(x, m, out=out)
    lse = np.log(np.exp(out).sum(axis=-1, keepdims=True))
    out -= lse
    return out


def _numpy_vjp(s: np.ndarray, g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    dot = np.einsum("ij,ij->i", s, g)[:, None]
    if out is None:
        return s * (g - dot)
    np.subtract(g, dot, out=out)
    out *= s
    return out


def _numpy_ce(x: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    """Mean cross-entropy and its gradient in NumPy (softmax - one-hot) / N."""
    p = _numpy_softmax(x)
    rows = np.arange(x.shape[0])
    loss = -np.mean(np.log(p[rows, y]))
    p[rows, y] -= 1.0
    p /= x.shape[0]
    return loss, p


def _scipy_ce(special: Any, x: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
    rows = np.arange(x.shape[0])
    logp = special.log_softmax(x, axis=-1)
    loss = -np.mean(logp[rows, y])
    p = special.softmax(x, axis=-1)
    p[rows, y] -= 1.0
    p /= x.shape[0]
    return loss, p


def _impls(fn: str, x: np.ndarray, extra: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The implementations of ``fn`` on ``x``: name -> zero-argument callable."""
    from .. import core as sg  # (layers: interfaces import core and losses, not the package)
    from .. import losses

    special = _optional("scipy.special")
    torch = _optional("torch")
    out = np.empty_like(x)
    impls: dict[str, Callable[[], Any]] = {}
    if fn == "softmax":
        impls["softgrad"] = lambda: sg.softmax(x)
        impls["softgrad out="] = lambda: sg.softmax(x, out=out)
        if special is not None:
            impls["scipy.special"] = lambda: special.softmax(x, axis=-1)
        impls["numpy max-shift"] = lambda: _numpy_softmax(x)
        impls["numpy max-shift out="] = lambda: _numpy_softmax(x, out)
    elif fn == "log_softmax":
        impls["softgrad"] = lambda: sg.log_softmax(x)
        impls["softgrad out="] = lambda: sg.log_softmax(x, out=out)
        if special is not None:
            impls["scipy.special"] = lambda: special.log_softmax(x, axis=-1)
        impls["numpy max-shift"] = lambda: _numpy_log_softmax(x)
        impls["numpy max-shift out="] = lambda: _numpy_log_softmax(x, out)
    elif fn == "softmax_vjp":
        s, g = extra["s"], extra["g"]
        impls["softgrad"] = lambda: sg.softmax_vjp(s, g)
        impls["softgrad out="] = lambda: sg.softmax_vjp(s, g, out=out)
        impls["numpy"] = lambda: _numpy_vjp(s, g)
        impls["numpy out="] = lambda: _numpy_vjp(s, g, out)
    elif fn == "cross_entropy":
        y = extra["y"]
        impls["softgrad"] = lambda: losses.cross_entropy_value_and_grad(x, y)
        impls["softgrad grad_out="] = lambda: losses.cross_entropy_value_and_grad(x, y, grad_out=out)
        if special is not None:
            impls["scipy.special"] = lambda: _scipy_ce(special, x, y)
        impls["numpy max-shift"] = lambda: _numpy_ce(x, y)
    if torch is not None:
        impls.update(_torch_impls(torch, fn, x, extra))
    jax = _optional("jax")
    if jax is not None:
        impls.update(_jax_impls(jax, fn, x, extra))
    return impls


def _torch_impls(torch: Any, fn: str, x: np.ndarray, extra: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    tx = torch.from_numpy(x)
    tout = torch.empty_like(tx)
    impls: dict[str, Callable[[], Any]] = {}
    if fn == "softmax":
        impls["torch"] = lambda: torch.softmax(tx, -1)
        impls["torch out="] = lambda: torch.softmax(tx, -1, out=tout)
    elif fn == "log_softmax":
        impls["torch"] = lambda: torch.log_softmax(tx, -1)
        impls["torch out="] = lambda: torch.log_softmax(tx, -1, out=tout)
    elif fn == "softmax_vjp":
        ts, tg = torch.from_numpy(extra["s"]), torch.from_numpy(extra["g"])
        impls["torch"] = lambda: torch._softmax_backward_data(tg, ts, -1, ts.dtype)
        impls["torch out="] = lambda: torch._softmax_backward_data(tg, ts, -1, ts.dtype, grad_input=tout)
    elif fn == "cross_entropy":
        ty = torch.from_numpy(extra["y"])

        def run() -> Any:
            leaf = tx.detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(leaf, ty)
            loss.backward()
            return loss, leaf.grad

        impls["torch fwd+bwd"] = run
    return impls


def _jax_impls(jax: Any, fn: str, x: np.ndarray, extra: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    import jax.numpy as jnp

    if x.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
        return {}
    jx = jax.device_put(x)
    impls: dict[str, Callable[[], Any]] = {}
    if fn == "softmax":
        f = jax.jit(lambda a: jax.nn.softmax(a, axis=-1))
        impls["jax.jit"] = lambda: f(jx).block_until_ready()
    elif fn == "log_softmax":
        f = jax.jit(lambda a: jax.nn.log_softmax(a, axis=-1))
        impls["jax.jit"] = lambda: f(jx).block_until_ready()
    elif fn == "softmax_vjp":
        js, jg = jax.device_put(extra["s"]), jax.device_put(extra["g"])
        f = jax.jit(lambda s, g: s * (g - jnp.sum(g * s, axis=-1, keepdims=True)))
        impls["jax.jit"] = lambda: f(js, jg).block_until_ready()
    elif fn == "cross_entropy":
        jy = jax.device_put(extra["y"])

        def ce(a: Any, y: Any) -> Any:
            logp = jax.nn.log_softmax(a, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))

        f = jax.jit(jax.value_and_grad(ce))

        def run() -> Any:
            loss, grad = f(jx, jy)
            return loss, grad.block_until_ready()

        impls["jax.jit fwd+bwd"] = run
    return impls


# --- traffic model ---------------------------------------------------------------------------


def _traffic_bytes(fn: str, x: np.ndarray) -> int:
    """Compulsory memory traffic: the inputs read once and the outputs written once."""
    if fn == "softmax_vjp":
        return 3 * x.nbytes  # read s and g, write the gradient
    return 2 * x.nbytes  # read x, write softmax / log_softmax / the logits' gradient


# --- the benchmark -----------------------------------------------------------------------------


def _bench_shape(
    shape: tuple[int, int], dtype: str, functions: tuple[str, ...], repeat: int, log: Callable[[str], None]
) -> list[Result]:
    """Every function on one shape; ``np.copyto`` takes a turn in every round of every function,
    and its row (the bandwidth floor of the shares) is the median over all those rounds."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(dtype)
    dst = np.empty_like(x)
    copy_times: list[float] = []
    groups: list[tuple[str, dict[str, list[float]]]] = []
    from .. import core as sg  # (layers: interfaces import core and losses, not the package)

    for fn in functions:
        extra: dict[str, Any] = {}
        if fn == "softmax_vjp":
            extra["s"] = sg.softmax(x)
            extra["g"] = rng.standard_normal(shape).astype(dtype)
        if fn == "cross_entropy":
            extra["y"] = rng.integers(0, shape[1], shape[0])
        impls = {"np.copyto": lambda: np.copyto(dst, x), **_impls(fn, x, extra)}
        times = _round_robin_ms(impls, repeat, log, fn)
        copy_times += times.pop("np.copyto")
        groups.append((fn, times))
        for name, ts in times.items():
            log(f"  {fn:<13} {name:<22} {float(np.median(ts)):9.1f} ms")
        del extra
    copy_ms = float(np.median(copy_times))
    copy_gbps = 2 * x.nbytes / copy_ms / 1e6
    log(f"{shape} {dtype}: np.copyto {copy_ms:.1f} ms ({copy_gbps:.1f} GB/s)")
    results = [Result("copy", shape, dtype, "np.copyto", copy_ms, copy_gbps, 1.0, None, times_ms=copy_times)]
    for fn, times in groups:
        traffic = _traffic_bytes(fn, x)
        group = []
        for name, ts in times.items():
            ms = float(np.median(ts))
            gbps = traffic / ms / 1e6
            group.append(Result(fn, shape, dtype, name, ms, gbps, gbps / copy_gbps, times_ms=ts))
        base = next((r.ms for r in group if r.implementation == "softgrad"), None)
        for r in group:
            r.vs_softgrad = None if base is None else r.ms / base
        results.extend(group)
    return results


_CHILDREN = Path(__file__).parent / "_bench_children"
# Run a child program by path as __main__ (sys.argv[1:] are its arguments, as for a script),
# with the working directory first on sys.path, not the folder of the child.
_RUN_BY_PATH = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


def child_command(name: str, *args: str) -> list[str]:
    """The command that runs ``_bench_children/<name>.py`` with ``args`` in a fresh interpreter."""
    return [sys.executable, "-c", _RUN_BY_PATH, str(_CHILDREN / f"{name}.py"), *args]


def _bench_linear(
    dims: tuple[int, int, int], repeat: int, log: Callable[[str], None], small_chunk: int
) -> list[Result]:
    """softgrad.linear_cross_entropy vs torch Linear + cross_entropy + backward, each in a fresh
    process: peak memory is the growth of ru_maxrss over the inputs (after a warm-up call).

    The processes take turns, in up to three rounds that share the ``repeat`` timed calls, so
    that a slow phase of the machine does not land on one implementation only.
    """
    impls: list[tuple[str, str, int]] = [
        ("softgrad", "softgrad", 0),
        (f"softgrad chunk_size={small_chunk}", "softgrad", small_chunk),
    ]
    if _optional("torch") is not None:
        impls.append(("torch unfused", "torch", 0))
    B, N, T = dims
    rounds = min(3, repeat)
    per_round = -(-repeat // rounds)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in impls}
    failed: set[str] = set()
    for _ in range(rounds):
        for name, impl, chunk in impls:
            if name in failed:
                continue
            cmd = child_command("linear", impl, *map(str, (B, N, T, per_round, chunk)))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                log(f"  linear_cross_entropy {name}: failed\n{proc.stderr[-2000:]}")
                failed.add(name)
                continue
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = []
    for name, data in runs.items():
        if not data or name in failed:
            continue
        times = [t for d in data for t in d["times_ms"]]
        ms = float(np.median(times))
        peak = max(d["peak_mb"] for d in data)
        results.append(
            Result(
                "linear_cross_entropy", dims, "float32", name, ms, peak_mb=peak,
                note=f"first call {data[0]['first_ms']:.0f} ms", times_ms=times,
            )
        )
        log(f"  linear_cross_entropy {name:<24} {ms:9.1f} ms  peak +{peak:.0f} MB")
    base = next((r.ms for r in results if r.implementation == "softgrad"), None)
    for r in results:
        r.vs_softgrad = None if base is None else r.ms / base
    return results


def first_call_latency(cold: bool = False) -> dict[str, float]:
    """Import and first-call times of a fresh process (``cold``: with an empty Numba cache)."""
    env = dict(os.environ)
    if cold:
        import tempfile

        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="softgrad-cold-")
    proc = subprocess.run(child_command("first_call"), capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr[-500:]}  # type: ignore[dict-item]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- goals (issue #5) -----------------------------------------------------------------------


def _goals(results: list[Result]) -> list[dict[str, Any]]:
    """Each goal of the issue, evaluated on the large float32 shapes measured."""
    goals: list[dict[str, Any]] = []
    by_key: dict[tuple, dict[str, Result]] = {}
    for r in results:
        by_key.setdefault((r.function, r.shape, r.dtype), {})[r.implementation] = r
    copies = {(r.shape, r.dtype): r for r in results if r.function == "copy"}
    def add(goal: str, value: float, met: bool) -> None:
        goals.append({"goal": goal, "value": round(value, 3), "met": bool(met)})

    for (fn, shape, dtype), impls in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        sgr = impls.get("softgrad")
        if sgr is None or dtype != "float32" or fn in ("copy", "linear_cross_entropy"):
            continue
        if (shape, dtype) in SHORT_SHAPES:  # issue #15's shapes have their own goals below
            continue
        label = f"{fn} {shape[0]}x{shape[1]}"
        if fn in ("softmax", "log_softmax"):
            best = max(sgr.copy_share or 0, (impls.get("softgrad out=") or sgr).copy_share or 0)
            add(f"{label}: >= 0.7 of copy bandwidth", best, best >= 0.7)
        if fn == "cross_entropy":  # np.copyto writes into a preallocated array: so may we
            ratio = min(sgr.ms, (impls.get("softgrad grad_out=") or sgr).ms) / copies[(shape, dtype)].ms
            add(f"{label}: fwd+bwd <= 1.6x copy time", ratio, ratio <= 1.6)
        if "scipy.special" in impls:
            sp = impls["scipy.special"].ms / sgr.ms
            add(f"{label}: >= 4x faster than scipy.special", sp, sp >= 4)
        torch_alloc = impls.get("torch") or impls.get("torch fwd+bwd")
        if torch_alloc is not None:
            tr = torch_alloc.ms / sgr.ms
            add(f"{label}: >= 1.5x faster than torch (allocating)", tr, tr >= 1.5)
    goals.extend(_short_row_goals(by_key))
    lin = {r.implementation: r for r in results if r.function == "linear_cross_entropy"}
    if "softgrad" in lin and "torch unfused" in lin:
        s, t = lin["softgrad"], lin["torch unfused"]
        add("linear_cross_entropy: time <= torch unfused (ratio)", s.ms / t.ms, s.ms <= t.ms)
        share = (s.peak_mb or 0.0) / max(t.peak_mb or 0.0, 1e-9)
        add("linear_cross_entropy: peak memory <= 1/8 of torch (ratio)", share, share <= 0.125)
    return goals


def _short_row_goals(by_key: dict[tuple, dict[str, Result]]) -> list[dict[str, Any]]:
    """Issue #15 on the few-classes shapes: softmax and cross-entropy (value and gradient) at
    least as fast as ``jax.jit`` and at least 1.5x faster than PyTorch (allocating calls)."""
    goals: list[dict[str, Any]] = []
    for shape, dtype in SHORT_SHAPES:
        for fn, jax_name, torch_name in (
            ("softmax", "jax.jit", "torch"),
            ("cross_entropy", "jax.jit fwd+bwd", "torch fwd+bwd"),
        ):
            impls = by_key.get((fn, shape, dtype), {})
            sgr = impls.get("softgrad")
            if sgr is None:
                continue
            label = f"{fn} {shape[0]}x{shape[1]} {dtype}"
            for peer, goal, bound in (
                (jax_name, "at least as fast as jax.jit", 1.0),
                (torch_name, ">= 1.5x faster than torch", 1.5),
            ):
                if peer in impls:
                    r = impls[peer].ms / sgr.ms
                    goals.append({"goal": f"{label}: {goal}", "value": round(r, 3), "met": r >= bound})
    return goals


def _environment() -> dict[str, Any]:
    import numba

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for lib in ("scipy", "torch", "jax"):
        mod = _optional(lib)
        if mod is not None:
            env[lib] = mod.__version__
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_bench(
    quick: bool = False,
    repeat: int | None = None,
    only: tuple[str, ...] | None = None,
    log: Callable[[str], None] = print,
    cold: bool = False,
    short: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; returns ``{"environment", "first_call", "results", "goals"}``.

    ``short``: only the few-classes shapes (:data:`SHORT_SHAPES`), no linear_cross_entropy.
    """
    functions = tuple(only) if only else FUNCTIONS
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown function(s) {unknown}; choose from {', '.join(FUNCTIONS)}")
    repeat = repeat if repeat is not None else (3 if quick else 5)
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    jax = _optional("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)  # float64 shapes in float64, as the others
    env = _environment()
    first = first_call_latency(cold=False)
    if cold:
        first["cold_compile"] = first_call_latency(cold=True)  # type: ignore[assignment]
    log(f"first call in a fresh process: {first}")
    results: list[Result] = []
    if short:
        functions = tuple(f for f in functions if f != "linear_cross_entropy")
    per_shape = tuple(f for f in functions if f != "linear_cross_entropy")
    if per_shape:
        for shape, dtype in QUICK_SHAPES if quick else SHORT_SHAPES if short else FULL_SHAPES:
            results.extend(_bench_shape(shape, dtype, per_shape, repeat, log))
    if "linear_cross_entropy" in functions:
        dims, small_chunk = (LINEAR_QUICK, 64) if quick else (LINEAR_FULL, 1024)
        results.extend(_bench_linear(dims, repeat, log, small_chunk))
    env["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "environment": env,
        "first_call": first,
        "results": [asdict(r) for r in results],
        "goals": _goals(results),
    }


def table(report: dict[str, Any]) -> Any:
    """The results as a Rich table."""
    from rich.table import Table

    t = Table(title="softgrad bench: median ms; GB/s of compulsory traffic; share of np.copyto bandwidth")
    for col in ("case", "function", "implementation"):
        t.add_column(col, no_wrap=True)
    for col in ("ms", "GB/s", "x copy", "vs softgrad", "peak MB"):
        t.add_column(col, justify="right", no_wrap=True)
    last = None
    for r in report["results"]:
        key = (tuple(r["shape"]), r["function"])
        if last is not None and key != last:
            t.add_section()
        last = key
        dt = {"float32": "f32", "float64": "f64"}.get(r["dtype"], r["dtype"])
        t.add_row(
            "x".join(str(s) for s in r["shape"]) + " " + dt,
            r["function"],
            r["implementation"],
            f"{r['ms']:.1f}",
            "" if r["gbps"] is None else f"{r['gbps']:.1f}",
            "" if r["copy_share"] is None else f"{r['copy_share']:.2f}",
            "" if r["vs_softgrad"] is None else f"{r['vs_softgrad']:.2f}",
            "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}",
        )
    return t


def goals_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="issue #5 goals")
    t.add_column("goal")
    t.add_column("measured", justify="right")
    t.add_column("met")
    for g in report["goals"]:
        t.add_row(g["goal"], str(g["value"]), "yes" if g["met"] else "NO")
    return t


def write_json(report: dict[str, Any], path: str) -> None:
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2, default=str)
        fh.write("\n")
