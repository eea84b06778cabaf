"""``softgrad diagnose FILE.py:FUNCTION --kind KIND``: check a hand-written derivative.

Exit code 0 when the function is correct, 1 when mistakes are found, 2 for a bad invocation
(a missing file or function, an unknown kind).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import CLIError, console
from ._paths import check_input_file


def register(sub: Any) -> None:
    """Add ``diagnose`` to ``sub``."""
    from ...teaching.diagnose._kinds import KINDS

    p = sub.add_parser(
        "diagnose",
        help="check a hand-written softmax derivative and name its mistakes (exit 1 when wrong)",
        description="Run FUNCTION from FILE.py on probe inputs, compare it with softgrad's exact "
        "answer, and name the mistakes of the catalog it makes. Kinds: " + ", ".join(KINDS) + ".",
    )
    p.add_argument("target", metavar="FILE.py:FUNCTION", help="the file and the function in it")
    p.add_argument(
        "--kind", required=True, metavar="KIND", help="what the function computes: " + ", ".join(KINDS)
    )
    p.add_argument(
        "--takes", default="logits", metavar="logits|probs", help="the input of a Jacobian or backward"
    )
    p.add_argument(
        "--reduction", default="mean", metavar="mean|sum", help="the loss's reduction over the batch"
    )
    p.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS",
        help="seconds for all the calls together (default 30)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_diagnose)


def load_function(target: str) -> Callable[..., Any]:
    """The function ``FUNCTION`` of the file ``FILE.py`` given as ``FILE.py:FUNCTION``."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise CLIError(f"FILE.py:FUNCTION: expected a file and a function name, got {target!r}")
    path = Path(path_text)
    check_input_file(path_text)
    spec = importlib.util.spec_from_file_location(f"_softgrad_diagnose_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CLIError(f"{path_text}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the user's file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise CLIError(f"{path_text}: importing it raised {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    fn = getattr(module, name, None)
    if fn is None:
        raise CLIError(f"{path_text}: no function {name!r} in it")
    if not callable(fn):
        raise CLIError(f"{path_text}: {name!r} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def _diagnose(args: argparse.Namespace) -> int:
    from ...teaching import diagnose
    from ...teaching.diagnose._kinds import KINDS

    if args.kind not in KINDS:  # before running the user's file
        raise CLIError(f"--kind: expected one of {', '.join(KINDS)}; got {args.kind!r}")
    fn = load_function(args.target)
    limit = {} if args.time_limit is None else {"time_limit": args.time_limit}
    result = diagnose(fn, args.kind, takes=args.takes, reduction=args.reduction, **limit)
    if args.json:
        sys.stdout.write(result.to_json() + "\n")
    else:
        console().print(result)
    return 0 if result.ok else 1
