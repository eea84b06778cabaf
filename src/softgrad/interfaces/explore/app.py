"""The explorer's web application (Starlette): the JSON API and the packaged page.

Routes (schema in docs/explore.md):

* ``GET /``: the page; ``GET /static/...``: its files (packaged, nothing else is served);
* ``GET /api/info``: limits, version and the derivation topics;
* ``POST /api/compute``, ``/api/layer``, ``/api/timing``, ``/api/derive``: JSON in, JSON out.

Bodies are bounded before they are parsed (``Content-Length`` first, then the stream itself);
every refusal is a 4xx with ``{"error": message}``; anything unexpected is a 500 with a generic
message, never a stack trace. Starlette is imported here, so only when the explorer runs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import __version__
from . import compute, schema
from .schema import MAX_BODY_BYTES, TOPICS_SHOWN, RequestError

__all__ = ["LOCAL_HOSTS", "STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost")

# The page loads only its own files: no CDN, no inline script. KaTeX sets inline styles.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    """Adds the headers above to every response (a plain ASGI wrapper: bodies pass untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        # also what makes a cross-site form post need a CORS preflight, which is never granted
        raise RequestError(
            415, f"send the body as application/json, got {content_type or 'no content type'!r}"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"bad Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"the body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _endpoint(
    parse: Callable[[bytes], dict[str, Any]], run: Callable[[dict[str, Any]], Any]
) -> Callable[[Request], Awaitable[Response]]:
    """A POST endpoint: bounded body -> ``parse`` -> ``run`` in a worker thread -> JSON.

    The JSON is written in the worker thread too: a Jacobian of a million numbers takes about a
    second to encode, and the event loop keeps serving meanwhile.
    """

    def run_to_json(args: dict[str, Any]) -> bytes:
        result = compute.jsonable(run(args))
        return json.dumps(result, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()

    async def endpoint(request: Request) -> Response:
        args = parse(await _read_body(request))
        try:
            body = await run_in_threadpool(run_to_json, args)
        except (ValueError, TypeError) as exc:  # softgrad's own validation: the message names the argument
            raise RequestError(422, str(exc)) from None
        except compute.Stopped:  # Ctrl-C while a timing ran: an answer, not a traceback in the terminal
            raise RequestError(503, "the server is stopping") from None
        return Response(body, media_type="application/json")

    return endpoint


def _topics() -> tuple[str, ...]:
    """The derivation topics the page offers, when :mod:`softgrad.teaching` is installed."""
    try:
        from ...teaching import TOPICS
    except ImportError:
        return ()
    return tuple(t for t in TOPICS_SHOWN if t in TOPICS)


def _parse_derive(body: bytes) -> dict[str, Any]:
    topics = _topics()
    if not topics:
        raise RequestError(503, "derivations need softgrad.teaching, which this installation lacks")
    return schema.parse_derive(body, topics)


def _run_compute(a: dict[str, Any]) -> dict[str, Any]:
    return compute.compute_view(
        a["logits"], temperature=a["temperature"], target=a["target"], jacobian=a["jacobian"]
    )


def _run_layer(a: dict[str, Any]) -> dict[str, Any]:
    return compute.layer_view(a["x"], a["W"], target=a["target"], b=a["b"])


def _run_timing(a: dict[str, Any]) -> dict[str, Any]:
    return {"rows": compute.timing(a["sizes"])}


def _run_derive(a: dict[str, Any]) -> dict[str, Any]:
    return compute.derivation(
        a["topic"], a["logits"], temperature=a["temperature"], target=a["target"], W=a["W"], b=a["b"]
    )


async def _info(request: Request) -> Response:
    return JSONResponse(
        {
            "version": __version__,
            "topics": list(_topics()),
            "limits": {
                "body_bytes": MAX_BODY_BYTES,
                "logits": compute.MAX_LOGITS,
                "jacobian_auto_n": compute.JACOBIAN_AUTO_N,
                "jacobian_max_n": compute.JACOBIAN_MAX_N,
                "layer": compute.LAYER_MAX,
                "timing_n": compute.TIMING_MAX_N,
                "timing_sizes": compute.TIMING_MAX_SIZES,
            },
        }
    )


async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error(exc.status, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, "internal error: the server could not compute this request")


def create_app(*, trusted_hosts: Sequence[str] | None = LOCAL_HOSTS) -> Starlette:
    """The application. ``trusted_hosts``: accepted ``Host`` headers (None: any), which keeps
    other web sites from reaching a local server through DNS rebinding.

    >>> from starlette.testclient import TestClient
    >>> client = TestClient(create_app(), base_url="http://127.0.0.1")
    >>> client.post("/api/compute", json={"logits": [0, 0], "target": 1}).json()["softmax"]
    [0.5, 0.5]
    """
    routes = [
        Route("/", _index),
        Route("/api/info", _info),
        Route("/api/compute", _endpoint(schema.parse_compute, _run_compute), methods=["POST"]),
        Route("/api/layer", _endpoint(schema.parse_layer, _run_layer), methods=["POST"]),
        Route("/api/timing", _endpoint(schema.parse_timing, _run_timing), methods=["POST"]),
        Route("/api/derive", _endpoint(_parse_derive, _run_derive), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(_SecurityHeaders)]
    if trusted_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(trusted_hosts)))
    return Starlette(
        debug=False,
        routes=routes,
        middleware=middleware,
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
