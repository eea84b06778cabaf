"""Paths on the command line, checked before any work (issue #16).

An input must be a readable regular file (a folder, a FIFO or ``/dev/stdin`` is named for what
it is, not reported as missing); an output must be writable where it will be written, must not
be one of the inputs, and must be of the kind the command writes (a file, or a folder). A
command learns this in milliseconds, not after a fit; the write itself still turns an
``OSError`` into one error line (:func:`writing`), for what changes in between.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ._common import CLIError

__all__ = ["check_input_file", "check_model_path", "check_output_file", "check_output_folder", "writing"]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_file(path: str) -> None:
    """``path`` is an existing, readable regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except OSError as exc:
        raise CLIError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise CLIError(f"{path} is {_kind(mode)}, not a regular file (standard input is not read)")
    if not os.access(path, os.R_OK):
        raise CLIError(f"{path}: permission denied (not readable)")


def check_model_path(path: str) -> None:
    """A model is a regular file or a folder; anything else that exists is named for what it is
    (what does not exist is left to the loader, which says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise CLIError(f"model {path} is {_kind(mode)}, not a model file or folder")


def _probe(folder: Path, option: str) -> None:
    """Create and remove a file in ``folder``: the one check that catches read-only file
    systems (``/sys``, ``/proc``), permissions and full quotas alike, even for root."""
    try:
        fd, name = tempfile.mkstemp(prefix=".softgrad-probe.", dir=folder)
    except OSError as exc:
        raise CLIError(f"{option}: cannot write in folder {str(folder)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(name)


def _same_as_input(path: Path, inputs: Sequence[str | None], option: str) -> None:
    for source in inputs:
        if source is None or not os.path.exists(source):
            continue
        same = path.exists() and os.path.samefile(path, source)
        if same or path.resolve() == Path(source).resolve():
            raise CLIError(f"{option} {str(path)!r} is an input of this command; writing it would destroy it")


def check_output_file(out: str, option: str, inputs: Sequence[str | None] = ()) -> None:
    """``out`` can be written as a new or replaced regular file, and is none of ``inputs``."""
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        raise CLIError(f"{option} {out!r} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise CLIError(f"{option} {out!r} is {_kind(path.stat().st_mode)}; give a regular file name")
    if not path.parent.is_dir():
        raise CLIError(f"{option}: folder {str(path.parent)!r} does not exist")
    _same_as_input(path, inputs, option)
    _probe(path.parent, option)


def check_output_folder(out: str, option: str, inputs: Sequence[str | None] = ()) -> None:
    """``out`` is a folder that exists and is writable, or can be created (its parents too)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {out!r} exists and is not a folder; give a folder")
    _same_as_input(path, inputs, option)
    existing = path
    while not existing.exists():  # mkdir(parents=True) creates the rest
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"{option}: {str(existing)!r} is not a folder")
    _probe(existing, option)


@contextmanager
def writing(option: str, out: str) -> Iterator[None]:
    """An ``OSError`` while writing ``out`` is one error line (the disk filled, a folder vanished)."""
    try:
        yield
    except OSError as exc:
        raise CLIError(f"{option}: cannot write {out!r}: {exc.strerror or exc}") from None
