"""``softgrad train``, ``softgrad predict`` and ``softgrad plot``, end to end on temporary files.

Oracles: the model read back with ``SoftmaxRegression.load`` (predictions), scikit-learn's
``accuracy_score`` and ``log_loss`` (printed metrics), pandas (written CSV), the PNG signature.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import accuracy_score, log_loss

from softgrad.interfaces.cli import main
from softgrad.models import SoftmaxRegression

PNG = b"\x89PNG\r\n\x1a\n"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris_frame():
    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=FEATURES)
    df["species"] = np.array(["setosa", "versicolor", "virginica"])[y]
    return df


@pytest.fixture
def iris_csv(tmp_path, iris_frame):
    path = tmp_path / "iris.csv"
    iris_frame.to_csv(path, index=False)
    return path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_then_predict_csv(tmp_path, iris_csv, iris_frame, capsys):
    model_path = tmp_path / "iris.model"  # no .npz suffix: saved at exactly this path
    rc, out, err = run(capsys, "train", iris_csv, "--target", "species", "--out", model_path)
    assert rc == 0, err
    assert model_path.is_file()
    assert "accuracy" in out and "log-loss" in out and "test" in out
    assert "objective" in err  # the progress bar
    model = SoftmaxRegression.load(model_path)
    np.testing.assert_array_equal(model.feature_names_in_, FEATURES)

    pred_path = tmp_path / "pred.csv"
    rc, out, err = run(capsys, "predict", model_path, iris_csv, "--out", pred_path, "--proba")
    assert rc == 0, err
    pred = pd.read_csv(pred_path)
    X = iris_frame[FEATURES]
    np.testing.assert_array_equal(pred["prediction"], model.predict(X))
    proba = pred[[f"proba_{c}" for c in model.classes_]].to_numpy()
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert accuracy_score(iris_frame["species"], pred["prediction"]) > 0.9

    rc, out, _ = run(capsys, "predict", model_path, iris_csv)  # to standard output
    assert rc == 0
    assert out.splitlines()[0] == "prediction" and len(out.splitlines()) == len(iris_frame) + 1


def test_train_parquet_into_a_folder(tmp_path, iris_frame, capsys):
    pytest.importorskip("pyarrow")
    data = tmp_path / "iris.parquet"
    iris_frame.to_parquet(data)
    folder = tmp_path / "model-dir"
    rc, _, err = run(
        capsys, "train", data, "--target", "species", "--solver", "newton-cg", "--dtype", "float32",
        "--out", f"{folder}/", "--quiet",
    )  # fmt: skip
    assert rc == 0, err
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[0].startswith("arrays.") and names[1] == "model.json", names
    model = SoftmaxRegression.load(folder)
    assert model.coef_.dtype == np.float32 and model.solver == "newton-cg"
    rc, out, err = run(capsys, "predict", folder, data)
    assert rc == 0, err
    np.testing.assert_array_equal(out.split()[1:], model.predict(iris_frame[FEATURES].astype(np.float32)))


def test_dataset_metrics_match_sklearn(tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    rc, out, err = run(
        capsys, "train", "--dataset", "wine", "--test-size", "0", "--C", "0.5", "--json", "--quiet",
        "--out", model_path,
    )  # fmt: skip
    assert rc == 0, err
    result = json.loads(out)
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    model = SoftmaxRegression.load(model_path)
    assert result["n_test"] == 0 and "test" not in result and result["C"] == 0.5
    assert result["train"]["accuracy"] == pytest.approx(accuracy_score(y, model.predict(X)), abs=1e-12)
    assert result["train"]["log_loss"] == pytest.approx(log_loss(y, model.predict_proba(X)), rel=1e-9)
    assert result["objective"] == pytest.approx(model.loss_curve_[-1])


def test_train_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    rc, out, err = run(
        capsys,
        "train",
        "--dataset",
        "iris",
        "--out",
        tmp_path / "m.npz",
        "--plots",
        plots,
        "--quiet",
        "--json",
    )
    assert rc == 0, err
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["confusion_matrix.png", "loss_curve.png", "true_class_probability.png"]
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000
    assert len(json.loads(out)["plots"]) == 3


def test_plot_softmax(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_png = tmp_path / "softmax.png"
    rc, _, err = run(capsys, "plot", "softmax", "1", "-2", "3", "--out", out_png, "-t", "0.5", "1", "4")
    assert rc == 0, err
    assert out_png.read_bytes()[:8] == PNG


# ---------------------------------------------------------------------------- bad input
def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, iris_frame):
    folder = tmp_path_factory.mktemp("trained")
    data = folder / "iris.csv"
    iris_frame.to_csv(data, index=False)
    model = folder / "m.npz"
    assert main(["train", str(data), "--target", "species", "--out", str(model), "--quiet", "--json"]) == 0
    return model


TRAIN_ERRORS = {
    "missing target column": ("a,b,c\n1,2,x\n3,4,y\n", ["--target", "label"], "no target column 'label'"),
    "non-numeric features": (
        "a,b,label\n1,red,x\n3,blue,y\n",
        ["--target", "label"],
        "non-numeric feature columns ['b']",
    ),
    "empty file": ("", ["--target", "label"], "empty"),
    "header only": ("a,b,label\n", ["--target", "label"], "no data rows"),
    "NaN in features": ("a,b,label\n1,,x\n3,4,y\n1,2,x\n", ["--target", "label"], "NaN in feature columns"),
    "NaN in target": ("a,b,label\n1,2,\n3,4,y\n", ["--target", "label"], "missing values"),
    "one class": ("a,b,label\n1,2,x\n3,4,x\n", ["--target", "label"], "one class"),
    "no target option": ("a,b,label\n1,2,x\n", [], "--target COLUMN is required"),
    "data and dataset": ("a,b,label\n1,2,x\n", ["--target", "label", "--dataset", "iris"], "not both"),
}


@pytest.mark.parametrize("case", list(TRAIN_ERRORS))
def test_train_errors(tmp_path, capsys, case):
    text, options, message = TRAIN_ERRORS[case]
    data = write(tmp_path / "data.csv", text)
    model = tmp_path / "model.npz"
    rc, out, err = run(capsys, "train", data, *options, "--out", model, "--quiet")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("softgrad: error:") and message in err
    assert not model.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # no temporary files


def test_train_missing_file_and_missing_out_folder(tmp_path, iris_csv, capsys):
    rc, _, err = run(capsys, "train", tmp_path / "absent.csv", "--target", "y", "--out", tmp_path / "m.npz")
    assert rc == 2 and "no such file" in err and not (tmp_path / "m.npz").exists()
    rc, _, err = run(capsys, "train", iris_csv, "--target", "species", "--out", tmp_path / "no" / "m.npz")
    assert rc == 2 and "does not exist" in err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing column", "the model needs columns that the data lacks: ['petal_width']"),
        ("non-numeric", "non-numeric feature columns ['sepal_width']"),
        ("NaN", "NaN in feature columns"),
        ("empty", "empty"),
        ("garbage model", "cannot load model"),
        ("missing model", "no such file or folder"),
        ("truncated model", "not a readable"),
    ],
)
def test_predict_errors(tmp_path, capsys, iris_frame, trained, case, message):
    df = iris_frame.copy()
    model = trained
    if case == "missing column":
        df = df.drop(columns=["petal_width"])
    elif case == "non-numeric":
        df["sepal_width"] = "wide"
    elif case == "NaN":
        df.loc[3, "petal_length"] = np.nan
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    if case == "empty":
        data.write_text("")
    elif case == "garbage model":
        model = write(tmp_path / "garbage.npz", "this is not a model")
    elif case == "missing model":
        model = tmp_path / "absent.npz"
    elif case == "truncated model":
        model = tmp_path / "half.npz"
        model.write_bytes(trained.read_bytes()[:300])
    out_file = tmp_path / "pred.csv"
    rc, out, err = run(capsys, "predict", model, data, "--out", out_file)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("softgrad: error:") and message in err
    assert out == "" and not out_file.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files


def test_predict_into_missing_folder(tmp_path, iris_csv, trained, capsys):
    rc, _, err = run(capsys, "predict", trained, iris_csv, "--out", tmp_path / "no" / "pred.csv")
    assert rc == 2 and "does not exist" in err


def test_plot_errors(tmp_path, capsys):
    rc, _, err = run(capsys, "plot", "softmax", "1", "x", "--out", tmp_path / "a.png")
    assert rc == 2 and "'x' is not a number" in err
    rc, _, err = run(capsys, "plot", "softmax", "1", "2", "--out", tmp_path / "a.jpg")
    assert rc == 2 and ".png" in err
    rc, _, err = run(capsys, "plot", "softmax", "1", "2", "--out", tmp_path / "a.png", "-t", "0")
    assert rc == 2 and "temperatures" in err
    assert list(tmp_path.iterdir()) == []
