"""Hostile model files: each is one "cannot load model" ValueError, with no large allocation.

Regression tests for the files of issue #16 (item 5), the atomic folder save (item 6), and a
fuzz over mutated files: truncations, bit flips, edited metadata and shape bombs. Every mutant
must either raise ``ValueError("cannot load model ...")`` or load a model equal to the original,
and loading it must never trace more memory than the file's size plus a fixed buffer allowance.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning

from softgrad.models import SoftmaxRegression, _persist

BUFFER_ALLOWANCE = 1 << 20  # zip and .npy reading buffers, the metadata, the model object
FUZZ_SEED = 20261127


@pytest.fixture(scope="module")
def model():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SoftmaxRegression(max_iter=3, class_weight={0: 2.0}).fit((X - X.mean(0)) / X.std(0), y)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def load_traced(path: Path) -> tuple[SoftmaxRegression | ValueError, int]:
    """Load ``path``; return the model or the ValueError, and the peak of traced memory."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result: SoftmaxRegression | ValueError = SoftmaxRegression.load(path)
    except ValueError as exc:
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


def assert_refused(path: Path, match: str = "") -> ValueError:
    with pytest.raises(ValueError, match="cannot load model") as info:
        SoftmaxRegression.load(path)
    message = str(info.value)
    assert match in message, message
    assert "allow_pickle" not in message  # NumPy's advice to unpickle must never reach a user
    return info.value


# ------------------------------------------------------------------- issue #16, item 5
def test_issue16_plain_npy_file(tmp_path):
    path = tmp_path / "coef.npy"
    np.save(path, np.ones((3, 4)))
    assert_refused(path, "not a zip file")


def test_issue16_metadata_field_of_wrong_type(saved):
    entries = members(saved)
    meta = json.loads(np.load(io.BytesIO(entries["__meta__.npy"])).item())
    for key, value in [("params", []), ("n_iter", "3"), ("n_features_in", True), ("arrays", {"coef": 1})]:
        edited = {**meta, key: value}
        write_members(saved, {**entries, "__meta__.npy": npy_bytes(np.array(json.dumps(edited)))})
        assert_refused(saved, repr(key) if key != "arrays" else "metadata of array 'coef'")


def test_issue16_deeply_nested_json(saved):
    entries = members(saved)
    deep = "[" * 100_000 + "]" * 100_000
    write_members(saved, {**entries, "__meta__.npy": npy_bytes(np.array(deep))})
    assert_refused(saved, "nested too deeply")


def test_issue16_folder_with_deeply_nested_model_json(model, tmp_path):
    model.save(tmp_path)
    (tmp_path / "model.json").write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    assert_refused(tmp_path, "nested too deeply")


def test_issue16_shape_bomb_is_refused_before_allocating(saved):
    entries = members(saved)
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    bomb = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64
    write_members(saved, {**entries, "coef.npy": bomb})
    result, peak = load_traced(saved)
    assert isinstance(result, ValueError) and "declares shape (1000000, 1000000)" in str(result)
    assert peak < saved.stat().st_size + BUFFER_ALLOWANCE


def test_issue16_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"\x80\x04K\x01." * 10)  # a pickle stream: NumPy would suggest allow_pickle
    assert_refused(path, "not a zip file")


def test_compressed_members_are_refused(saved):
    write_members(saved, members(saved), compression=zipfile.ZIP_DEFLATED)
    assert_refused(saved, "compressed")


def test_member_that_is_not_npy(saved):
    write_members(saved, {**members(saved), "notes.txt": b"hello"})
    assert_refused(saved, "not an .npy array")


def test_arrays_file_outside_the_folder_is_refused(model, tmp_path):
    folder = tmp_path / "m"
    model.save(str(folder) + "/")
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "arrays_file": "../elsewhere.npz"}))
    assert_refused(folder, "arrays_file must be the name of an .npz file in the folder")


def test_cli_reports_a_hostile_file_in_one_line(tmp_path):
    path = tmp_path / "coef.npy"
    np.save(path, np.ones(3))
    data = tmp_path / "x.csv"
    data.write_text("a,b\n1,2\n")
    out = subprocess.run(
        [sys.executable, "-m", "softgrad", "predict", str(path), str(data)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("softgrad: error: cannot load model")
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------- issue #16, item 6
def test_issue16_folder_save_interrupted_keeps_the_old_model(model, tmp_path, monkeypatch):
    model.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    other = SoftmaxRegression().fit(np.eye(4), [0, 1, 2, 2])
    real_write = _persist.atomic_write

    def interrupted(path, write):
        if Path(path).name == "model.json":
            raise KeyboardInterrupt  # between the arrays and the metadata
        real_write(path, write)

    monkeypatch.setattr(_persist, "atomic_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        other.save(tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    np.testing.assert_array_equal(SoftmaxRegression.load(tmp_path).coef_, model.coef_)


def test_folder_save_over_a_model_replaces_it_and_leaves_one_arrays_file(model, tmp_path):
    model.save(tmp_path)
    other = SoftmaxRegression().fit(np.eye(4), [0, 1, 2, 2])
    other.save(tmp_path)
    assert len(list(tmp_path.glob("arrays*.npz"))) == 1
    np.testing.assert_array_equal(SoftmaxRegression.load(tmp_path).coef_, other.coef_)


def test_folder_of_the_first_layout_still_loads(model, tmp_path):
    meta, arrays = _persist._state(model)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "arrays.npz", **arrays)
    np.testing.assert_array_equal(SoftmaxRegression.load(tmp_path).coef_, model.coef_)


# ------------------------------------------------------------------------------ the fuzz
def mutants(path: Path, rng: np.random.Generator):
    """(kind, bytes) of mutated versions of the model file at ``path``."""
    data = path.read_bytes()
    for cut in sorted({0, 1, 4, 30, len(data) - 1, len(data) - 22, *rng.integers(1, len(data), 40)}):
        yield "truncation", data[:cut]
    for _ in range(200):
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), rng.integers(1, 4)):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        yield "bit flip", bytes(flipped)
    entries = members(path)
    meta = json.loads(np.load(io.BytesIO(entries["__meta__.npy"])).item())
    arrays = {k: v for k, v in _persist._read_npz(path).items() if k != "__meta__"}
    junk = [None, True, -1, 0, 2**70, 1.5, "x", [], {}, [1, [2]], {"__float__": "1e999"}, {"__dict__": 3}]
    for key in [*meta, *meta["params"], "arrays.coef"]:
        for value in rng.choice(np.array(junk, dtype=object), 4, replace=False):
            edited = json.loads(json.dumps(meta))
            if key == "arrays.coef":
                edited["arrays"]["coef"] = value
            elif key in meta:
                edited[key] = value
            else:
                edited["params"][key] = value
            if rng.random() < 0.5:  # half re-checksummed, as an attacker would
                edited["sha256"] = _persist._checksum(edited, arrays)
            meta_entry = npy_bytes(np.array(json.dumps(edited)))
            yield "metadata edit", _archive({**entries, "__meta__.npy": meta_entry})
    for shape in [(2**40,), (10**6, 10**6), (-1, 4), (3, 4, 2**30), ()]:
        header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
        header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
        bomb = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 96
        for name in ("coef.npy", "intercept.npy", "__meta__.npy"):
            yield "shape bomb", _archive({**entries, name: bomb})


def _archive(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
    return buf.getvalue()


def test_fuzz_mutated_model_files(model, tmp_path):
    original = tmp_path / "original.npz"
    model.save(original)
    rng = np.random.default_rng(FUZZ_SEED)
    counts: dict[str, dict[str, int]] = {}
    target = tmp_path / "mutant.npz"
    for kind, payload in mutants(original, rng):
        target.write_bytes(payload)
        result, peak = load_traced(target)
        assert peak < len(payload) + BUFFER_ALLOWANCE, (kind, peak)
        tally = counts.setdefault(kind, {"refused": 0, "loaded": 0})
        if isinstance(result, ValueError):
            assert str(result).startswith("cannot load model"), (kind, result)
            assert "allow_pickle" not in str(result)
            tally["refused"] += 1
        else:  # only a mutation the format ignores may load, and then it is the same model
            np.testing.assert_array_equal(result.coef_, model.coef_)
            np.testing.assert_array_equal(result.intercept_, model.intercept_)
            tally["loaded"] += 1
    total = sum(sum(t.values()) for t in counts.values())
    print(f"\nmodel-file fuzz: {total} mutants: {counts}")
    assert total > 300 and all(t["refused"] > 0 for t in counts.values())

