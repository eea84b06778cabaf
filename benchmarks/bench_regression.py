"""Fit time and objective reached: SoftmaxRegression's solvers next to scikit-learn's lbfgs.

Two data sets, every solver in one run:

* ``digits``: scikit-learn's 1797 x 64 digits, pixels / 16, float64, 10 classes;
* ``synthetic``: 200000 x 100 float32, 20 classes, labels drawn from a random linear softmax
  model (seeded; Gumbel-max sampling), so the classes overlap and the optimum is finite.

Every model minimizes ``C * sum_i CE_i + 0.5 ||W||^2`` (C = 1); the objective in the table is
recomputed for all of them the same way, in float64 with SciPy's ``logsumexp``. scikit-learn is
run at its default ``tol=1e-4`` and at softgrad's default ``tol=1e-8``. A program that prints a
table, not a timed test:

    .venv/bin/python benchmarks/bench_regression.py              # both sets, a few minutes
    .venv/bin/python benchmarks/bench_regression.py --rows 20000  # a quick check

The machine is shared: run the full size once.
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


def run(name: str, model: Any, X: Any, y: Any) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
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


def bench(title: str, X: Any, y: Any, sgd_epochs: int) -> None:
    from sklearn.linear_model import LogisticRegression

    from softgrad.models import SoftmaxRegression

    print(f"\n## {title}: {X.shape[0]} x {X.shape[1]} {X.dtype}, {np.unique(y).size} classes, C = {C:g}")
    candidates = [
        ("softgrad lbfgs", SoftmaxRegression(C=C, solver="lbfgs")),
        ("softgrad newton-cg", SoftmaxRegression(C=C, solver="newton-cg")),
        ("softgrad sgd", SoftmaxRegression(C=C, solver="sgd", max_iter=sgd_epochs, random_state=0)),
        ("sklearn lbfgs tol=1e-4", LogisticRegression(C=C, max_iter=10_000)),
        ("sklearn lbfgs tol=1e-8", LogisticRegression(C=C, tol=1e-8, max_iter=10_000)),
    ]
    rows = []
    for name, model in candidates:
        rows.append(run(name, model, X, y))
        r = rows[-1]
        print(f"   ... {name}: {r['seconds']:.2f} s", flush=True)
    best = min(r["objective"] for r in rows)
    cols = f"| {'solver':<24} | {'fit time':>9} | {'iters':>6} | {'objective':>18} | {'minus best':>10} |"
    header = cols + f" {'train acc':>9} | {'coef dtype':>10} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        iters = f"{r['n_iter']}{'' if r['converged'] else '*'}"
        print(
            f"| {r['solver']:<24} | {r['seconds']:>7.2f} s | {iters:>6} | {r['objective']:>18.8f} | "
            f"{r['objective'] - best:>10.2e} | {r['accuracy']:>9.4f} | {r['dtype']:>10} |"
        )
    print("(* did not reach its tol within max_iter; sgd: epochs, a fixed budget)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic set")
    parser.add_argument("--only", choices=("digits", "synthetic"), help="run one data set")
    parser.add_argument("--sgd-epochs", type=int, default=10, help="epochs for sgd on the synthetic set")
    args = parser.parse_args()

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
        bench("digits (pixels / 16)", X, y, sgd_epochs=50)
    if args.only in (None, "synthetic"):
        X, y = synthetic(args.rows)
        bench("synthetic", X, y, sgd_epochs=args.sgd_epochs)


if __name__ == "__main__":
    main()
