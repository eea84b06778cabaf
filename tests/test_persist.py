"""Saving and loading SoftmaxRegression without pickle: round trips and damaged files."""

from __future__ import annotations

import json
import re
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from softgrad.models import SoftmaxRegression, _persist


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def model(iris):
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    # C=inf on separable classes never converges: a few iterations are all a file needs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SoftmaxRegression(C=np.inf, class_weight={"setosa": 2.0}, max_iter=5).fit(X, names)


def assert_same_model(a, b, X):
    for attr in ("coef_", "intercept_", "loss_curve_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
        assert getattr(a, attr).dtype == getattr(b, attr).dtype
    np.testing.assert_array_equal(a.classes_, b.classes_)
    assert a.classes_.dtype == b.classes_.dtype
    assert [type(c) for c in a.classes_] == [type(c) for c in b.classes_]
    assert a.n_features_in_ == b.n_features_in_ and a.n_iter_ == b.n_iter_
    assert a.get_params() == b.get_params()
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("layout", ["file", "file-without-suffix", "existing-folder", "new-folder/"])
def test_round_trip_is_exact(model, iris, tmp_path, layout):
    path = {
        "file": tmp_path / "model.npz",
        "file-without-suffix": tmp_path / "model",
        "existing-folder": tmp_path,
        "new-folder/": str(tmp_path / "new") + "/",
    }[layout]
    model.save(path)
    if layout.startswith("file"):
        assert path.is_file()  # at exactly the path given, no suffix added
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    else:
        folder = tmp_path if layout == "existing-folder" else tmp_path / "new"
        names = sorted(p.name for p in folder.iterdir())
        assert len(names) == 2 and names[1] == "model.json", names
        assert names[0] == json.loads((folder / "model.json").read_text())["arrays_file"]
    loaded = SoftmaxRegression.load(path)
    assert_same_model(model, loaded, iris[0])
    assert loaded.get_params()["C"] == np.inf and loaded.class_weight == {"setosa": 2.0}


def test_round_trip_float32_int_labels_and_feature_names(iris, tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X.astype(np.float32), columns=["sl", "sw", "pl", "pw"])
    model = SoftmaxRegression().fit(df, y)
    model.save(tmp_path / "m.npz")
    loaded = SoftmaxRegression.load(tmp_path / "m.npz")
    assert loaded.coef_.dtype == np.float32
    np.testing.assert_array_equal(loaded.feature_names_in_, ["sl", "sw", "pl", "pw"])
    assert_same_model(model, loaded, df)


def test_file_holds_no_object_arrays(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:  # would raise on any pickled entry
        arrays = {k: data[k] for k in data.files}
    assert all(a.dtype != object for a in arrays.values())
    assert arrays["classes"].dtype.kind == "U"
    meta = json.loads(str(arrays["__meta__"]))
    assert meta["format"] == "softgrad.SoftmaxRegression" and meta["format_version"] == 1


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        SoftmaxRegression().save(tmp_path / "m.npz")


def test_save_into_missing_folder_fails_cleanly(model, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        model.save(tmp_path / "nope" / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_failure_leaves_the_old_file(model, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


# ------------------------------------------------------------------------- damaged files
def rewrite(path, meta_edit=None, array_edit=None, rehash=True):
    """Rewrite a single-file model with its metadata/arrays edited (optionally re-checksummed)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    if array_edit:
        array_edit(arrays)
        meta["arrays"] = {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()}
    if meta_edit:
        meta_edit(meta)
    if rehash:
        meta["sha256"] = _persist._checksum(meta, arrays)
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    return path


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot load model .*not a readable"):
        SoftmaxRegression.load(saved)


def test_garbage_and_empty_file(saved):
    saved.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="cannot load model"):
        SoftmaxRegression.load(saved)
    saved.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot load model"):
        SoftmaxRegression.load(saved)


def test_flipped_byte_in_coefficients_fails_the_checksum(saved):
    def edit(arrays):
        arrays["coef"] = arrays["coef"].copy()
        arrays["coef"][0, 0] += 1e-12

    rewrite(saved, array_edit=edit, rehash=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        SoftmaxRegression.load(saved)


def test_edited_metadata_fails_the_checksum(saved):
    rewrite(saved, meta_edit=lambda m: m["params"].update(C=123.0), rehash=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        SoftmaxRegression.load(saved)


def test_wrong_shapes_are_caught_even_with_a_valid_checksum(model, saved):
    rewrite(saved, array_edit=lambda a: a.update(coef=a["coef"][:, :3]))
    with pytest.raises(ValueError, match="coef has shape"):
        SoftmaxRegression.load(saved)
    model.save(saved)
    rewrite(saved, array_edit=lambda a: a.update(intercept=a["intercept"][:2]))
    with pytest.raises(ValueError, match="intercept has shape"):
        SoftmaxRegression.load(saved)


def test_missing_array(saved):
    rewrite(saved, array_edit=lambda a: a.pop("intercept"))
    with pytest.raises(ValueError, match="missing arrays"):
        SoftmaxRegression.load(saved)


def test_version_mismatch(saved):
    rewrite(saved, meta_edit=lambda m: m.update(format_version=2))
    with pytest.raises(ValueError, match="format version 2"):
        SoftmaxRegression.load(saved)


def test_wrong_format_and_bad_parameters(saved):
    rewrite(saved, meta_edit=lambda m: m.update(format="something.else"))
    with pytest.raises(ValueError, match=r"not a softgrad\.SoftmaxRegression model"):
        SoftmaxRegression.load(saved)
    rewrite(saved, meta_edit=lambda m: m.update(format="softgrad.SoftmaxRegression"))
    rewrite(saved, meta_edit=lambda m: m["params"].update(solver="magic"))
    with pytest.raises(ValueError, match="invalid parameters"):
        SoftmaxRegression.load(saved)


def test_pickled_entry_is_refused(saved):
    with zipfile.ZipFile(saved, "a") as zf:
        import io

        buf = io.BytesIO()
        np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
        zf.writestr("evil.npy", buf.getvalue())
    with pytest.raises(ValueError, match="cannot load model"):
        SoftmaxRegression.load(saved)


def test_an_npz_that_is_not_a_model(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not a softgrad model file"):
        SoftmaxRegression.load(path)


def test_missing_path_and_damaged_folder(model, tmp_path):
    with pytest.raises(ValueError, match="no such file or folder"):
        SoftmaxRegression.load(tmp_path / "absent.npz")
    folder = tmp_path / "m"
    model.save(str(folder) + "/")
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SoftmaxRegression.load(folder)
    model.save(folder)
    arrays_name = json.loads((folder / "model.json").read_text())["arrays_file"]
    (folder / arrays_name).unlink()
    with pytest.raises(ValueError, match=rf"no {re.escape(arrays_name)}"):
        SoftmaxRegression.load(folder)
