"""Scale benchmark: SoftmaxRegression fitted on a two-worker Dask LocalCluster.

A synthetic float32 set (default 10^7 rows x 100 features, 20 classes) is generated block by
block ON THE WORKERS (``dask.array.random`` with a seed for X, ``map_blocks`` seeded by the block
index for the labels), persisted there, and fitted with L-BFGS for a few iterations. Printed:
seconds per objective+gradient evaluation, peak memory (max RSS) of each worker and of the
driver, and the ratio to the in-memory fit of the first 10^6 rows (same solver, same number of
iterations). A program that prints a table, not a timed test:

    .venv/bin/python benchmarks/bench_dask.py                      # the full run, a few minutes
    .venv/bin/python benchmarks/bench_dask.py --rows 200000 --subset 100000   # a quick check

The machine is shared: run the full size once.
"""

from __future__ import annotations

import os

# Measured here (shared/ENVIRONMENT.md): these two variables slow current NumPy; unset them
# before NumPy loads, in this process and so in the workers it starts.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


def _labels(x: np.ndarray, W: np.ndarray, block_id: Any = None) -> np.ndarray:
    """Labels of one block: argmax of ``x W^T`` plus Gumbel noise seeded by the block index."""
    rng = np.random.default_rng([7, block_id[0]])
    z = x.astype(np.float64) @ W.T
    return np.argmax(z + rng.gumbel(size=z.shape), axis=1).astype(np.int32)


def make_data(rows: int, features: int, classes: int, chunk: int, seed: int) -> tuple[Any, Any]:
    """Lazy X (float32) and y; nothing is generated until the workers compute the blocks."""
    import dask.array as da

    W_true = np.random.default_rng(seed).standard_normal((classes, features)) * (2.0 / np.sqrt(features))
    X = da.random.default_rng(seed).standard_normal(
        (rows, features), chunks=(chunk, features), dtype=np.float32
    )
    y = X.map_blocks(_labels, W_true, drop_axis=1, dtype=np.int32)
    return X, y


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


class _Timed:
    """Wraps ``value_and_grad`` of objectives of one class to record each call's duration."""

    def __init__(self, cls: Any) -> None:
        self.cls, self.times = cls, []  # type: ignore[var-annotated]
        self._orig = cls.value_and_grad

    def __enter__(self) -> _Timed:
        orig, times = self._orig, self.times

        def timed(obj: Any, w: np.ndarray) -> Any:
            t0 = time.perf_counter()
            out = orig(obj, w)
            times.append(time.perf_counter() - t0)
            return out

        self.cls.value_and_grad = timed
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cls.value_and_grad = self._orig


def _fit(X: Any, y: Any, objective_cls: Any, max_iter: int) -> tuple[Any, list[float], float]:
    from softgrad import SoftmaxRegression

    model = SoftmaxRegression(C=1.0, solver="lbfgs", max_iter=max_iter, tol=1e-12)
    with _Timed(objective_cls) as timed, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter is small on purpose: no ConvergenceWarning
        t0 = time.perf_counter()
        model.fit(X, y)
        total = time.perf_counter() - t0
    return model, timed.times, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per block")
    parser.add_argument("--subset", type=int, default=1_000_000, help="rows of the in-memory fit")
    parser.add_argument("--max-iter", type=int, default=10, help="L-BFGS iterations of each fit")
    parser.add_argument("--memory-limit", default="9GiB", help="per worker")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import dask
    from distributed import Client, LocalCluster, wait

    from softgrad.models._dask import DaskObjective
    from softgrad.models._objective import ArrayObjective

    gb = args.rows * args.features * 4 / 1e9
    print(
        f"data: {args.rows:,} x {args.features} float32 ({gb:.1f} GB), {args.classes} classes, "
        f"blocks of {args.chunk:,} rows; lbfgs max_iter={args.max_iter}"
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        X, y = make_data(args.rows, args.features, args.classes, args.chunk, args.seed)
        t0 = time.perf_counter()
        X, y = dask.persist(X, y)
        wait([X, y])  # generated on the workers
        t_gen = time.perf_counter() - t0
        model, times, t_fit = _fit(X, y, DaskObjective, args.max_iter)
        worker_rss = client.run(_peak_rss_mb)
        driver_rss = _peak_rss_mb()
        # the same subset on the cluster, to separate Dask's overhead from the size
        Xs, ys = X[: args.subset], y[: args.subset]
        _, times_small, _ = _fit(Xs, ys, DaskObjective, args.max_iter)
        Xs_np, ys_np = dask.compute(Xs, ys)  # the subset only, for the in-memory reference
        del X, y
    _, times_mem, t_mem = _fit(Xs_np, ys_np, ArrayObjective, args.max_iter)

    per_eval = float(np.median(times))
    per_eval_small = float(np.median(times_small))
    per_eval_mem = float(np.median(times_mem))
    rows = [
        ("generate + persist on the workers (s)", f"{t_gen:.2f}"),
        (
            f"Dask fit, {args.rows:,} rows: evaluations",
            f"{len(times)} in {t_fit:.1f} s (incl. one pass for classes)",
        ),
        (
            "  s per objective+gradient (median)",
            f"{per_eval:.3f}  (min {min(times):.3f}, max {max(times):.3f})",
        ),
        ("  rows per second", f"{args.rows / per_eval:,.0f}"),
        ("  final objective", f"{model.loss_curve_[-1]:.6g}"),
        ("peak RSS per worker (MB)", ", ".join(f"{v:,.0f}" for v in worker_rss.values())),
        ("peak RSS of the driver (MB)", f"{driver_rss:,.0f}"),
        (f"Dask fit, {args.subset:,} rows: s per evaluation", f"{per_eval_small:.3f}"),
        (
            f"in-memory fit, {args.subset:,} rows: s per evaluation",
            f"{per_eval_mem:.3f} ({len(times_mem)} in {t_mem:.1f} s)",
        ),
        (
            f"ratio Dask {args.rows:,} / in-memory {args.subset:,} (s per eval)",
            f"{per_eval / per_eval_mem:.2f}",
        ),
        (
            "ratio of throughput (rows/s), Dask / in-memory",
            f"{(args.rows / per_eval) / (args.subset / per_eval_mem):.2f}",
        ),
        (
            f"ratio Dask / in-memory at {args.subset:,} rows (overhead)",
            f"{per_eval_small / per_eval_mem:.2f}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
