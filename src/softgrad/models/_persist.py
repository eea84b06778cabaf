"""Saving and loading fitted models without pickle.

A model is JSON metadata (format name and version, the estimator's parameters, the shapes and
dtypes of its arrays, and a SHA-256 checksum over the metadata and the array bytes) plus its
arrays in NumPy's ``.npz`` format, read back with ``allow_pickle=False``. Labels that were
Python strings are stored as a unicode array and come back as strings.

Two layouts, both written atomically (temporary file in the same folder, then rename):

* **one file** (any path that is not a folder): an ``.npz`` archive at exactly that path whose
  entry ``__meta__`` holds the JSON;
* **a folder** (an existing folder, or a path ending with a separator): ``model.json`` and
  the arrays file it names (``arrays.<hash>.npz``) inside it. The arrays are written first under
  a new name, then ``model.json`` is replaced in one rename, then the old arrays file goes: an
  interruption leaves the old model or the new one, never the new arrays with the old metadata.
  Folders written before this layout (``arrays.npz``, no name in the metadata) still load.

The checksum catches truncation, corruption and edits; it is not a signature against someone
who rewrites both the arrays and the checksum. Everything that is wrong with a file is a
``ValueError`` that names the path and what is wrong.

Files are untrusted input. The archive is read with :mod:`zipfile` and each member's ``.npy``
header is checked before any array is made: only uncompressed members, no object dtypes, and a
declared shape whose bytes are exactly those the member holds, so no file makes the loader
allocate more than the file's own size. The metadata must have the documented types, checked
before it is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "atomic_write", "load_model", "save_model"]

FORMAT = "softgrad.SoftmaxRegression"
FORMAT_VERSION = 1
_META_ENTRY = "__meta__"
_JSON_NAME = "model.json"
_LEGACY_ARRAYS_NAME = "arrays.npz"
_ARRAYS_FILE_KEY = "arrays_file"
_CLASSES_KINDS = ("array", "object-str", "object")
_MAX_META_CHARS = 1 << 20  # far above any real model's metadata; bounds what JSON parsing costs
_FLOAT_KINDS = (np.dtype(np.float32), np.dtype(np.float64))


# ------------------------------------------------------------------ JSON of the parameters
def _encode(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}  # 'inf', '-inf', 'nan': JSON has none of them
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return None  # e.g. a RandomState instance: not kept (it only seeds SGD shuffling)


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__float__"}:
        return float(value["__float__"])
    if isinstance(value, dict) and set(value) == {"__dict__"}:
        return {_decode(k): _decode(v) for k, v in value["__dict__"]}
    return value


# --------------------------------------------------------------------------- the checksum
def _checksum(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.data)  # the bytes, without a copy of them
    return h.hexdigest()


# ---------------------------------------------------------------------------- model state
def _classes_for_storage(classes: np.ndarray) -> tuple[np.ndarray, str]:
    if classes.dtype.kind in "iufbU":
        return classes, "array"
    if classes.dtype == object:
        if all(isinstance(c, str) for c in classes):
            return classes.astype(str), "object-str"
        plain = np.array(classes.tolist())
        if plain.dtype.kind in "iufb":
            return plain, "object"
    raise ValueError(
        f"cannot save a model whose classes_ have dtype {classes.dtype}: only numbers, booleans "
        "and strings can be stored without pickle"
    )


def _state(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from .. import __version__

    classes, classes_kind = _classes_for_storage(np.asarray(model.classes_))
    arrays: dict[str, np.ndarray] = {
        "coef": np.asarray(model.coef_),
        "intercept": np.asarray(model.intercept_),
        "classes": classes,
        "loss_curve": np.asarray(model.loss_curve_, dtype=np.float64),
    }
    if hasattr(model, "feature_names_in_"):
        arrays["feature_names"] = np.asarray(model.feature_names_in_).astype(str)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "softgrad_version": __version__,
        "params": {k: _encode(v) for k, v in model.get_params(deep=False).items()},
        "n_features_in": int(model.n_features_in_),
        "n_iter": int(model.n_iter_),
        "classes_kind": classes_kind,
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()},
    }
    meta["sha256"] = _checksum(meta, arrays)
    return meta, arrays


# ----------------------------------------------------------------------------------- save
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Any) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it to ``path``.

    Readers see the old file or the complete new one, never a half-written one; on any error
    the temporary file is removed. The file gets the usual ``0o666 & ~umask`` permissions.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Write ``model`` (fitted) at ``path``; see the module docstring for the layouts."""
    meta, arrays = _state(model)
    text = os.fspath(path)
    target = Path(text)
    if target.is_dir() or text.endswith((os.sep, "/")):
        target.mkdir(parents=True, exist_ok=True)
        _save_folder(target, meta, arrays)
        return
    if not target.parent.is_dir():
        raise ValueError(f"cannot save model to {text}: folder {str(target.parent)!r} does not exist")
    entries = {**arrays, _META_ENTRY: np.array(json.dumps(meta, sort_keys=True))}
    atomic_write(target, lambda fh: np.savez(fh, **entries))  # type: ignore[arg-type]


def _save_folder(folder: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """New arrays under a new name, then one rename of ``model.json`` commits them."""
    previous = _referenced_arrays_file(folder)
    arrays_name = f"arrays.{meta['sha256'][:16]}.npz"
    atomic_write(folder / arrays_name, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
    payload = json.dumps({**meta, _ARRAYS_FILE_KEY: arrays_name}, indent=2, sort_keys=True).encode()
    try:
        atomic_write(folder / _JSON_NAME, lambda fh: fh.write(payload))
    except BaseException:
        if arrays_name != previous:
            (folder / arrays_name).unlink(missing_ok=True)
        raise
    if previous is not None and previous != arrays_name:
        (folder / previous).unlink(missing_ok=True)


def _referenced_arrays_file(folder: Path) -> str | None:
    """The arrays file the folder's current ``model.json`` uses, if it is a readable model."""
    try:
        meta = json.loads((folder / _JSON_NAME).read_text(encoding="utf-8"))
        return _arrays_file_name(meta)
    except (OSError, ValueError, RecursionError, _Bad):
        return None


# ----------------------------------------------------------------------------------- load
class _Bad(Exception):
    """Internal: why a file is not a valid model (becomes a ValueError with the path)."""


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` archive at ``path``, each checked before it is allocated."""
    if not zipfile.is_zipfile(path):
        raise _Bad("not a readable .npz archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            return {_member_name(info): _read_member(archive, info) for info in archive.infolist()}
    except _Bad:
        raise
    except Exception as exc:  # zip and .npy parsing of untrusted bytes: any failure means damage
        raise _Bad(f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc


def _member_name(info: zipfile.ZipInfo) -> str:
    if not info.filename.endswith(".npy"):
        raise _Bad(f"not a .npz archive: member {info.filename!r} is not an .npy array")
    return info.filename[: -len(".npy")]


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    if info.compress_type != zipfile.ZIP_STORED:
        raise _Bad(f"member {info.filename!r} is compressed; softgrad writes uncompressed archives")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise _Bad(f"member {info.filename!r} has .npy format version {version}")
        shape, _, dtype = read_header(fh)
        data_bytes = info.file_size - fh.tell()
    if dtype.hasobject:
        raise _Bad(f"member {info.filename!r} holds Python objects; pickled data is never loaded")
    declared = math.prod(shape) * dtype.itemsize
    if declared != data_bytes:
        raise _Bad(
            f"member {info.filename!r} declares shape {shape} of {dtype} ({declared} bytes) "
            f"but holds {data_bytes} bytes"
        )
    with archive.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _parse_meta(text: str, where: str) -> dict[str, Any]:
    if len(text) > _MAX_META_CHARS:
        raise _Bad(f"{where} is {len(text)} characters long, more than model metadata can be")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Bad(f"{where} is not valid JSON ({exc})") from exc
    except RecursionError:
        raise _Bad(f"{where} is nested too deeply to be model metadata") from None
    if not isinstance(meta, dict):
        raise _Bad(f"{where} is not a JSON object")
    return meta


def _arrays_file_name(meta: dict[str, Any]) -> str:
    name = meta.get(_ARRAYS_FILE_KEY, _LEGACY_ARRAYS_NAME)
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".npz"):
        raise _Bad(f"{_ARRAYS_FILE_KEY} must be the name of an .npz file in the folder, got {name!r}")
    return name


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if path.is_dir():
        try:
            text = (path / _JSON_NAME).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _Bad(f"the folder has no {_JSON_NAME}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _Bad(f"{_JSON_NAME} is not valid JSON ({exc})") from exc
        meta = _parse_meta(text, _JSON_NAME)
        arrays_name = _arrays_file_name(meta)
        if not (path / arrays_name).is_file():
            raise _Bad(f"the folder has no {arrays_name}")
        arrays = _read_npz(path / arrays_name)
        meta.pop(_ARRAYS_FILE_KEY, None)  # where the arrays are, not part of the checksummed model
    elif path.is_file():
        arrays = _read_npz(path)
        raw = arrays.pop(_META_ENTRY, None)
        if raw is None or raw.shape != () or raw.dtype.kind != "U":
            raise _Bad(f"not a softgrad model file (no {_META_ENTRY} entry)")
        meta = _parse_meta(str(raw), "its metadata")
    else:
        raise _Bad("no such file or folder")
    return meta, arrays


def _check_types(meta: dict[str, Any]) -> None:
    """The metadata fields the loader uses have the documented JSON types."""
    expected: dict[str, tuple[type, ...]] = {
        "params": (dict,),
        "n_features_in": (int,),
        "n_iter": (int,),
        "classes_kind": (str,),
        "arrays": (dict,),
        "sha256": (str,),
    }
    for key, types in expected.items():
        if key not in meta:
            raise _Bad(f"its metadata lacks {key!r}")
        value = meta[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise _Bad(f"metadata field {key!r} must be {types[0].__name__}, got {type(value).__name__}")
    if meta["classes_kind"] not in _CLASSES_KINDS:
        raise _Bad(f"classes_kind must be one of {_CLASSES_KINDS}, got {meta['classes_kind']!r}")
    for name, entry in meta["arrays"].items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(isinstance(n, int) and not isinstance(n, bool) for n in entry["shape"])
        ):
            raise _Bad(f"metadata of array {name!r} must be {{'dtype': str, 'shape': [int, ...]}}")
    for name, value in meta["params"].items():
        if not _is_parameter_value(value):
            raise _Bad(f"parameter {name!r} has a value of unsupported form: {str(value)[:80]}")


def _is_parameter_value(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, dict) and set(value) == {"__float__"}:
        return value["__float__"] in ("inf", "-inf", "nan")
    if isinstance(value, dict) and set(value) == {"__dict__"} and depth == 0:
        pairs = value["__dict__"]
        return isinstance(pairs, list) and all(
            isinstance(pair, list) and len(pair) == 2 and all(_is_parameter_value(v, 1) for v in pair)
            for pair in pairs
        )
    return False


def _check_meta(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    if meta.get("format") != FORMAT:
        raise _Bad(f"not a {FORMAT} model (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _Bad(
            f"format version {meta.get('format_version')!r}; this softgrad reads version {FORMAT_VERSION}"
        )
    _check_types(meta)
    declared = meta["arrays"]
    if not isinstance(declared, dict) or set(declared) != set(arrays):
        raise _Bad(f"it holds arrays {sorted(arrays)} but its metadata lists {sorted(declared)}")
    if meta["sha256"] != _checksum(meta, arrays):
        raise _Bad("checksum mismatch: the file was modified or damaged")


def _check_arrays(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    required = {"coef", "intercept", "classes", "loss_curve"}
    if not required <= set(arrays):
        raise _Bad(f"missing arrays {sorted(required - set(arrays))}")
    coef, intercept, classes = arrays["coef"], arrays["intercept"], arrays["classes"]
    n_features = meta["n_features_in"]
    if not isinstance(n_features, int) or n_features < 1:
        raise _Bad(f"n_features_in must be a positive int, got {n_features!r}")
    if classes.ndim != 1 or classes.size < 2:
        raise _Bad(f"classes must be 1-D with at least 2 labels, got shape {classes.shape}")
    if classes.dtype.kind not in "iufbU":
        raise _Bad(f"classes have unsupported dtype {classes.dtype}")
    n_classes = classes.size
    if coef.dtype not in _FLOAT_KINDS or intercept.dtype != coef.dtype:
        raise _Bad(f"coef and intercept must be float32 or float64, got {coef.dtype} and {intercept.dtype}")
    if coef.shape != (n_classes, n_features):
        raise _Bad(f"coef has shape {coef.shape}, expected {(n_classes, n_features)}")
    if intercept.shape != (n_classes,):
        raise _Bad(f"intercept has shape {intercept.shape}, expected {(n_classes,)}")
    if arrays["loss_curve"].ndim != 1:
        raise _Bad(f"loss_curve must be 1-D, got shape {arrays['loss_curve'].shape}")
    names = arrays.get("feature_names")
    if names is not None and (names.shape != (n_features,) or names.dtype.kind != "U"):
        raise _Bad(f"feature_names must be {n_features} strings, got {names.dtype} of shape {names.shape}")
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
        raise _Bad("coef or intercept holds NaN or inf")


def load_model(cls: Any, path: str | os.PathLike[str]) -> Any:
    """Read a model written by :func:`save_model` into a new ``cls`` instance."""
    where = Path(os.fspath(path))
    try:
        meta, arrays = _read(where)
        _check_meta(meta, arrays)
        _check_arrays(meta, arrays)
        params = {k: _decode(v) for k, v in meta["params"].items()}
        model = cls()
        unknown = set(params) - set(model.get_params(deep=False))
        if unknown:
            raise _Bad(f"unknown parameters {sorted(unknown)}")
        model.set_params(**params)
        try:
            model._validate_params()
        except (TypeError, ValueError) as exc:
            raise _Bad(f"invalid parameters ({exc})") from exc
    except _Bad as exc:
        raise ValueError(f"cannot load model from {os.fspath(path)!r}: {exc}") from None
    classes = arrays["classes"]
    if meta["classes_kind"] in ("object-str", "object"):  # labels were Python objects: keep them so
        classes = np.array(classes.tolist(), dtype=object)
    model.coef_ = arrays["coef"]
    model.intercept_ = arrays["intercept"]
    model.classes_ = classes
    model.n_features_in_ = meta["n_features_in"]
    model.n_iter_ = int(meta["n_iter"])
    model.loss_curve_ = arrays["loss_curve"]
    if "feature_names" in arrays:
        model.feature_names_in_ = np.array(arrays["feature_names"].tolist(), dtype=object)
    return model
