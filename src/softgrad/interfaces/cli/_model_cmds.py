"""``softgrad train``, ``softgrad predict`` and ``softgrad plot``: SoftmaxRegression from a shell.

Data files are read with pandas (CSV) or pyarrow through pandas (Parquet). Every user error
(missing or empty file, missing target column, non-numeric or NaN features, a model that does
not match the columns, an unreadable model) is a :class:`CLIError`: one line, exit code 2, and
nothing written: models, predictions and plots go to a temporary file that is renamed into
place only when it is complete.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ...models._labels import check_two_classes
from ._common import CLIError, console, parse_numbers, print_json
from ._dask_opts import add_dask_options
from ._paths import check_input_file, check_model_path, check_output_file, check_output_folder, writing
from ._training import check_out_path, fit_with_progress, print_training, training_result

__all__ = ["register"]

DATASETS = ("digits", "iris", "wine", "breast_cancer")
SOLVERS = ("lbfgs", "newton-cg", "sgd")


def register(sub: Any) -> None:
    """Add ``train``, ``predict`` and ``plot`` to ``sub``."""
    p = sub.add_parser(
        "train",
        help="fit SoftmaxRegression on a CSV/Parquet file or a scikit-learn data set",
        description="Fit softgrad.SoftmaxRegression, print train/test accuracy and log-loss, "
        "and save the model at exactly the path given by --out (a file, or a folder when the "
        "path is a folder or ends with '/').",
    )
    p.add_argument("data", nargs="?", help="a .csv or .parquet file (or use --dataset)")
    p.add_argument("--dataset", choices=DATASETS, help="a data set that ships with scikit-learn")
    p.add_argument("--target", help="the label column of DATA")
    p.add_argument("--solver", choices=SOLVERS, default="newton-cg")
    p.add_argument(
        "--C", dest="C", type=_positive_float("--C"), default=1.0, help="inverse penalty (inf: none)"
    )
    p.add_argument(
        "--test-size", type=_fraction, default=0.2, help="held-out fraction in [0, 1) (default 0.2)"
    )
    p.add_argument(
        "--max-iter", type=_positive_int("--max-iter"), default=1000, help="iterations (epochs for sgd)"
    )
    p.add_argument("--tol", type=_positive_float("--tol"), default=None, help="stopping tolerance")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="training dtype")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the split and of sgd (0 to 2**32 - 1)")
    p.add_argument("--out", required=True, help="where to save the model")
    p.add_argument("--plots", metavar="DIR", help="write loss curve, confusion matrix, probability histogram")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    add_dask_options(p)  # --dask, --scheduler: fit on a Dask cluster (issue #6)

    p = sub.add_parser("predict", help="predict with a model saved by 'softgrad train'")
    p.add_argument("model", help="the model file or folder")
    p.add_argument("data", help="a .csv or .parquet file with the model's feature columns")
    p.add_argument("--proba", action="store_true", help="also write the probability of each class")
    p.add_argument("--out", help="write CSV here (default: standard output)")
    p.set_defaults(func=_predict)

    p = sub.add_parser("plot", help="plot softmax at several temperatures and its Jacobian (PNG)")
    p.add_argument("kind", choices=("softmax",), help="what to plot")
    p.add_argument("logits", nargs="+", help="the numbers, e.g. 1 2 3")
    p.add_argument("--temperatures", "-t", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.set_defaults(func=_plot)


# ------------------------------------------------------------------------- argument types
def _positive_float(name: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        if not value > 0 or math.isnan(value):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value

    return parse


def _positive_int(name: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not an integer") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {text!r}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed: {text!r} is not an integer") from None
    if not 0 <= value < 2**32:  # what NumPy's legacy seeding, used by scikit-learn, accepts
        raise argparse.ArgumentTypeError(f"--seed must be in [0, 2**32 - 1], got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--test-size: {text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"--test-size must be in [0, 1), got {text!r}")
    return value


# ------------------------------------------------------------------------------ reading data
def read_table(path: str) -> Any:
    """A DataFrame from a CSV or Parquet file, or a CLIError saying why not."""
    import pandas as pd

    check_input_file(path)
    p = Path(path)
    if p.stat().st_size == 0:
        raise CLIError(f"{path}: the file is empty")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                df = pd.read_parquet(p)
            except ImportError as exc:
                raise CLIError(
                    f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {exc}"
                ) from None
        else:
            sep = "\t" if suffix == ".tsv" else ","
            _check_header(pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str), path)
            df = pd.read_csv(p, sep=sep)
    except CLIError:
        raise
    except pd.errors.EmptyDataError:
        raise CLIError(f"{path}: the file is empty") from None
    except Exception as exc:  # the readers raise many types (ParserError, ArrowInvalid, ...)
        raise CLIError(f"{path}: cannot read it as {suffix.lstrip('.') or 'CSV'}: {exc}") from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise CLIError(f"{path}: the file has no data rows")
    df.columns = [str(c) for c in df.columns]
    return df


def _check_header(first_row: Any, path: str) -> None:
    """CLIError for a header naming a column twice: pandas would rename the second ``label`` to
    ``label.1``, and a duplicated target would become a feature (the label leaks into X)."""
    from collections import Counter

    names = [str(v) for v in first_row.iloc[0].tolist()] if first_row.shape[0] else []
    dups = sorted(name for name, count in Counter(names).items() if count > 1)
    if dups:
        raise CLIError(f"{path}: the header names columns more than once: {dups}; rename them")


def check_features(df: Any, source: str) -> None:
    """CLIError for non-numeric columns or NaN in ``df`` (the feature columns)."""
    import pandas as pd

    bad = [
        c
        for c in df.columns
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    if bad:
        raise CLIError(f"{source}: non-numeric feature columns {bad}; encode them as numbers first")
    counts = df.isna().sum()
    nan_cols = {str(c): int(n) for c, n in counts.items() if n}
    if nan_cols:
        raise CLIError(
            f"{source}: NaN in feature columns (column: count) {nan_cols}; fill or drop them first"
        )
    values = df.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)):
        cols = [str(c) for c, ok in zip(df.columns, np.isfinite(values).all(axis=0), strict=True) if not ok]
        raise CLIError(f"{source}: infinite values in feature columns {cols}")


def _load_training_data(args: argparse.Namespace) -> tuple[Any, Any, str]:
    if args.dataset and args.data:
        raise CLIError("give DATA or --dataset, not both")
    if args.dataset:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{args.dataset}")(as_frame=True)
        return bunch.data, bunch.target, args.dataset
    if not args.data:
        raise CLIError("give DATA (a .csv or .parquet file) or --dataset NAME")
    if not args.target:
        raise CLIError("--target COLUMN is required with DATA")
    df = read_table(args.data)
    if args.target not in df.columns:
        raise CLIError(f"{args.data}: no target column {args.target!r}; columns are {list(df.columns)}")
    y = df[args.target]
    if y.isna().any():
        raise CLIError(
            f"{args.data}: the target column {args.target!r} has {int(y.isna().sum())} missing values"
        )
    X = df.drop(columns=[args.target])
    if X.shape[1] == 0:
        raise CLIError(f"{args.data}: no feature columns besides the target {args.target!r}")
    check_features(X, args.data)
    return X, y, args.data


# ----------------------------------------------------------------------------------- train
def _split(X: Any, y: Any, test_size: float, seed: int) -> tuple[Any, Any, Any, Any]:
    if test_size == 0:
        return X, None, y, None
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    except ValueError:  # a class too small to stratify: split at random instead
        try:
            return train_test_split(X, y, test_size=test_size, random_state=seed)
        except ValueError as exc:
            raise CLIError(f"--test-size {test_size}: {exc}") from None


def metrics(model: Any, X: Any, y: Any) -> dict[str, float]:
    """Accuracy and log-loss (``-mean log p(true class)``, from ``predict_log_proba``).

    A label the model never saw counts as wrong and has probability 0 (log-loss ``inf``).
    """
    logp = model.predict_log_proba(X)
    index = {c: j for j, c in enumerate(model.classes_.tolist())}
    labels = np.asarray(y).tolist()
    idx = np.array([index.get(v, -1) for v in labels], dtype=np.intp)
    rows = np.arange(idx.size)
    true_logp = np.where(idx >= 0, logp[rows, np.maximum(idx, 0)], -np.inf)
    return {
        "accuracy": float(np.mean(np.argmax(logp, axis=1) == idx)),
        "log_loss": float(-np.mean(true_logp, dtype=np.float64)),
    }


def _train(args: argparse.Namespace) -> int:
    check_out_path(args.out, inputs=[args.data])
    if args.plots:
        check_output_folder(args.plots, "--plots", inputs=[args.data])
        _require_matplotlib("--plots")
    X, y, source = _load_training_data(args)
    if args.dtype == "float32":
        X = X.astype(np.float32)
    check_two_classes(np.unique(np.asarray(y)), source)
    X_train, X_test, y_train, y_test = _split(X, y, args.test_size, args.seed)

    model, fit_time = fit_with_progress(args, X_train, y_train, source)
    result = training_result(args, source, model, fit_time, len(y_train), metrics(model, X_train, y_train))
    if y_test is not None:
        result["test"], result["n_test"] = metrics(model, X_test, y_test), len(y_test)
    with writing("--out", args.out):
        model.save(args.out)
    result["model"] = args.out
    if args.plots:
        from .. import plots

        X_eval, y_eval = (X_test, y_test) if y_test is not None else (X_train, y_train)
        with writing("--plots", args.plots):
            result["plots"] = [str(p) for p in plots.training_plots(model, X_eval, y_eval, args.plots)]
    if args.json:
        print_json(result)
        return 0
    print_training(result)
    return 0


# --------------------------------------------------------------------------------- predict
def _load_model(path: str) -> Any:
    from ...models import SoftmaxRegression

    check_model_path(path)
    try:
        return SoftmaxRegression.load(path)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _feature_frame(model: Any, df: Any, source: str) -> Any:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        missing = [str(c) for c in names if c not in df.columns]
        if missing:
            raise CLIError(
                f"{source}: the model needs columns that the data lacks: {missing[:10]}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            )
        X = df[list(names)]
    else:
        X = df
        if X.shape[1] != model.n_features_in_:
            raise CLIError(
                f"{source}: the model expects {model.n_features_in_} feature columns, got {X.shape[1]}"
            )
    check_features(X, source)
    return X.astype(model.coef_.dtype)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    from ...models._persist import atomic_write

    if not Path(path).parent.is_dir():
        raise CLIError(f"--out: folder {str(Path(path).parent)!r} does not exist")
    with writing("--out", path):
        atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.out:
        check_output_file(args.out, "--out", inputs=[args.model, args.data])
    check_input_file(args.data)
    model = _load_model(args.model)
    df = read_table(args.data)
    X = _feature_frame(model, df, args.data)
    logp = model.predict_log_proba(X)
    out = pd.DataFrame({"prediction": model.classes_[np.argmax(logp, axis=1)]})
    if args.proba:
        proba = np.exp(logp)
        for j, c in enumerate(model.classes_):
            out[f"proba_{c}"] = proba[:, j]
    text = out.to_csv(index=False)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


# ------------------------------------------------------------------------------------ plot
def _require_matplotlib(option: str) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError(f"{option} needs matplotlib: pip install 'softgrad[plot]'")


def _plot(args: argparse.Namespace) -> int:
    x = parse_numbers(args.logits)
    temps = [float(t) for t in args.temperatures]
    bad = [t for t in temps if not (t > 0 and math.isfinite(t))]
    if bad:
        raise CLIError(f"--temperatures must be finite and > 0, got {bad}")
    if not args.out.lower().endswith(".png"):
        raise CLIError(f"--out must name a .png file, got {args.out!r}")
    check_output_file(args.out, "--out")
    _require_matplotlib("plot")
    from .. import plots

    with writing("--out", args.out):
        plots.plot_softmax_temperatures(x, temps, args.out)
    console().print(f"plot written: {args.out}")
    return 0
