"""``softgrad train --dask [--scheduler ADDRESS]``: fit on a folder of Parquet/CSV files with Dask.

The files are read with ``dask.dataframe`` (never with pandas on the driver), persisted once on
the workers of the scheduler given (``--scheduler tcp://host:8786``) or of Dask's local threaded
scheduler, and fitted by :class:`~softgrad.SoftmaxRegression`'s Dask path with a progress bar per
iteration. Metrics (accuracy, log-loss) are computed on the workers; the model saved is an
ordinary in-memory model. A scheduler that cannot be reached, a missing target column,
non-numeric features or NaN: one error line, exit code 2, nothing written.

``add_dask_options`` is called once by ``_model_cmds.register`` on the ``train`` parser.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._common import CLIError, print_json
from ._training import check_out_path, fit_with_progress, print_training, training_result

__all__ = ["connect", "dask_metrics", "read_files"]

_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv"}


def add_dask_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--dask``, ``--scheduler`` and ``--scheduler-timeout`` to the ``train`` parser.

    With ``--dask`` the parser's handler becomes :func:`_train_dask`; without it, the handler
    set before this call runs as it did.
    """
    group = parser.add_argument_group("Dask (data larger than memory)")
    group.add_argument(
        "--dask",
        action="store_true",
        help="DATA is a folder (or file, or glob) of Parquet or CSV files, read with dask.dataframe; "
        "fit on the Dask workers",
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running dask.distributed scheduler, e.g. tcp://10.0.0.5:8786 (default with --dask: "
        "Dask's local threaded scheduler)",
    )
    group.add_argument(
        "--scheduler-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to try to reach --scheduler (default 10)",
    )
    in_memory = parser.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        if args.dask:
            return _train_dask(args)
        if args.scheduler:
            raise CLIError("--scheduler needs --dask")
        return int(in_memory(args) or 0)

    parser.set_defaults(func=dispatch)


# ---------------------------------------------------------------------------------- cluster
@contextlib.contextmanager
def connect(address: str | None, timeout: float = 10.0) -> Iterator[Any]:
    """A ``distributed.Client`` to ``address`` for the ``with`` block (None: no client).

    Raises CLIError, one line, when the scheduler cannot be reached within ``timeout`` seconds.
    """
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise CLIError("--scheduler needs dask.distributed: pip install 'softgrad[dask]'") from None
    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=True)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(f"--scheduler: cannot reach the Dask scheduler at {address}: {reason}") from None
    try:
        yield client
    finally:
        client.close()


# ------------------------------------------------------------------------------------- data
def read_files(path: str) -> Any:
    """A Dask DataFrame over the Parquet or CSV files at ``path`` (folder, file or glob)."""
    try:
        import dask.dataframe as dd
    except ImportError:
        raise CLIError("--dask needs dask: pip install 'softgrad[dask]'") from None
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _SUFFIXES)
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in _glob(path))
    if not files:
        raise CLIError(f"{path}: no .parquet or .csv files there")
    kinds = {_SUFFIXES.get(f.suffix.lower()) for f in files}
    if None in kinds or len(kinds) > 1:
        raise CLIError(f"{path}: give Parquet files or CSV files, not {sorted(map(str, kinds))}")
    empty = [str(f) for f in files if f.stat().st_size == 0]
    if empty:
        raise CLIError(f"{empty[0]}: the file is empty")
    names = [str(f) for f in files]
    try:
        if kinds == {"parquet"}:
            df = dd.read_parquet(names)
        else:
            sep = "\t" if files[0].suffix.lower() == ".tsv" else ","
            df = dd.read_csv(names, sep=sep, assume_missing=True)
    except ImportError as exc:
        raise CLIError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {exc}") from None
    except Exception as exc:  # the readers raise many types (ParserError, ArrowInvalid, ...)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(f"{path}: cannot read it: {first}") from None
    if len(df.columns) == 0:
        raise CLIError(f"{path}: the files have no columns")
    return df.rename(columns={c: str(c) for c in df.columns})


def _glob(pattern: str) -> list[str]:
    import glob

    return [f for f in glob.glob(pattern) if Path(f).is_file()]


def _split_columns(df: Any, target: str | None, source: str) -> tuple[Any, Any]:
    import pandas as pd

    if not target:
        raise CLIError("--target COLUMN is required with DATA")
    if target not in df.columns:
        raise CLIError(f"{source}: no target column {target!r}; columns are {list(df.columns)}")
    X = df.drop(columns=[target])
    if len(X.columns) == 0:
        raise CLIError(f"{source}: no feature columns besides the target {target!r}")
    bad = [
        str(c)
        for c, t in X.dtypes.items()
        if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))
    ]
    if bad:
        raise CLIError(f"{source}: non-numeric feature columns {bad}; encode them as numbers first")
    return X, df[target]


def _check_values(X: Any, y: Any, source: str, target: str) -> None:
    """One pass over the persisted partitions: NaN in the target or the features."""
    import dask

    y_missing, x_missing = dask.compute(y.isna().sum(), X.isna().sum())
    if int(y_missing):
        raise CLIError(f"{source}: the target column {target!r} has {int(y_missing)} missing values")
    nan_cols = {str(c): int(n) for c, n in x_missing.items() if n}
    if nan_cols:
        raise CLIError(
            f"{source}: NaN in feature columns (column: count) {nan_cols}; fill or drop them first"
        )


# ------------------------------------------------------------------------------- metrics
def _true_class_block(logp: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per row: ``[correct, log p(true class)]``; a label the model never saw is wrong, -inf."""
    y = y[:, 0]
    idx = np.searchsorted(classes, y)
    idx = np.minimum(idx, classes.size - 1)
    known = classes[idx] == y
    rows = np.arange(y.shape[0])
    true = np.where(known, logp[rows, idx], -np.inf)
    correct = known & (np.argmax(logp, axis=1) == idx)
    return np.stack([correct.astype(np.float64), true.astype(np.float64)], axis=1)


def dask_metrics(model: Any, X: Any, y: Any) -> tuple[dict[str, float], int]:
    """Accuracy and log-loss on Dask data and the row count, one pass on the workers.

    The same numbers as ``_model_cmds.metrics`` computes in memory.
    """
    import warnings

    import dask
    import dask.array as da

    Xa = X.to_dask_array(lengths=True)
    with warnings.catch_warnings():  # string labels become an object array: expected here
        warnings.filterwarnings("ignore", "Dask currently has limited support", UserWarning)
        ya = y.to_dask_array(lengths=Xa.chunks[0])
    logp = model.predict_log_proba(Xa)
    per_row = da.map_blocks(
        _true_class_block,
        logp,
        ya[:, None],
        dask.delayed(model.classes_),
        chunks=(Xa.chunks[0], (2,)),
        meta=np.empty((0, 0), dtype=np.float64),
    )
    means, n = dask.compute(per_row.mean(axis=0), Xa.shape[0])
    return {"accuracy": float(means[0]), "log_loss": float(-means[1])}, int(n)


# ---------------------------------------------------------------------------------- train
def _train_dask(args: argparse.Namespace) -> int:
    if args.dataset:
        raise CLIError("--dask reads DATA (a folder of Parquet or CSV files), not --dataset")
    if not args.data:
        raise CLIError("give DATA: a folder of .parquet or .csv files")
    if args.plots:
        raise CLIError("--plots is not available with --dask (plots need the rows in memory)")
    check_out_path(args.out, inputs=[args.data])
    with connect(args.scheduler, args.scheduler_timeout):
        return _fit_and_report(args)


def _fit_and_report(args: argparse.Namespace) -> int:
    import dask

    source = args.data
    df = read_files(source)
    X, y = _split_columns(df, args.target, source)
    if args.dtype == "float32":
        X = X.astype(np.float32)
    X, y = dask.persist(X, y)  # read once; every later pass works on the workers' copies
    _check_values(X, y, source, args.target)
    if args.test_size > 0:
        frame = X.assign(**{"__softgrad_target__": y})
        train, test = frame.random_split([1.0 - args.test_size, args.test_size], random_state=args.seed)
        X_train, y_train = train.drop(columns=["__softgrad_target__"]), train["__softgrad_target__"]
        X_test, y_test = test.drop(columns=["__softgrad_target__"]), test["__softgrad_target__"]
    else:
        X_train, y_train, X_test, y_test = X, y, None, None

    model, fit_time = fit_with_progress(args, X_train, y_train, source)
    train_metrics, n_train = dask_metrics(model, X_train, y_train)
    result = training_result(args, source, model, fit_time, n_train, train_metrics)
    if X_test is not None:
        result["test"], result["n_test"] = dask_metrics(model, X_test, y_test)
    model.save(args.out)
    result["model"] = args.out
    if args.json:
        print_json(result)
        return 0
    print_training(result)
    return 0
