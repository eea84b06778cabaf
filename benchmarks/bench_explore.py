"""``softgrad explore``: the API's latency and the page's first load, measured on the real server.

Starts the explorer as ``softgrad explore`` does (kernels warmed up, uvicorn on 127.0.0.1, a
free port) in a thread of this process, then:

* API latency: ``POST /api/compute`` over one keep-alive HTTP connection, as the page sends it
  (n = 10 and n = 1000; at n = 1000 the Jacobian is not sent by default, so that case is also
  timed with ``"jacobian": true``, 1M numbers), and ``/api/layer``. Median and 90th percentile
  of the wall time from sending the request to having parsed the JSON reply.
* First load (needs playwright and Debian's chromium): a fresh browser context each time (empty
  cache), navigation start to the first computed probabilities drawn on the page
  (``window.softgradFirstProbabilitiesMs``, set by the page after its first /api/compute
  round trip and drawing).

A program that prints a table, not a timed test:

    .venv/bin/python benchmarks/bench_explore.py
    .venv/bin/python benchmarks/bench_explore.py --screenshot docs/explore.png

The machine is shared (2 cores): numbers vary by tens of percent from run to run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def start_server() -> tuple[Any, str]:
    import uvicorn

    from softgrad.interfaces.explore.app import create_app
    from softgrad.interfaces.explore.compute import warm_up
    from softgrad.interfaces.explore.server import bind, url_of

    warm_up()
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, url_of(sock)


def api_latency(port: int, path: str, body: dict, repeat: int) -> dict[str, float]:
    """Median and p90 milliseconds of ``repeat`` requests on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    times, size = [], 0
    for i in range(repeat + 3):  # three warm-up requests
        start = time.perf_counter()
        conn.request("POST", path, payload, headers)
        response = conn.getresponse()
        raw = response.read()
        json.loads(raw)
        elapsed = time.perf_counter() - start
        assert response.status == 200, raw[:200]
        if i >= 3:
            times.append(elapsed * 1e3)
            size = len(raw)
    conn.close()
    return {
        "median": statistics.median(times),
        "p90": float(np.percentile(times, 90)),
        "kb": size / 1024,
        "repeat": repeat,
    }


def first_loads(url: str, loads: int, chromium: str) -> list[float]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(url)
            page.wait_for_function("() => window.softgradFirstProbabilitiesMs > 0", timeout=30000)
            out.append(float(page.evaluate("() => window.softgradFirstProbabilitiesMs")))
            context.close()
        browser.close()
    return out


def screenshot(url: str, path: str, chromium: str) -> None:
    """The page as docs/explore.png shows it: a few logits, the timing run, the derivation."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page.goto(url)
        page.wait_for_function("() => window.softgradFirstProbabilitiesMs > 0", timeout=30000)
        page.fill("[data-testid=logits]", "8, 4, 1, -2, 12")  # float16 naive overflows (z > 11.09)
        page.fill("[data-testid=timing-n]", "3000")
        page.click("[data-testid=timing-run]")
        page.wait_for_selector("[data-testid=timing] table", timeout=60000)
        page.wait_for_selector("[data-testid=derivation] .katex", timeout=30000)
        page.wait_for_timeout(800)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=path, full_page=True)
        browser.close()
    # a 256-colour palette keeps the flat colours of the page and makes the file a few times smaller
    Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="requests per small case")
    parser.add_argument("--loads", type=int, default=7, help="page loads for the first-load time")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--screenshot", metavar="PATH", default=None, help="also save a screenshot")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    con = Console()
    server, url = start_server()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    rng = np.random.default_rng(0)
    small, big = rng.standard_normal(10).tolist(), rng.standard_normal(1000).tolist()
    layer = {"x": [1.0, -2.0], "W": [[1.0, 0.5], [-1.0, 2.0], [0.3, -0.7]], "target": 0}
    cases = [
        ("POST /api/compute  n = 10", "/api/compute", {"logits": small, "target": 3}, args.repeat),
        (
            "POST /api/compute  n = 1000",
            "/api/compute",
            {"logits": big, "target": 3},
            max(20, args.repeat // 4),
        ),
        (
            "POST /api/compute  n = 1000, jacobian: true",
            "/api/compute",
            {"logits": big, "target": 3, "jacobian": True},
            max(5, args.repeat // 20),
        ),
        ("POST /api/layer  T = 3, N = 2", "/api/layer", layer, args.repeat),
    ]
    table = Table(title=f"softgrad explore: API latency ({url})")
    for col in ("request", "requests", "median ms", "p90 ms", "reply KiB"):
        table.add_column(col, justify="right" if col != "request" else "left")
    for name, path, body, repeat in cases:
        r = api_latency(port, path, body, repeat)
        table.add_row(name, str(repeat), f"{r['median']:.2f}", f"{r['p90']:.2f}", f"{r['kb']:.1f}")
    con.print(table)

    if not Path(args.chromium).exists():
        con.print(f"first load: skipped, no Chromium at {args.chromium}")
    else:
        try:
            loads = first_loads(url, args.loads, args.chromium)
        except ImportError:
            con.print("first load: skipped, playwright is not installed")
        else:
            con.print(
                f"first load (navigation start -> first probabilities, cold cache, {len(loads)} loads): "
                f"median {statistics.median(loads):.0f} ms, min {min(loads):.0f} ms, max {max(loads):.0f} ms"
            )
        if args.screenshot:
            screenshot(url, args.screenshot, args.chromium)
            con.print(f"wrote {args.screenshot} ({Path(args.screenshot).stat().st_size / 1024:.0f} KiB)")
    server.should_exit = True


if __name__ == "__main__":
    main()
