"""``softgrad train --dask`` end to end under the local scheduler (issue #6).

With ``--scheduler`` on a running cluster: ``test_dask_distributed.py``.

The oracle is the in-memory fit of the same rows (the files concatenated with pandas) and the
in-memory ``softgrad train`` on one file holding them all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")

from sklearn.datasets import load_wine  # noqa: E402

from softgrad import SoftmaxRegression  # noqa: E402
from softgrad.interfaces.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def frame() -> Any:
    X, y = load_wine(return_X_y=True, as_frame=True)
    X = (X - X.mean()) / X.std()
    return X.assign(label=np.array(["barolo", "grignolino", "barbera"])[y])


@pytest.fixture(scope="module")
def folders(frame: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dask_cli")
    out = {"parquet": root / "pq", "csv": root / "csv"}
    for p in out.values():
        p.mkdir()
    for i, rows in enumerate([slice(0, 70), slice(70, 121), slice(121, None)]):
        part = frame.iloc[rows]
        pytest.importorskip("pyarrow")
        part.to_parquet(out["parquet"] / f"part{i}.parquet")
        part.to_csv(out["csv"] / f"part{i}.csv", index=False)
    frame.to_csv(root / "all.csv", index=False)
    out["all"] = root / "all.csv"
    return out


def _train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(["train", *argv])
    captured = capsys.readouterr()
    payload = json.loads(captured.out) if code == 0 and "--json" in argv else {}
    return code, payload, captured.err


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_train_dask_equals_in_memory(
    kind: str, frame: Any, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = tmp_path / "model.sg"
    argv = [str(folders[kind]), "--dask", "--target", "label", "--test-size", "0", "--tol", "1e-9"]
    code, result, err = _train([*argv, "--json", "--quiet", "--out", str(model_path)], capsys)
    assert code == 0, err
    model = SoftmaxRegression.load(model_path)
    ref = SoftmaxRegression(tol=1e-9).fit(frame.drop(columns="label"), frame["label"])
    assert np.max(np.abs(model.coef_ - ref.coef_)) <= 1e-6 * np.max(np.abs(ref.coef_))
    assert result["objective"] == pytest.approx(ref.loss_curve_[-1], rel=1e-8)
    assert result["n_train"] == len(frame) and result["classes"] == ["barbera", "barolo", "grignolino"]
    assert result["train"]["accuracy"] == pytest.approx(
        ref.score(frame.drop(columns="label"), frame["label"])
    )
    # the in-memory command on one file with the same rows reports the same metrics
    code, mem, err = _train(
        [str(folders["all"]), "--target", "label", "--test-size", "0", "--tol", "1e-9", "--json", "--quiet",
         "--out", str(tmp_path / "mem.sg")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert result["train"]["log_loss"] == pytest.approx(mem["train"]["log_loss"], rel=1e-6)
    assert result["train"]["accuracy"] == mem["train"]["accuracy"]


def test_progress_and_split(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["train", str(folders["parquet"]), "--dask", "--target", "label", "--out", str(tmp_path / "m.sg")]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "training" in captured.err and "objective" in captured.err  # the progress bar
    assert "train" in captured.out and "test" in captured.out
    assert (tmp_path / "m.sg").is_file()


def test_unreachable_scheduler(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.sg"
    start = time.perf_counter()
    code, _, err = _train(
        [str(folders["parquet"]), "--dask", "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "1",
         "--target", "label", "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert not out.exists()
    assert time.perf_counter() - start < 20


def test_bad_input(
    frame: Any, folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.sg"
    base = ["--dask", "--out", str(out)]

    def error(argv: list[str]) -> str:
        code, _, err = _train(argv, capsys)
        assert code == 2, argv
        assert err.startswith("softgrad: error:") and err.count("\n") == 1, err
        return err

    assert "no target column 'nope'" in error([str(folders["parquet"]), "--target", "nope", *base])
    assert "no .parquet or .csv files" in error([str(tmp_path), "--target", "label", *base])
    bad = tmp_path / "bad"
    bad.mkdir()
    frame.assign(alcohol="x" + frame["alcohol"].astype(str)).to_csv(bad / "a.csv", index=False)
    assert "non-numeric feature columns ['alcohol']" in error([str(bad), "--target", "label", *base])
    nan = tmp_path / "nan"
    nan.mkdir()
    frame.assign(ash=frame["ash"].where(frame.index != 5)).to_csv(nan / "a.csv", index=False)
    assert "NaN in feature columns" in error([str(nan), "--target", "label", *base])
    assert "--scheduler needs --dask" in error(
        [str(folders["all"]), "--target", "label", "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)]
    )
    assert not out.exists()
