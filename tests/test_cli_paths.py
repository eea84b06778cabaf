"""Every command that takes a path, with every kind of bad path (issue #16, items 4 and 10).

A missing file, a folder, a FIFO, ``/dev/stdin``, a place that cannot be written (``/proc``),
an output that is one of the command's inputs: each gives exactly one line
``softgrad: error: ...`` and exit code 2, never a traceback, before any work is done (the fit
and the benchmark are replaced by functions that fail the test if they run) and without
touching the inputs.
"""

from __future__ import annotations

import io
import os
import stat

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from softgrad.interfaces.cli import main

UNWRITABLE_FILE = "/proc/softgrad-test-out.npz"  # /proc takes no new files, even from root
UNWRITABLE_FOLDER = "/proc/softgrad-test-out/"
STDIN_IS_FILE = os.path.exists("/dev/stdin") and stat.S_ISREG(os.stat("/dev/stdin").st_mode)


@pytest.fixture
def files(tmp_path):
    """A data CSV, a trained model, a folder, a FIFO and a Python file, in ``tmp_path``."""
    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=list("abcd"))
    df["label"] = y
    data = tmp_path / "iris.csv"
    df.to_csv(data, index=False)
    model = tmp_path / "m.npz"
    assert main(["train", str(data), "--target", "label", "--out", str(model), "--quiet"]) == 0
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    py = tmp_path / "mine.py"
    py.write_text("import numpy as np\ndef f(x):\n    return np.exp(x) / np.exp(x).sum()\n")
    return {"data": str(data), "model": str(model), "folder": str(folder), "fifo": str(fifo), "py": str(py)}


@pytest.fixture
def no_work(monkeypatch):
    """The fit and the benchmark fail the test if they start: every check comes first."""
    from softgrad.interfaces import bench
    from softgrad.models import SoftmaxRegression

    def refuse(*args, **kwargs):
        raise AssertionError("the work started before the paths were checked")

    monkeypatch.setattr(SoftmaxRegression, "fit", refuse)
    monkeypatch.setattr(bench, "run_bench", refuse)


def _cases():
    """(id, argv template, what the message says); {data} etc. are filled from ``files``."""
    train = ["train", "{data}", "--target", "label", "--quiet"]
    bad_inputs = {
        "missing": ("{folder}/nope.csv", "no such file"),
        "folder": ("{folder}", "is a folder"),
        "fifo": ("{fifo}", "FIFO"),
        "stdin": ("/dev/stdin", "not a regular file"),
    }
    for kind, (path, says) in bad_inputs.items():
        yield f"train-data-{kind}", ["train", path, "--target", "label", "--out", "{folder}/m.npz"], says
        yield f"predict-data-{kind}", ["predict", "{model}", path], says
        yield f"diagnose-file-{kind}", ["diagnose", path + ":f", "--kind", "softmax"], says
    yield "predict-model-missing", ["predict", "{folder}/nope.npz", "{data}"], "no such file"
    yield "predict-model-folder", ["predict", "{folder}", "{data}"], "model.json"
    yield "predict-model-fifo", ["predict", "{fifo}", "{data}"], "FIFO"
    yield "predict-model-stdin", ["predict", "/dev/stdin", "{data}"], "not a model file"
    yield "train-out-unwritable", [*train, "--out", UNWRITABLE_FILE], "cannot write"
    yield "train-out-unwritable-folder", [*train, "--out", UNWRITABLE_FOLDER], "cannot write"
    yield "train-out-is-input", [*train, "--out", "{data}"], "is an input"
    yield "train-out-fifo", [*train, "--out", "{fifo}"], "FIFO"
    yield "train-out-missing-folder", [*train, "--out", "{folder}/no/m.npz"], "does not exist"
    yield "train-plots-is-file", [*train, "--out", "{folder}/m.npz", "--plots", "{model}"], "not a folder"
    yield "train-plots-is-input", [*train, "--out", "{folder}/m.npz", "--plots", "{data}"], "not a folder"
    yield (
        "train-plots-unwritable",
        [*train, "--out", "{folder}/m.npz", "--plots", UNWRITABLE_FOLDER],
        "cannot write",
    )
    predict = ["predict", "{model}", "{data}"]
    yield "predict-out-is-data", [*predict, "--out", "{data}"], "is an input"
    yield "predict-out-is-model", [*predict, "--out", "{model}"], "is an input"
    yield "predict-out-folder", [*predict, "--out", "{folder}"], "is a folder"
    yield "predict-out-fifo", [*predict, "--out", "{fifo}"], "FIFO"
    yield "predict-out-unwritable", [*predict, "--out", "/proc/p.csv"], "cannot write"
    plot = ["plot", "softmax", "1", "2", "3"]
    yield "plot-out-unwritable", [*plot, "--out", "/proc/p.png"], "cannot write"
    yield "plot-out-missing-folder", [*plot, "--out", "{folder}/no/p.png"], "does not exist"
    yield "bench-json-unwritable", ["bench", "--quick", "--json", "/proc/b.json"], "cannot write"
    yield "bench-json-folder", ["bench", "--quick", "--json", "{folder}"], "is a folder"
    yield "bench-json-is-fifo", ["bench", "--quick", "--json", "{fifo}"], "FIFO"


CASES = list(_cases())


@pytest.mark.parametrize(("argv", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_issue16_bad_paths_one_line_exit_2(files, no_work, capsys, argv, says):
    if "/dev/stdin" in argv and STDIN_IS_FILE:
        pytest.skip("standard input is a regular file here")
    before = {k: open(v, "rb").read() for k, v in files.items() if k in ("data", "model")}
    rc = main([a.format(**files) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert err.startswith("softgrad: error:") and err.count("\n") == 1, err
    assert says in err, err
    for k, content in before.items():
        assert open(files[k], "rb").read() == content  # the inputs are untouched


def test_issue16_plots_folder_is_created_and_written(files, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "new" / "plots"
    rc = main(
        [
            "train",
            files["data"],
            "--target",
            "label",
            "--out",
            str(tmp_path / "m2.npz"),
            "--quiet",
            "--plots",
            str(plots),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in plots.iterdir()) == [
        "confusion_matrix.png",
        "loss_curve.png",
        "true_class_probability.png",
    ]


def test_issue16_write_error_after_the_checks_is_one_line(files, tmp_path, monkeypatch, capsys):
    """An OSError while saving (the disk filled after the check) is one line, exit 2."""
    from softgrad.models import SoftmaxRegression

    def full(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SoftmaxRegression, "save", full)
    rc = main(["train", files["data"], "--target", "label", "--out", str(tmp_path / "m3.npz"), "--quiet"])
    _, err = capsys.readouterr()
    assert rc == 2 and "No space left on device" in err and err.count("\n") == 1


def test_issue16_replacing_an_earlier_model_is_allowed(files, capsys):
    """Writing over an old output (not an input) stays allowed: the model is replaced atomically."""
    old = open(files["model"], "rb").read()
    rc = main(
        ["train", files["data"], "--target", "label", "--out", files["model"], "--quiet", "--seed", "3"]
    )
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert open(files["model"], "rb").read() != old
    rc = main(["predict", files["model"], files["data"]])
    out, _ = capsys.readouterr()
    assert rc == 0 and out.startswith("prediction")
    assert np.isin(pd.read_csv(io.StringIO(out))["prediction"], [0, 1, 2]).all()
