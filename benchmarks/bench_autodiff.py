"""Forward + backward through softgrad's autodiff adapters next to the libraries' own, on CPU.

* ``cross_entropy``: ``softgrad.torch.cross_entropy`` vs ``torch.nn.functional.cross_entropy``,
  and ``softgrad.jax.cross_entropy`` vs ``-mean(take(jax.nn.log_softmax(x), y))`` (the
  reference, jax.nn) and ``mean(optax.softmax_cross_entropy_with_integer_labels(x, y))`` (when
  optax is installed) under ``jit(value_and_grad)``, for (4096, 32000) and (65536, 10) float32
  logits, x64 off (int32 labels, JAX's default);
* ``linear_cross_entropy`` (8192 x 512 -> 32000 classes, float32): ``softgrad.torch`` vs
  ``F.linear`` + ``F.cross_entropy``, and ``softgrad.jax`` vs ``x @ W.T`` and jax.nn's formula
  under ``jit(value_and_grad)`` in ``x`` and ``W``.

Each implementation of each case runs in a fresh process (this file, ``--child``): a warm-up
call on a few rows (libraries loaded, kernels compiled), then one call whose peak memory is the
growth of the resident set (``VmHWM`` after the call, reset before it, minus ``VmRSS`` before
it), then timed calls. The processes take turns in rounds (round-robin), so a slow phase of a
shared machine lands on every implementation; the table gives the median over all rounds and
the load average. The peak memory of a JAX call is a caveat: XLA's allocator keeps freed
buffers, so the resident-set growth of a jitted call shows its first call's temporaries and
output (logits-sized buffers), not a steady state. A program that prints a table, not a timed
test:

    .venv/bin/python benchmarks/bench_autodiff.py            # every case, a few minutes
    .venv/bin/python benchmarks/bench_autodiff.py --quick    # small shapes, a smoke run
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # they slow current NumPy (ENVIRONMENT.md)
    os.environ.pop(_var, None)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

CASES = {  # name: (kind, library, shape)
    "ce torch 4096x32000": ("ce", "torch", (4096, 32000)),
    "ce torch 65536x10": ("ce", "torch", (65536, 10)),
    "ce jax 4096x32000": ("ce", "jax", (4096, 32000)),
    "ce jax 65536x10": ("ce", "jax", (65536, 10)),
    "linear torch 8192x512->32000": ("linear", "torch", (8192, 512, 32000)),
    "linear jax 8192x512->32000": ("linear", "jax", (8192, 512, 32000)),
}
QUICK = {"ce": [(512, 1000), (4096, 10)], "linear": (512, 64, 1000)}


# ----------------------------------------------------------------------------------------------
# the child: one implementation of one case


def _torch_ce(impl: str, x: Any, y: Any) -> Callable[[], Any]:
    import torch

    import softgrad.torch as sgt

    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.from_numpy(y)
    loss_fn = sgt.cross_entropy if impl == "softgrad" else torch.nn.functional.cross_entropy

    def run() -> Any:
        tx.grad = None
        loss = loss_fn(tx, ty)
        loss.backward()
        return loss, tx.grad

    return run


def _jax_ce(impl: str, x: Any, y: Any) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    import softgrad.jax as sgj

    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def reference(o: Any, t: Any) -> Any:
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o), t[:, None], axis=1))

    def with_optax(o: Any, t: Any) -> Any:
        import optax

        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(o, t))

    loss_fn = {"softgrad": sgj.cross_entropy, "optax": with_optax}.get(impl, reference)
    step = jax.jit(jax.value_and_grad(loss_fn))

    def run() -> Any:
        return jax.block_until_ready(step(jx, jy))

    return run


def _torch_linear(impl: str, x: Any, W: Any, y: Any) -> Callable[[], Any]:
    import torch

    import softgrad.torch as sgt

    tx = torch.from_numpy(x).requires_grad_(True)
    tW = torch.from_numpy(W).requires_grad_(True)
    ty = torch.from_numpy(y)
    F = torch.nn.functional

    def run() -> Any:
        tx.grad = tW.grad = None
        if impl == "softgrad":
            loss = sgt.linear_cross_entropy(tx, tW, ty)
        else:
            loss = F.cross_entropy(F.linear(tx, tW), ty)
        loss.backward()
        return loss, tx.grad, tW.grad

    return run


def _jax_linear(impl: str, x: Any, W: Any, y: Any) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    import softgrad.jax as sgj

    jx, jW, jy = jnp.asarray(x), jnp.asarray(W), jnp.asarray(y)

    def reference(o: Any, w: Any, t: Any) -> Any:
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(o @ w.T), t[:, None], axis=1))

    loss_fn = sgj.linear_cross_entropy if impl == "softgrad" else reference
    step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))

    def run() -> Any:
        return jax.block_until_ready(step(jx, jW, jy))

    return run


def _inputs(kind: str, shape: tuple[int, ...]) -> tuple[Any, ...]:
    rng = np.random.default_rng(0)
    if kind == "ce":
        rows, classes = shape
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(3)
        return x, rng.integers(0, classes, rows)
    rows, features, classes = shape
    x = rng.standard_normal((rows, features), dtype=np.float32)
    W = rng.standard_normal((classes, features), dtype=np.float32)
    W *= np.float32(1 / np.sqrt(features))
    return x, W, rng.integers(0, classes, rows)


def _make(kind: str, library: str, impl: str, arrays: tuple[Any, ...]) -> Callable[[], Any]:
    if kind == "linear":
        return (_torch_linear if library == "torch" else _jax_linear)(impl, *arrays)
    return (_torch_ce if library == "torch" else _jax_ce)(impl, *arrays)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def child(kind: str, library: str, impl: str, shape: tuple[int, ...], repeat: int) -> None:
    small = _inputs(kind, (8, *shape[1:]))
    _make(kind, library, impl, small)()  # libraries loaded, kernels compiled: not in the peak
    arrays = _inputs(kind, shape)
    run = _make(kind, library, impl, arrays)
    if library == "jax":
        run()  # jit compiles for this shape: not part of the timed calls (its peak is kept)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM
    except OSError:
        pass
    base = _status_kb("VmRSS")
    out = run()
    peak = _status_kb("VmHWM")
    del out
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"peak_mb": (peak - base) / 1024, "times_ms": times}))


def callback_cost(shape: tuple[int, int], repeat: int) -> None:
    """What a CPU kernel behind ``jax.pure_callback`` would pay before computing anything: the
    logits passed in (a callback returning a scalar), and in and out (returning a logits-sized
    array it keeps), next to one XLA pass that reads the logits and writes an array (``2 x``)."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(_inputs("ce", shape)[0])
    kept = np.ones(shape, np.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    full = jax.ShapeDtypeStruct(shape, jnp.float32)
    cases = {
        "XLA 2 * x": jax.jit(lambda o: 2 * o),
        "pure_callback in": jax.jit(lambda o: jax.pure_callback(lambda a: np.float32(0), scalar, o)),
        "pure_callback in+out": jax.jit(lambda o: jax.pure_callback(lambda a: kept, full, o)),
    }
    for name, fn in cases.items():
        jax.block_until_ready(fn(x))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x))
            times.append((time.perf_counter() - t0) * 1e3)
        print(f"{'x'.join(map(str, shape)):<12} {name:<22} {float(np.median(times)):>9.1f} ms")


# ----------------------------------------------------------------------------------------------
# the parent: rounds of fresh processes, a table


def _extra_references(kind: str, library: str) -> list[str]:
    """optax's integer-label cross-entropy beside jax.nn's formula, where optax is installed."""
    if library != "jax" or kind != "ce":
        return []
    import importlib.util

    return ["optax"] if importlib.util.find_spec("optax") is not None else []


def _run_child(kind: str, library: str, impl: str, shape: tuple[int, ...], repeat: int) -> dict | None:
    cmd = [sys.executable, __file__, "--child", kind, library, impl, ",".join(map(str, shape)), str(repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"  {kind} {library} {impl} {shape}: failed\n{proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per process and round")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--callback-cost", action="store_true",
                        help="only time jax.pure_callback's copies (why the kernel goes through XLA's FFI)")
    args = parser.parse_args()
    if args.callback_cost:
        print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}  (2 cores, shared)")
        for shape in [(4096, 32000), (65536, 10)]:
            callback_cost(shape, 5 * args.repeat)
        return
    cases = {k: v for k, v in CASES.items() if args.only in k}
    if args.quick:
        cases = {
            f"{kind} {lib} {'x'.join(map(str, shape))}": (kind, lib, shape)
            for kind, lib in (("ce", "torch"), ("ce", "jax"), ("linear", "torch"), ("linear", "jax"))
            for shape in (QUICK["ce"] if kind == "ce" else [QUICK["linear"]])
        }
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}  (2 cores, shared)")
    rows = []
    for name, (kind, library, shape) in cases.items():
        impls = ["softgrad", library, *_extra_references(kind, library)]
        data: dict[str, list[dict]] = {impl: [] for impl in impls}
        for _ in range(args.rounds):
            for impl in impls:
                result = _run_child(kind, library, impl, shape, args.repeat)
                if result is not None:
                    data[impl].append(result)
        stats = {}
        for impl, runs in data.items():
            if runs:
                times = [t for r in runs for t in r["times_ms"]]
                stats[impl] = (float(np.median(times)), max(r["peak_mb"] for r in runs), len(times))
        rows.append((name, stats, library))
        _print_rows(rows[-1:], header=len(rows) == 1)
    print(f"load average after:  {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _print_rows(rows: list, header: bool) -> None:
    if header:
        print(f"{'case':<30} {'implementation':<16} {'median ms':>10} {'n':>3} {'peak MB':>9} "
              f"{'speed-up':>9} {'memory':>8}")
    for name, stats, library in rows:
        base = stats.get(library)
        for impl, (ms, peak, n) in stats.items():
            speed = f"{base[0] / ms:.2f}x" if base else "-"
            mem = f"{peak / base[1]:.2f}" if base and base[1] > 0 else "-"
            label = {"softgrad": "softgrad", library: f"{library} (reference)"}.get(impl, impl)
            print(f"{name:<30} {label:<16} {ms:>10.1f} {n:>3} {peak:>9.0f} {speed:>9} {mem:>8}")
    sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, library, impl, shape_text, repeat = sys.argv[2:7]
        child(kind, library, impl, tuple(int(v) for v in shape_text.split(",")), int(repeat))
    else:
        main()
