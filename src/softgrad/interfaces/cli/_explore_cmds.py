"""``softgrad explore``: the interactive page, served locally."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import CLIError

_LOCAL = ("127.0.0.1", "localhost")


def register(sub: Any) -> None:
    """Add ``softgrad explore`` to ``sub``."""
    p = sub.add_parser(
        "explore",
        help="an interactive page: softmax, its Jacobian, the gradients, what breaks numerically",
        description=(
            "Starts a local web application (offline: every asset ships in the package), prints "
            "its URL and opens it in the default browser. Every number on the page is computed "
            "by softgrad in this process. Ctrl-C stops it."
        ),
    )
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.add_argument(
        "--host",
        default=None,
        help="address to listen on (default 127.0.0.1, this machine only; anything else is reachable "
        "from the network and prints a warning)",
    )
    p.set_defaults(func=_explore)


def _explore(args: argparse.Namespace) -> int:
    try:
        from ..explore import server  # imports starlette and uvicorn
    except ImportError as exc:
        raise CLIError(f"softgrad explore needs starlette and uvicorn ({exc})") from None
    port = server.DEFAULT_PORT if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {port}")
    host = server.DEFAULT_HOST if args.host is None else args.host
    if host not in _LOCAL:
        print(
            f"softgrad: warning: listening on {host}: anyone who can reach this machine can use the "
            "explorer (and its CPU)",
            file=sys.stderr,
        )
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        server.serve(sock, open_browser=not args.no_browser, local_only=host in _LOCAL, log=_print_now)
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then re-raises the Ctrl-C it caught
        pass
    print("softgrad explore: stopped", flush=True)
    return 0


def _print_now(message: str) -> None:
    print(message, flush=True)
