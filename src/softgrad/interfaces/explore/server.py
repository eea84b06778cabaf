"""Run the explorer: one uvicorn process on a socket bound before it starts.

Binding first means the URL (with the port actually chosen, for ``port=0``) is known before
the server runs, and a port in use is an error message, not a traceback. The URL is printed
once uvicorn has started, so its Ctrl-C handler is in place by then: a Ctrl-C between the
print and uvicorn's start was swallowed, and the server kept running. uvicorn handles Ctrl-C:
it stops accepting, closes idle connections and returns within ``timeout_graceful_shutdown``.
"""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import Any

import uvicorn

from .app import LOCAL_HOSTS, create_app
from .compute import stop_work, warm_up

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "bind", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (``port=0``: a free one). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio switches Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP, and without it each reply's body waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _announce_when_started(server: Any, url: str, log: Callable[[str], None], open_browser: bool) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.02)
    if server.started:
        log(f"softgrad explore: serving on {url}  (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(url)


class _Server(uvicorn.Server):
    """uvicorn's server, which also stops a timing running in a worker thread on Ctrl-C (the
    process would otherwise wait for it before exiting)."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        stop_work()
        super().handle_exit(sig, frame)


def serve(
    sock: socket.socket,
    *,
    open_browser: bool = True,
    local_only: bool = True,
    log: Callable[[str], None] = print,
) -> None:
    """Serve the explorer on ``sock`` until Ctrl-C. ``local_only`` accepts only local Host headers."""
    app = create_app(trusted_hosts=LOCAL_HOSTS if local_only else None)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = _Server(config)
    url = url_of(sock)
    warm_up()
    args = (server, url, log, open_browser)
    threading.Thread(target=_announce_when_started, args=args, daemon=True).start()
    server.run(sockets=[sock])
