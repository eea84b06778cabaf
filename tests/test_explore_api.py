"""The explorer's JSON API (``softgrad explore``), against PyTorch autograd and softgrad itself.

Through Starlette's TestClient in process: every view's numbers against torch float64 autograd
(an oracle we did not write) and bit for bit against softgrad's functions (the page shows
exactly what the library computes); every bad request the issue lists gets a 4xx JSON message;
nothing outside the packaged static files is served; no response carries a stack trace. The
command itself runs once in a subprocess (real uvicorn): URL printed, a 2-million-logit body
refused while the server keeps serving, Ctrl-C stops it at once.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import softgrad as sg

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from starlette.testclient import TestClient

from softgrad.interfaces.explore import app as app_module
from softgrad.interfaces.explore import compute, schema
from softgrad.interfaces.explore.app import STATIC_DIR, create_app
from softgrad.interfaces.explore.schema import MAX_BODY_BYTES


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(), base_url="http://127.0.0.1")


def floats(values: list) -> np.ndarray:
    """JSON numbers, with the strings "inf", "-inf", "nan" standing for non-finite ones."""
    return np.array(values, dtype=float)


def post(client: TestClient, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


# --- the numbers, against torch autograd and softgrad ----------------------------------------

CASES = [
    ([1.0, 2.0, 3.0], 1.0, 2),
    ([2.0, 1.0, 0.1, -1.0], 0.5, 0),
    ([1000.0, 2000.0, 3000.0], 1.0, 0),
    ([0.0, -1000.0], 1.0, 1),
    ([-3.5, 0.25, 7.0, 1e-3, 2.0, -0.5, 4.0], 3.0, 4),
    ([5.0], 2.0, 0),
]


@pytest.mark.parametrize(("logits", "temperature", "target"), CASES)
def test_compute_matches_torch_autograd(client, logits, temperature, target):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    d = post(client, "/api/compute", {"logits": logits, "temperature": temperature, "target": target})
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy((x / temperature)[None], torch.tensor([target]))
    (grad,) = torch.autograd.grad(loss, x)
    jac = torch.autograd.functional.jacobian(lambda v: torch.softmax(v / temperature, -1), x.detach())
    expect = {
        "softmax": torch.softmax(x / temperature, -1),
        "log_softmax": torch.log_softmax(x / temperature, -1),
        "jacobian": jac,
        "grad": grad,
    }
    for key, want in expect.items():
        np.testing.assert_allclose(floats(d[key]), want.detach().numpy(), rtol=1e-13, atol=1e-16, err_msg=key)
    np.testing.assert_allclose(d["loss"], loss.item(), rtol=1e-14, atol=1e-300)
    assert d["n"] == len(logits) and d["target"] == target and d["temperature"] == temperature


@pytest.mark.parametrize(("logits", "temperature", "target"), CASES)
def test_compute_is_exactly_what_softgrad_computes(client, logits, temperature, target):
    d = post(client, "/api/compute", {"logits": logits, "temperature": temperature, "target": target})
    x = np.array(logits)
    np.testing.assert_array_equal(floats(d["softmax"]), sg.softmax(x, temperature=temperature))
    np.testing.assert_array_equal(floats(d["log_softmax"]), sg.log_softmax(x, temperature=temperature))
    np.testing.assert_array_equal(floats(d["jacobian"]), sg.softmax_jacobian(x, temperature=temperature))
    loss, s_minus_y = sg.cross_entropy_value_and_grad(x / temperature, np.asarray(target))
    assert d["loss"] == float(loss)
    np.testing.assert_array_equal(floats(d["s_minus_y"]), s_minus_y)
    np.testing.assert_array_equal(floats(d["grad"]), s_minus_y / temperature)


def test_defaults_and_the_seed_example(client):
    d = post(client, "/api/compute", {"logits": [1, 2, 3]})
    assert d["temperature"] == 1.0 and d["target"] == 0
    np.testing.assert_allclose(d["softmax"], [0.09003057, 0.24472847, 0.66524096], atol=5e-9)
    d = post(client, "/api/compute", {"logits": [1000, 2000, 3000], "target": 2})
    assert d["softmax"] == [0.0, 0.0, 1.0] and d["loss"] == 0.0
    assert "nan" not in json.dumps(d["softmax"] + d["log_softmax"] + d["grad"])


def test_jacobian_is_sent_up_to_a_size_or_on_request(client):
    rng = np.random.default_rng(1)
    auto = compute.JACOBIAN_AUTO_N
    small = post(client, "/api/compute", {"logits": rng.standard_normal(auto).tolist()})
    assert np.shape(small["jacobian"]) == (auto, auto)
    big = rng.standard_normal(auto + 1).tolist()
    assert post(client, "/api/compute", {"logits": big})["jacobian"] is None
    forced = post(client, "/api/compute", {"logits": big, "jacobian": True})
    np.testing.assert_array_equal(floats(forced["jacobian"]), sg.softmax_jacobian(np.array(big)))
    assert post(client, "/api/compute", {"logits": [1, 2], "jacobian": False})["jacobian"] is None
    too_big = client.post(
        "/api/compute", json={"logits": [0.0] * (compute.JACOBIAN_MAX_N + 1), "jacobian": True}
    )
    assert too_big.status_code == 413 and "jacobian" in too_big.json()["error"]


def test_stability_lab_shows_where_the_naive_versions_break(client):
    d = post(client, "/api/compute", {"logits": [1000, 2000, 3000]})["stability"]
    for dtype in ("float16", "float32", "float64"):
        row = d[dtype]
        assert row["naive_softmax"] == ["nan"] * 3, dtype  # inf / inf
        assert row["softmax"] == [0.0, 0.0, 1.0], dtype
        assert row["log_softmax"] == [-2000.0, -1000.0, 0.0], dtype
    # softmax is fine naively, log(softmax) is not: log(0) = -inf where log_softmax is exact
    lab = post(client, "/api/compute", {"logits": [0, -1000]})["stability"]["float64"]
    assert lab["naive_softmax"] == [1.0, 0.0] and lab["naive_log_softmax"] == [0.0, "-inf"]
    assert lab["log_softmax"] == [0.0, -1000.0]
    # float16 holds nothing above 65504: the input itself overflows before any exp
    f16 = post(client, "/api/compute", {"logits": [1e5, 0]})["stability"]["float16"]
    assert f16["input"] == ["inf", 0.0]
    assert d["float16"]["exp_overflow"] == pytest.approx(np.log(65504.0))


def test_stability_naive_columns_match_numpy_written_here(client):
    x = np.array([3.0, 90.0, -1.0, 10.5])  # float32's exp overflows above 88.72, float64's does not
    lab = post(client, "/api/compute", {"logits": x.tolist(), "temperature": 1.0})["stability"]
    with np.errstate(all="ignore"):
        for dtype in ("float16", "float32", "float64"):
            xd = x.astype(dtype)
            e = np.exp(xd)
            naive = e / e.sum()
            np.testing.assert_array_equal(
                floats(lab[dtype]["naive_softmax"]), naive.astype(float), err_msg=dtype
            )
            np.testing.assert_array_equal(
                floats(lab[dtype]["naive_log_softmax"]), np.log(naive).astype(float)
            )
            np.testing.assert_array_equal(floats(lab[dtype]["softmax"]), sg.softmax(xd).astype(float))
    assert "nan" in lab["float32"]["naive_softmax"] and "nan" not in lab["float64"]["naive_softmax"]


def test_layer_matches_torch_autograd(client):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    x, W, b, k = rng.standard_normal(4), rng.standard_normal((3, 4)), rng.standard_normal(3), 2
    d = post(client, "/api/layer", {"x": x.tolist(), "W": W.tolist(), "b": b.tolist(), "target": k})
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    z = tW @ tx + tb
    loss = F.cross_entropy(z[None], torch.tensor([k]))
    gx, gW, gb = torch.autograd.grad(loss, (tx, tW, tb))
    np.testing.assert_allclose(d["loss"], loss.item(), rtol=1e-14)
    np.testing.assert_allclose(d["softmax"], torch.softmax(z, -1).detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(d["logits"], z.detach().numpy(), rtol=1e-14)
    for key, want in (("grad_x", gx), ("grad_W", gW), ("grad_b", gb), ("grad_logits", gb)):
        np.testing.assert_allclose(d[key], want.numpy(), rtol=1e-13, atol=1e-16, err_msg=key)
    no_bias = post(client, "/api/layer", {"x": [1.0, 2.0], "W": [[1.0, 0.0], [0.0, 1.0]], "target": 1})
    assert no_bias["b"] is None
    np.testing.assert_allclose(
        no_bias["grad_W"], np.outer(sg.softmax([1.0, 2.0]) - [0, 1], [1.0, 2.0]), rtol=1e-15
    )


def test_timing_dense_and_vjp_agree_and_are_timed(client):
    torch = pytest.importorskip("torch")
    rows = post(client, "/api/timing", {"sizes": [8, 300]})["rows"]
    assert [r["n"] for r in rows] == [8, 300]
    for r in rows:
        assert r["dense_s"] > 0 and r["vjp_s"] > 0 and r["ratio"] == pytest.approx(r["dense_s"] / r["vjp_s"])
        assert r["max_abs_diff"] < 1e-15 and r["jacobian_bytes"] == 8 * r["n"] ** 2
    # the VJP the view times is torch's vector-Jacobian product of softmax
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal(50), rng.standard_normal(50)
    _, want = torch.autograd.functional.vjp(lambda v: torch.softmax(v, -1), torch.tensor(x), torch.tensor(g))
    np.testing.assert_allclose(sg.softmax_vjp(sg.softmax(x), g), want.numpy(), rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(g @ sg.softmax_jacobian(x), want.numpy(), rtol=1e-12, atol=1e-17)


def test_info_lists_limits(client):
    info = client.get("/api/info").json()
    assert info["version"] == sg.__version__
    assert info["limits"]["logits"] == compute.MAX_LOGITS and info["limits"]["body_bytes"] == MAX_BODY_BYTES


# --- bad requests: 4xx with a JSON message, and the server keeps serving ----------------------


def assert_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    assert "Traceback" not in response.text


def test_two_million_logits_are_refused_quickly(client):
    body = json.dumps({"logits": [1.0] * 2_000_000, "target": 0}).encode()
    start = time.perf_counter()
    response = client.post("/api/compute", content=body, headers={"content-type": "application/json"})
    assert time.perf_counter() - start < 2.0
    assert_refused(response, 413, "limit")
    assert post(client, "/api/compute", {"logits": [1, 2]})["softmax"][1] > 0.5  # still serving


def test_a_body_without_length_is_cut_off_while_streaming(client):
    def chunks():
        yield b'{"logits": ['
        for _ in range(MAX_BODY_BYTES // 1000 + 10):
            yield b"1.0, " * 200
        yield b"1.0]}"

    response = client.post("/api/compute", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_refused(response, 413, "limit")


def test_more_logits_than_the_limit_within_the_body_size(client):
    response = client.post("/api/compute", json={"logits": [0] * (compute.MAX_LOGITS + 1)})
    assert_refused(response, 413, "logits", str(compute.MAX_LOGITS))


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"logits": [1, 2,', 400, ("malformed JSON",)),
        (b"not json", 400, ("malformed JSON",)),
        (b"\xff\xfe", 400, ("malformed JSON",)),
        (b"[" * 100_000 + b"]" * 100_000, 400, ("malformed JSON",)),
        (b"[1, 2, 3]", 422, ("JSON object",)),
        (b"{}", 422, ("logits", "missing")),
        (b'{"logits": []}', 422, ("logits", "at least one")),
        (b'{"logits": "1, 2, 3"}', 422, ("logits", "list")),
        (b'{"logits": [1, "a", 3]}', 422, ("logits[1]", '"a"')),
        (b'{"logits": [1, null]}', 422, ("logits[1]", "null")),
        (b'{"logits": [1, true]}', 422, ("logits[1]",)),
        (b'{"logits": [1, NaN]}', 422, ("logits[1]", "finite")),
        (b'{"logits": [1, Infinity]}', 422, ("logits[1]", "finite")),
        (b'{"logits": [1, 1' + b"0" * 400 + b"]}", 422, ("logits[1]", "finite")),
        (b'{"logits": [1, 2], "temperature": 0}', 422, ("temperature", "positive")),
        (b'{"logits": [1, 2], "temperature": -1.5}', 422, ("temperature", "positive")),
        (b'{"logits": [1, 2], "temperature": "hot"}', 422, ("temperature",)),
        (b'{"logits": [1, 2], "temperature": null}', 422, ("temperature",)),
        (b'{"logits": [1, 2], "target": 2}', 422, ("target", "0..1", "got 2")),
        (b'{"logits": [1, 2], "target": -1}', 422, ("target",)),
        (b'{"logits": [1, 2], "target": 1.0}', 422, ("target", "integer")),
        (b'{"logits": [1, 2], "target": "0"}', 422, ("target",)),
        (b'{"logits": [1, 2], "jacobian": "yes"}', 422, ("jacobian",)),
        (b'{"logits": [1, 2], "temprature": 2}', 422, ("unknown field", "temprature")),
    ],
)
def test_bad_compute_requests(client, body, status, words):
    response = client.post("/api/compute", content=body, headers={"content-type": "application/json"})
    assert_refused(response, status, *words)


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/layer", {"W": [[1.0]]}, 422, ("x", "missing")),
        ("/api/layer", {"x": [1, 2], "W": [[1, 2], [3]]}, 422, ("W[1]", "len(x) = 2")),
        ("/api/layer", {"x": [1], "W": [[1], [2]], "b": [0]}, 422, ("b", "one per row")),
        ("/api/layer", {"x": [1], "W": [[1], [2]], "target": 2}, 422, ("target",)),
        ("/api/layer", {"x": [1], "W": [], "target": 0}, 422, ("W",)),
        ("/api/layer", {"x": [1], "W": [[1]] * 17}, 413, ("W", "rows")),
        ("/api/timing", {"sizes": []}, 422, ("sizes",)),
        ("/api/timing", {"sizes": [10, 5000]}, 413, ("sizes[1]", "4096")),
        ("/api/timing", {"sizes": [0]}, 422, ("sizes[0]",)),
        ("/api/timing", {"sizes": [10.5]}, 422, ("sizes[0]", "integer")),
        ("/api/timing", {"sizes": list(range(1, 10))}, 413, ("sizes",)),
    ],
)
def test_bad_requests_to_the_other_endpoints(client, path, body, status, words):
    assert_refused(client.post(path, json=body), status, *words)


def test_wrong_content_type_method_and_route(client):
    response = client.post("/api/compute", content=b'{"logits": [1]}', headers={"content-type": "text/plain"})
    assert_refused(response, 415, "application/json")
    assert_refused(client.get("/api/compute"), 405)
    assert_refused(client.get("/api/nothing-here"), 404)


def test_only_local_host_headers_are_served():
    local = TestClient(create_app(), base_url="http://localhost:8765")
    assert local.get("/api/info").status_code == 200
    rebound = TestClient(create_app(), base_url="http://attacker.example")
    assert rebound.get("/api/info").status_code == 400  # DNS rebinding: refused
    assert TestClient(create_app(trusted_hosts=None), base_url="http://192.0.2.1").get("/").status_code == 200


def test_an_unexpected_error_is_a_generic_500_without_a_stack_trace(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(compute, "compute_view", broken)
    client = TestClient(create_app(), base_url="http://127.0.0.1", raise_server_exceptions=False)
    response = client.post("/api/compute", json={"logits": [1.0]})
    assert_refused(response, 500, "internal error")
    assert "secret" not in response.text and "RuntimeError" not in response.text


def test_library_validation_errors_become_422(monkeypatch):
    def refuses(*args, **kwargs):
        raise ValueError("temperature must be finite and positive, got 1e-400")

    monkeypatch.setattr(compute, "compute_view", refuses)
    client = TestClient(create_app(), base_url="http://127.0.0.1")
    assert_refused(client.post("/api/compute", json={"logits": [1.0]}), 422, "temperature")


# --- the static files -----------------------------------------------------------------------


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="logits"' in page.text and 'data-testid="probabilities"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/static/explore.js", "/static/explore.css", "/static/vendor/katex/katex.min.js"):
        assert client.get(path).status_code == 200, path
    css = client.get("/static/vendor/katex/katex.min.css").text
    fonts = set(re.findall(r"url\((fonts/[^)]+\.woff2)\)", css))
    assert len(fonts) >= 15
    for font in fonts:
        assert client.get(f"/static/vendor/katex/{font}").status_code == 200, font


def test_nothing_is_fetched_from_elsewhere():
    """Every src/href of the page is one of ours; no script or style names another host."""
    html = (STATIC_DIR / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith(("/static/", "/api/")), ref
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".js", ".css", ".html") and "vendor" not in path.parts:
            hosts = re.findall(r"https?://[^\s\"'`)]+", path.read_text())
            assert hosts in ([], ["http://www.w3.org/2000/svg"]), (path.name, hosts)
    css = (STATIC_DIR / "vendor/katex/katex.min.css").read_text()
    assert not re.search(r"url\((?!fonts/)", css)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2f__init__.py",
        "/static/vendor/../../compute.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/..%5capp.py",
        "/app.py",
        "/compute.py",
    ],
)
def test_no_path_traversal(client, path):
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert "import" not in response.text and "root:" not in response.text


def test_the_static_files_are_package_data():
    """pyproject's package-data globs cover every file the page needs (a wheel would ship them)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "softgrad"
    ]
    package = Path(sg.__file__).parent
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(package)
        assert any(rel.match(g) for g in globs), rel


@pytest.mark.slow
def test_a_built_wheel_contains_the_static_files(tmp_path):
    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    shutil.copytree(root / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, tmp_path / name)
    out = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; print(b.build_wheel('dist'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import zipfile

    wheel = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    static = "softgrad/interfaces/explore/static/"
    for rel in (
        "index.html",
        "explore.js",
        "explore.css",
        "favicon.svg",
        "vendor/katex/katex.min.js",
        "vendor/katex/katex.min.css",
        "vendor/katex/LICENSE",
        "vendor/katex/fonts/KaTeX_Main-Regular.woff2",
    ):
        assert static + rel in names, rel


# --- the command, in a subprocess with a real uvicorn ---------------------------------------


def start_command(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "softgrad", "explore", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://[\d.]+:(\d+)/", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no URL printed: {line!r} {proc.stderr.read()!r}")
    return proc, match.group(0)


def stop_with_ctrl_c(proc: subprocess.Popen) -> float:
    start = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return time.perf_counter() - start


def raw_post(port: int, body: bytes, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", "/api/compute")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading the whole body
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_the_command_serves_refuses_a_huge_body_and_stops_on_ctrl_c():
    proc, url = start_command("--port", "0")
    try:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        status, body = raw_post(port, json.dumps({"logits": [1.0, 2.0, 3.0]}).encode())
        assert status == 200 and json.loads(body)["softmax"][2] == pytest.approx(0.66524096)
        huge = json.dumps({"logits": [1000.0] * 2_000_000}).encode()
        start = time.perf_counter()
        status, body = raw_post(port, huge)
        assert status == 413 and b"limit" in body and time.perf_counter() - start < 2.0
        status, body = raw_post(port, json.dumps({"logits": [0.0, 0.0]}).encode())
        assert status == 200 and json.loads(body)["softmax"] == [0.5, 0.5]
    finally:
        seconds = stop_with_ctrl_c(proc)
    assert proc.returncode == 0 and seconds < 3.0, (proc.returncode, seconds)
    assert "stopped" in proc.stdout.read()
    assert "Traceback" not in proc.stderr.read()


def test_the_command_refuses_a_busy_port_and_a_bad_one(capsys):
    from softgrad.interfaces.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["explore", "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softgrad: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
    assert main(["explore", "--no-browser", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_another_host_warns():
    proc, _ = start_command("--port", "0", "--host", "0.0.0.0")
    stop_with_ctrl_c(proc)
    assert "warning: listening on 0.0.0.0" in proc.stderr.read()


def test_the_app_module_does_not_load_on_import_softgrad():
    code = "import sys, softgrad; print('starlette' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert app_module.create_app is create_app


# --- the derivation panel's source -----------------------------------------------------------


def test_derive_is_the_teaching_layers_derivation_at_the_scaled_logits(client):
    teaching = pytest.importorskip("softgrad.teaching")
    topics = client.get("/api/info").json()["topics"]
    assert "softmax" in topics and set(topics) <= set(schema.TOPICS_SHOWN)
    for topic in topics:
        point = [1.0, 2.0, 3.0] if "layer" not in topic else [1.0, -2.0]
        d = post(client, "/api/derive", {"topic": topic, "logits": point, "temperature": 2.0})
        want = teaching.derive(topic, at=[v / 2.0 for v in point]).to_dict()
        assert d == compute.jsonable(want), topic
    plain = post(client, "/api/derive", {"topic": "softmax"})
    assert plain["at"] is None and plain["steps"] and plain["definition"]
    keys = [s["key"] for s in plain["steps"]]
    assert {"quotient-rule", "delta-form", "matrix-form", "vjp"} <= set(keys)
    # the numbers at the point are the ones the page shows beside them
    at = post(client, "/api/derive", {"topic": "softmax", "logits": [1.0, 2.0, 3.0]})["at"]
    view = post(client, "/api/compute", {"logits": [1.0, 2.0, 3.0]})
    np.testing.assert_allclose(at["S"], view["softmax"], rtol=1e-15)
    np.testing.assert_allclose(at["jacobian"], view["jacobian"], rtol=1e-14, atol=1e-17)


def test_derive_takes_the_pages_target_and_layer(client):
    pytest.importorskip("softgrad.teaching")
    d = post(client, "/api/derive", {"topic": "cross_entropy", "logits": [1.0, 2.0, 3.0], "target": 2})
    view = post(client, "/api/compute", {"logits": [1.0, 2.0, 3.0], "target": 2})
    np.testing.assert_allclose(d["at"]["gradient"], view["grad"], rtol=1e-14, atol=1e-17)
    assert "target class 2" in d["at"]["where"]
    layer = {"x": [1.0, -2.0], "W": [[0.5, 1.0], [-1.0, 0.25]], "b": [0.1, -0.3], "target": 1}
    card = post(client, "/api/layer", layer)
    body = {
        "topic": "cross_entropy_layer",
        "logits": layer["x"],
        "W": layer["W"],
        "b": layer["b"],
        "target": 1,
    }
    at = post(client, "/api/derive", body)["at"]
    np.testing.assert_allclose(at["S"], card["softmax"], rtol=1e-15)
    np.testing.assert_allclose(at["dL/dW"], card["grad_W"], rtol=1e-14, atol=1e-17)
    body = {"topic": "softmax_layer", "logits": layer["x"], "W": layer["W"], "b": None}
    assert post(client, "/api/derive", body)["at"]["W"] == layer["W"]


def test_bad_derive_options(client):
    pytest.importorskip("softgrad.teaching")
    ce = {"topic": "cross_entropy", "logits": [1.0, 2.0]}
    layer = {"topic": "softmax_layer", "logits": [1.0, 2.0]}
    assert_refused(client.post("/api/derive", json={**ce, "target": 2}), 422, "target")
    assert_refused(client.post("/api/derive", json={**ce, "target": 1.5}), 422, "target")
    assert_refused(
        client.post("/api/derive", json={**ce, "W": [[1.0, 2.0]]}), 422, "cross_entropy takes no W"
    )
    assert_refused(
        client.post("/api/derive", json={"topic": "softmax", "logits": [1.0], "target": 0}), 422, "no target"
    )
    assert_refused(
        client.post("/api/derive", json={"topic": "cross_entropy", "target": 0}), 422, "needs logits"
    )
    assert_refused(
        client.post("/api/derive", json={**layer, "target": 0}), 422, "softmax_layer takes no target"
    )
    assert_refused(client.post("/api/derive", json={**layer, "b": [1.0, 2.0, 3.0]}), 422, "b needs W")
    assert_refused(client.post("/api/derive", json={**layer, "W": [[1.0]]}), 422, "W[0]", "len(x) = 2")
    assert_refused(
        client.post("/api/derive", json={**layer, "W": [[1.0, 2.0]], "b": [1.0, 2.0]}), 422, "b has 2"
    )
    assert_refused(client.post("/api/derive", json={**layer, "W": [[1.0, 2.0]] * 17}), 413, "at most 16 rows")
    big = {"topic": "softmax_layer", "logits": [1.0] * 17, "W": [[1.0] * 17]}
    assert_refused(client.post("/api/derive", json=big), 413, "at most 16 inputs")


def test_bad_derive_requests(client, monkeypatch):
    pytest.importorskip("softgrad.teaching")
    assert_refused(client.post("/api/derive", json={"topic": "nope"}), 422, "topic", "softmax")
    assert_refused(client.post("/api/derive", json={"topic": "softmax", "logits": []}), 422, "logits")
    bad_t = {"topic": "softmax", "logits": [1.0], "temperature": 0}
    assert_refused(client.post("/api/derive", json=bad_t), 422, "temperature")
    monkeypatch.setattr(app_module, "_topics", lambda: ())
    assert_refused(client.post("/api/derive", json={"topic": "softmax"}), 503, "softgrad.teaching")


def test_the_listening_socket_says_it_is_tcp_so_replies_are_not_held_by_nagle():
    """Regression: a socket made with proto 0 kept asyncio from setting TCP_NODELAY on each
    connection, and every keep-alive reply's body waited ~40 ms for a delayed ACK."""
    from softgrad.interfaces.explore.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_stop_work_ends_a_timing_and_warm_up_clears_it():
    compute.stop_work()
    try:
        with pytest.raises(compute.Stopped):
            compute.timing([16])
    finally:
        compute.warm_up()
    assert compute.timing([16])[0]["n"] == 16


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_ctrl_c_during_a_long_timing_exits_promptly():
    """The timing runs in a worker thread that the process waits for: Ctrl-C must end it too."""
    proc, url = start_command("--port", "0")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    replies: list[int] = []

    def long_timing() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            body = json.dumps({"sizes": [4096] * 8})  # tens of seconds of work
            conn.request("POST", "/api/timing", body, {"Content-Type": "application/json"})
            replies.append(conn.getresponse().status)
        except (OSError, http.client.HTTPException):
            replies.append(0)

    thread = threading.Thread(target=long_timing)
    thread.start()
    time.sleep(1.0)
    seconds = stop_with_ctrl_c(proc)
    thread.join(timeout=10)
    assert proc.returncode == 0 and seconds < 5.0, (proc.returncode, seconds)
    assert replies and replies[0] != 200
    assert "Traceback" not in proc.stderr.read()
