"""The explorer's page in a real headless Chromium (Debian's ``chromium``), driven by Playwright.

The real server (uvicorn in a thread on 127.0.0.1, a free port) serves the page; the tests
type logits and read back what the page shows, compared bit for bit with softgrad (each
number cell carries the JSON value it was drawn from in ``data-value``). Every request the
page makes must go to the server (offline), and the page must log no console error.

Skipped, with the reason, where playwright or chromium is missing; CI installs chromium and
sets ``SOFTGRAD_REQUIRE_BROWSER=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import softgrad as sg

pytestmark = pytest.mark.browser

REQUIRED = os.environ.get("SOFTGRAD_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("SOFTGRAD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"SOFTGRAD_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright.sync_api import sync_playwright
except ImportError:
    _unavailable("playwright is not installed (pip install playwright; never `playwright install`)")
if not Path(CHROMIUM).exists():
    _unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    import uvicorn

    from softgrad.interfaces.explore.app import create_app
    from softgrad.interfaces.explore.compute import warm_up
    from softgrad.interfaces.explore.server import bind, url_of

    warm_up()  # as `softgrad explore` does before it serves
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    yield url_of(sock)
    server.should_exit = True
    thread.join(timeout=5)


class Recorder:
    """Console errors, page errors and the URL of every request the page makes."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []

    def attach(self, page: Any) -> None:
        page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        page.on("request", lambda r: self.urls.append(r.url))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def page(browser: Any, server_url: str, recorder: Recorder) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    recorder.attach(page)
    page.goto(server_url)
    page.wait_for_function("() => window.softgradFirstProbabilitiesMs > 0", timeout=15000)
    yield page
    page.close()


def type_logits(page: Any, text: str) -> None:
    """Type into the logits field and wait until the table shows those logits."""
    page.fill("[data-testid=logits]", text)
    want = ",".join(repr(float(v)).removesuffix(".0") for v in text.split(","))
    page.wait_for_function(
        "(want) => [...document.querySelectorAll('#probabilities tbody td:nth-child(2)')]"
        ".map((td) => td.dataset.value).join(',') === want",
        arg=want,
        timeout=10000,
    )


def shown(page: Any, selector: str) -> tuple[np.ndarray, list[str]]:
    """The exact values (data-value) and the text of the cells matching ``selector``."""
    cells = page.locator(selector)
    values = [cells.nth(i).get_attribute("data-value") for i in range(cells.count())]
    texts = [cells.nth(i).inner_text() for i in range(cells.count())]
    return np.array(values, dtype=float), texts


def test_typed_logits_show_softgrads_probabilities(page):
    type_logits(page, "1, 2, 3")
    values, texts = shown(page, "[data-testid=probabilities] td.prob")
    np.testing.assert_array_equal(values, sg.softmax(np.array([1.0, 2.0, 3.0])))
    assert texts == ["0.090031", "0.244728", "0.665241"]  # at least 4 decimals
    logp, _ = shown(page, "[data-testid=probabilities] td.logp")
    np.testing.assert_array_equal(logp, sg.log_softmax(np.array([1.0, 2.0, 3.0])))
    grad, _ = shown(page, "[data-testid=gradient] td.grad")
    _, want = sg.cross_entropy_value_and_grad(np.array([1.0, 2.0, 3.0]), np.asarray(0))  # target class 0
    np.testing.assert_array_equal(grad, want)
    assert page.locator("#prob-chart svg rect").count() == 3


def test_large_logits_show_no_nan_and_the_lab_shows_the_naive_nan(page):
    type_logits(page, "1000, 2000, 3000")
    values, _ = shown(page, "[data-testid=probabilities] td.prob")
    np.testing.assert_array_equal(values, [0.0, 0.0, 1.0])
    for testid in ("probabilities", "gradient", "loss", "jacobian"):
        text = page.locator(f"[data-testid={testid}]").inner_text()
        assert "NaN" not in text and "∞" not in text, (testid, text)
    assert page.locator("[data-testid=loss]").get_attribute("data-value") == "2000"
    for dtype in ("float16", "float32", "float64"):
        naive = page.locator(f"[data-testid=stab-{dtype}-naive_softmax]")
        ours = page.locator(f"[data-testid=stab-{dtype}-softmax]")
        assert naive.get_attribute("data-verdict") == "bad" and "NaN" in naive.inner_text()
        assert ours.get_attribute("data-verdict") == "ok" and "NaN" not in ours.inner_text()


def test_temperature_target_and_jacobian_hover(page):
    type_logits(page, "0.5, -1, 2, 0")
    page.fill("[data-testid=temperature]", "2.5")
    page.select_option("[data-testid=target]", "2")
    x = np.array([0.5, -1.0, 2.0, 0.0])
    want = sg.softmax(x, temperature=2.5)
    page.wait_for_function(
        "(want) => document.querySelector('#probabilities td.prob').dataset.value === want",
        arg=repr(float(want[0])),
    )
    page.wait_for_function("() => document.querySelector('#probabilities tr.target td').textContent === '2'")
    values, _ = shown(page, "[data-testid=probabilities] td.prob")
    np.testing.assert_array_equal(values, want)
    box = page.locator("#jacobian svg").bounding_box()
    # the heat map is 4 x 4 cells after an 18-unit label margin: aim at the centre of cell (1, 3)
    scale = box["width"] / (18 + 4 * 90)
    page.mouse.move(box["x"] + (18 + 3.5 * 90) * scale, box["y"] + (18 + 1.5 * 90) * scale)
    readout = page.locator("[data-testid=jacobian-readout]")
    assert readout.inner_text().startswith("J[1, 3]")
    jac = sg.softmax_jacobian(x, temperature=2.5)
    assert float(readout.get_attribute("data-value")) == jac[1, 3]


def test_a_bad_input_shows_the_servers_message(page, recorder):
    before = len(recorder.errors)
    page.fill("[data-testid=logits]", "1, abc, 3")
    error = page.locator("[data-testid=error]")
    error.wait_for(state="visible")
    assert "logits[1]" in error.inner_text() and '"abc"' in error.inner_text()
    type_logits(page, "1, 2")
    assert error.is_hidden()
    # Chromium logs every 4xx response as a console error: this one was asked for
    recorder.errors[before:] = [e for e in recorder.errors[before:] if "status of 422" not in e]


def test_layer_and_timing_views(page):
    page.wait_for_selector("[data-testid=layer] table")
    loss = float(page.locator("[data-testid=layer-loss]").get_attribute("data-value"))
    x, W = np.array([1.0, -2.0]), np.array([[1.0, 0.5], [-1.0, 2.0], [0.3, -0.7]])
    assert loss == float(sg.cross_entropy(W @ x, np.asarray(0)))
    page.fill("[data-testid=timing-n]", "400")
    page.click("[data-testid=timing-run]")
    page.wait_for_selector("[data-testid=timing] table", timeout=20000)
    rows = page.locator("[data-testid=timing] tbody tr")
    sizes = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert sizes == ["10", "100", "400", "1,000"]
    assert page.locator("#timing-chart polyline").count() == 2


def test_derivation_panel(page):
    type_logits(page, "1, 2, 3")
    panel = page.locator("[data-testid=derivation]")
    panel.locator("h3, p").first.wait_for(timeout=20000)
    assert page.locator("[data-testid=topic] option").count() >= 5
    page.select_option("[data-testid=topic]", "cross_entropy")
    page.wait_for_selector("[data-testid=derivation] li[data-key=result] .katex", timeout=20000)
    assert panel.locator(".katex-error").count() == 0
    assert "At x = (1, 2, 3)" in page.locator("[data-testid=derivation-at]").inner_text()
    page.select_option("[data-testid=topic]", "cross_entropy_layer")
    page.wait_for_selector("[data-testid=derivation] li[data-key=outer-product] .katex", timeout=20000)
    at = page.locator("[data-testid=derivation-at]")
    assert "At x = (1, -2)" in at.inner_text() and at.locator(".katex").count() >= 4  # x, W, y, S, dL/dW
    assert (
        "are the Softmax layer card's" in at.inner_text()
        and "T = 3 classes, the weights W below" in at.inner_text()
    )
    assert panel.locator(".katex-error").count() == 0
    # the card's own W (two classes now) and its target reach the panel
    page.fill("[data-testid=layer-W]", "2, 0\n0, 1")
    page.select_option("[data-testid=layer-target]", "1")
    page.locator("[data-testid=derivation-at]", has_text="T = 2 classes").wait_for(timeout=20000)
    assert "target class 1" in page.locator("[data-testid=derivation-at]").inner_text()


def test_screenshot(page, tmp_path):
    type_logits(page, "2, 1, 0.1, -1")
    path = tmp_path / "explore.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000


def test_everything_came_from_the_server_and_no_console_errors(recorder, server_url):
    """Runs last in this module: looks back over every page the tests above opened."""
    assert recorder.urls, "no requests recorded"
    foreign = [u for u in recorder.urls if not (u.startswith(server_url) or u.startswith("data:"))]
    assert not foreign
    assert not recorder.errors
