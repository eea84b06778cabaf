"""Child of ``softgrad bench``: time and peak memory of one linear_cross_entropy implementation.

Arguments: ``impl B N T repeat chunk`` (``impl`` is ``softgrad`` or ``torch``; ``chunk`` 0 means
the default). Prints ``{"peak_mb", "times_ms", "first_ms"}`` as one JSON line. Peak memory is
the growth of the process's resident set over its inputs, measured from a warm state (libraries
loaded, kernels compiled) with the high-water mark reset just before the call.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _implementation(impl: str, chunk: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(run, wrap)``: the call to time, and what turns NumPy inputs into its arguments."""
    if impl == "softgrad":
        import softgrad as sg

        def run(x: Any, W: Any, b: Any, y: Any) -> Any:
            return sg.linear_cross_entropy(x, W, y, b, return_grad=True, chunk_size=chunk or None)

        return run, lambda *a: a
    import torch

    def run_torch(x: Any, W: Any, b: Any, y: Any) -> Any:
        lx, lW, lb = (t.detach().requires_grad_(True) for t in (x, W, b))
        loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(lx, lW, lb), y)
        loss.backward()
        return loss, (lx.grad, lW.grad, lb.grad)

    return run_torch, lambda *a: tuple(torch.from_numpy(v) for v in a)


def status_kb(key: str) -> int:
    """VmRSS: resident now; VmHWM: the high-water mark of this process image."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def _reset_peak() -> None:
    try:  # reset the high-water mark (Linux >= 4.0); ru_maxrss would keep the parent's at fork
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def main() -> None:
    impl, (B, N, T, repeat, chunk) = sys.argv[1], map(int, sys.argv[2:7])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, N), dtype=np.float32)
    W = rng.standard_normal((T, N), dtype=np.float32)
    W *= np.float32(1 / np.sqrt(N))  # in place: no temporary raises the baseline
    b = np.zeros(T, dtype=np.float32)
    y = rng.integers(0, T, B)
    run, wrap = _implementation(impl, chunk)
    args = wrap(x, W, b, y)
    run(*wrap(x[:8], W, b, y[:8]))  # libraries loaded, kernels compiled: not part of the peak
    _reset_peak()
    base = status_kb("VmRSS")
    t0 = time.perf_counter()
    out = run(*args)
    first = time.perf_counter() - t0
    peak = status_kb("VmHWM")
    del out
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(*args)
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"peak_mb": (peak - base) / 1024, "times_ms": times, "first_ms": first * 1e3}))


if __name__ == "__main__":
    main()
