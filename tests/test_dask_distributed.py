"""SoftmaxRegression on a dask.distributed cluster: same answer, a killed worker, a driver that
never holds X (issue #6).

One ``LocalCluster(n_workers=2, processes=True)`` serves the module. The data are generated on
the workers, block by block, by a function seeded with the block index; it appends one line per
call to a log file, which shows when a block lost with a worker was made again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from softgrad import SoftmaxRegression  # noqa: E402

N_FEATURES, N_CLASSES = 6, 4


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=50,  # the killed worker's warnings are expected
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _source(log: Path | None) -> Callable[..., np.ndarray]:
    """A block generator (pickled by value to the workers); logs ``block pid`` per call."""

    def make_block(block_info: Any = None) -> np.ndarray:
        info = block_info[None]
        i = info["chunk-location"][0]
        if log is not None:
            with open(log, "a") as f:
                f.write(f"{i} {os.getpid()}\n")
        return np.random.default_rng([11, i]).standard_normal(info["chunk-shape"])

    return make_block


def _labels(x: np.ndarray) -> np.ndarray:
    W = np.random.default_rng(5).standard_normal((N_CLASSES, x.shape[1]))
    return np.argmax(x @ W.T + 0.7 * np.sin(37.0 * x[:, :N_CLASSES]), axis=1)


def _data(rows: int, chunk: int, features: int = N_FEATURES, log: Path | None = None) -> tuple[Any, Any]:
    chunks = ((chunk,) * (rows // chunk) + ((rows % chunk,) if rows % chunk else ()), (features,))
    X = da.map_blocks(_source(log), chunks=chunks, dtype=np.float64, meta=np.empty((0, 0)))
    y = X.map_blocks(_labels, drop_axis=1, dtype=np.intp)
    return X, y


def _fit(model: SoftmaxRegression, *args: Any, **kwargs: Any) -> SoftmaxRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(*args, **kwargs)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize(("solver", "chunk"), [("lbfgs", 350), ("newton-cg", 500)])
def test_same_answer_on_the_cluster(client: Any, solver: str, chunk: int) -> None:
    X, y = _data(2000, chunk)
    Xn, yn = dask.compute(X, y)
    ref = _fit(SoftmaxRegression(C=0.3, solver=solver, tol=1e-8), Xn, yn)
    model = _fit(SoftmaxRegression(C=0.3, solver=solver, tol=1e-8), X, y)
    assert _rel(model.coef_, ref.coef_) < 1e-6
    assert _rel(model.intercept_, ref.intercept_) < 1e-6
    assert abs(model.loss_curve_[-1] - ref.loss_curve_[-1]) <= 1e-8 * ref.loss_curve_[-1]
    # lazy predictions, computed on the workers, equal the in-memory ones
    proba = model.predict_proba(X)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(Xn), rtol=1e-6, atol=1e-12)
    assert model.score(X, y) == pytest.approx(ref.score(Xn, yn))


def _workers_holding(client: Any, prefix: str) -> dict[str, int]:
    """How many keys whose name starts with ``prefix`` each worker holds."""
    held = {}
    for addr, keys in client.has_what().items():
        held[addr] = sum(1 for k in keys if isinstance(k, tuple) and str(k[0]).startswith(prefix))
    return held


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg"])
def test_worker_killed_mid_fit(client: Any, tmp_path: Path, solver: str) -> None:
    """SIGKILL a worker holding persisted blocks after 3 iterations: same coefficients.

    lbfgs: bit for bit those of the same fit on the cluster without a kill; both solvers:
    those of the in-memory fit within 1e-6 (the issue's bound).
    """
    log = tmp_path / "blocks.log"
    n_blocks = 4
    X, y = _data(500 * n_blocks, 500, log=log)
    Xn, yn = dask.compute(X, y)
    ref = _fit(SoftmaxRegression(C=1.0, solver=solver), Xn, yn)
    quiet = _fit(SoftmaxRegression(C=1.0, solver=solver), X, y) if solver == "lbfgs" else None
    log.unlink(missing_ok=True)

    pids = client.run(os.getpid)
    killed: dict[str, Any] = {}

    def kill_at_third_iteration(iteration: int, objective: float) -> None:
        if iteration != 3:
            return
        held = _workers_holding(client, "make_block")
        victim = max(held, key=held.__getitem__)
        # which blocks it holds now: the scheduler may have moved some since they were made
        holding = {k[1] for k in client.has_what()[victim] if str(k[0]).startswith("make_block")}
        killed.update(address=victim, pid=pids[victim], blocks=held[victim], holding=holding)
        # a moment later: the kill lands while the next evaluation runs on the cluster
        threading.Timer(0.01, os.kill, (pids[victim], signal.SIGKILL)).start()

    model = _fit(SoftmaxRegression(C=1.0, solver=solver), X, y, callback=kill_at_third_iteration)

    assert killed and killed["blocks"] > 0  # the victim held persisted blocks
    if quiet is not None:
        np.testing.assert_array_equal(model.coef_, quiet.coef_)  # bit for bit: fixed-order sums
        np.testing.assert_array_equal(model.intercept_, quiet.intercept_)
    assert _rel(model.coef_, ref.coef_) < 1e-6
    assert abs(model.loss_curve_[-1] - ref.loss_curve_[-1]) <= 1e-8 * ref.loss_curve_[-1]
    assert model.n_iter_ == ref.n_iter_ and model.n_iter_ > 3
    # the lost blocks were made again, from the graph, by a process that is not the victim
    calls = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    first, later = calls[:n_blocks], calls[n_blocks:]  # persisted once before iteration 1...
    assert sorted(b for b, _ in first) == list(range(n_blocks))
    assert later  # ...and the lost ones made again: only blocks the victim held when it died
    assert {b for b, _ in later} <= killed["holding"]
    assert all(pid != killed["pid"] for _, pid in later)
    # the nanny brought a new worker process back
    client.wait_for_workers(2, timeout=30)
    assert killed["pid"] not in client.run(os.getpid).values()


def test_driver_never_holds_x(client: Any) -> None:
    """The driver's traced memory during a fit stays below the size of ONE block of X.

    X is 32 MB in 4 blocks of 8 MB, made on the workers. Gathering any block to the driver
    (what a hidden ``compute`` of X would do) peaks above 8 MB: the control below shows it.
    """
    rows, features, chunk = 160_000, 25, 40_000
    X, y = _data(rows, chunk, features)
    block_bytes = chunk * features * 8
    _fit(SoftmaxRegression(max_iter=1), X[:4000], y[:4000])  # imports and caches warm

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        model = _fit(SoftmaxRegression(max_iter=2), X, y)
        lazy = model.predict_proba(X).sum(axis=0).compute()
        _, peak_fit = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        X[:chunk].compute()  # the control: one block on the driver
        _, peak_block = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.n_iter_ >= 1 and lazy.shape == (N_CLASSES,)
    assert peak_block > block_bytes  # the measurement sees a block arrive
    assert peak_fit < block_bytes / 4, peak_fit


def test_command_line_on_the_scheduler(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``softgrad train DIR --dask --scheduler ADDRESS``: Parquet files read on the workers."""
    pytest.importorskip("pyarrow")
    from sklearn.datasets import load_wine

    from softgrad.interfaces.cli import main

    X, y = load_wine(return_X_y=True, as_frame=True)
    frame = ((X - X.mean()) / X.std()).assign(label=np.array(["barolo", "grignolino", "barbera"])[y])
    folder = tmp_path / "data"
    folder.mkdir()
    for i, rows in enumerate([slice(0, 70), slice(70, 121), slice(121, None)]):
        frame.iloc[rows].to_parquet(folder / f"part{i}.parquet")
    out = tmp_path / "model.sg"
    argv = ["train", str(folder), "--dask", "--scheduler", client.scheduler.address, "--target", "label"]
    code = main([*argv, "--test-size", "0", "--json", "--quiet", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    ref = SoftmaxRegression().fit(frame.drop(columns="label"), frame["label"])
    assert result["objective"] == pytest.approx(ref.loss_curve_[-1], rel=1e-8)
    np.testing.assert_allclose(SoftmaxRegression.load(out).coef_, ref.coef_, rtol=1e-6, atol=1e-8)
    assert client.status == "running"  # the command's own client is closed, the user's is not
