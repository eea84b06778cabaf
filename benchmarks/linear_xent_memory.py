"""Peak memory of linear_cross_entropy with gradients vs the unfused computation.

    python benchmarks/linear_xent_memory.py                      # B=16384, N=1024, T=32000 float32
    python benchmarks/linear_xent_memory.py --B 2048 --T 8000    # a smaller case

Each variant runs in its own process on the same seeded inputs and reports the memory it needed
on top of its inputs:

* ``tracemalloc``: the peak of NumPy's allocations (NumPy reports them to tracemalloc) after the
  inputs exist; this counts the outputs (dx, dW, db: about the size of x and W) too;
* ``RSS``: the process's peak resident memory minus its resident memory once the inputs exist
  (the only measure that sees PyTorch's allocator).

Variants: ``fused`` (softgrad.linear_cross_entropy, default chunk), ``unfused`` (logits = x W^T + b,
softgrad.cross_entropy_value_and_grad on them, then the two products), ``torch`` (PyTorch CPU,
F.cross_entropy on the full logits and autograd) and ``sgt`` (softgrad.torch.linear_cross_entropy
and ``.backward()``, the autograd node), if PyTorch is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _inputs(B: int, N: int, T: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, N), dtype=np.float32)
    W = rng.standard_normal((T, N), dtype=np.float32) * np.float32(1.0 / np.sqrt(N))
    b = np.zeros(T, dtype=np.float32)
    y = rng.integers(0, T, size=B)
    return x, W, b, y


def _run(variant: str, B: int, N: int, T: int, chunk: int | None) -> dict:
    import numpy as np

    import softgrad as sg

    x, W, b, y = _inputs(B, N, T)
    if variant in ("torch", "sgt"):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        xt, Wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, W, b))
        yt = torch.from_numpy(y)
    sg.linear_cross_entropy(x[:4], W[:64], y[:4] % 64, b[:64], return_grad=True)  # load everything
    rss0 = _rss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    if variant == "fused":
        loss, grads = sg.linear_cross_entropy(x, W, y, b, chunk_size=chunk, return_grad=True)
    elif variant == "unfused":
        z = x @ W.T
        z += b
        loss, g = sg.cross_entropy_value_and_grad(z, y)
        del z
        grads = (g @ W, g.T @ x, g.sum(axis=0))
        del g
    elif variant == "sgt":
        import softgrad.torch as sgt

        lt = sgt.linear_cross_entropy(xt, Wt, yt, bt)
        lt.backward()
        loss = lt.item()
        grads = (xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy())
    else:
        lt = torch.nn.functional.cross_entropy(xt @ Wt.T + bt, yt)
        lt.backward()
        loss = lt.item()
        grads = (xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy())
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outputs = sum(int(np.asarray(a).nbytes) for a in grads)
    return {
        "variant": variant,
        "seconds": seconds,
        "tracemalloc_peak": peak if variant not in ("torch", "sgt") else None,
        "rss_extra": maxrss - rss0,
        "outputs": outputs,
        "loss": float(loss),
        "dW_norm": float(np.linalg.norm(grads[1])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=16384)
    parser.add_argument("--N", type=int, default=1024)
    parser.add_argument("--T", type=int, default=32000)
    parser.add_argument("--chunk-size", type=int, default=None, help="rows per chunk (default: softgrad's)")
    parser.add_argument("--variants", default="fused,unfused,torch,sgt")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run(args.child, args.B, args.N, args.T, args.chunk_size)))
        return 0

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    rows = []
    for variant in args.variants.split(","):
        if variant in ("torch", "sgt"):
            try:
                import torch  # noqa: F401
            except ImportError:
                continue
        cmd = [sys.executable, __file__, "--child", variant, "--B", str(args.B), "--N", str(args.N),
               "--T", str(args.T)]
        if args.chunk_size:
            cmd += ["--chunk-size", str(args.chunk_size)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{variant}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    from rich.console import Console
    from rich.table import Table

    logits = args.B * args.T * 4
    from softgrad.losses._linear_chunks import check_chunk_size

    chunk = args.chunk_size or check_chunk_size(None, args.T, 4)
    table = Table(
        title=f"linear cross-entropy with gradients, B={args.B} N={args.N} T={args.T} float32 "
        f"(full logits {logits / 2**20:.0f} MiB; fused chunk {chunk} rows = "
        f"{chunk * args.T * 4 / 2**20:.0f} MiB)"
    )
    for col in ("variant", "peak (tracemalloc)", "peak - outputs", "RSS growth", "time", "loss"):
        table.add_column(col, justify="right")
    mib = 2**20
    for r in rows:
        tm = r["tracemalloc_peak"]
        table.add_row(
            r["variant"],
            "-" if tm is None else f"{tm / mib:,.0f} MiB",
            "-" if tm is None else f"{(tm - r['outputs']) / mib:,.0f} MiB",
            f"{r['rss_extra'] / mib:,.0f} MiB",
            f"{r['seconds']:.1f} s",
            f"{r['loss']:.6f}",
        )
    Console().print(table)
    print(f"outputs (dx, dW, db): {rows[0]['outputs'] / mib:,.0f} MiB" if rows else "no results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
