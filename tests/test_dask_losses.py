"""``cross_entropy`` and ``linear_cross_entropy`` on row-chunked Dask arrays (issue #6).

Oracle: PyTorch (``F.cross_entropy`` and autograd through ``x @ W.T + b``) on the same rows in
float64. Laziness: the calls run under a scheduler that raises if anything is computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
torch = pytest.importorskip("torch")

import softgrad as sg  # noqa: E402

B, N, T = 500, 7, 5


def _never_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("a Dask graph was computed where the result should stay lazy")


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    return {
        "x": rng.standard_normal((B, N)),
        "W": rng.standard_normal((T, N)),
        "b": rng.standard_normal(T),
        "y": rng.integers(0, T, B),
        "P": rng.dirichlet(np.ones(T), B),
        "sw": rng.uniform(0.1, 2.0, B),
        "weight": rng.uniform(0.5, 2.0, T),
    }


OPTIONS = [
    {},
    {"weight": True, "ignore_index": 2},
    {"label_smoothing": 0.2, "weight": True},
]


def _torch_loss(
    d: dict[str, np.ndarray], reduction: str, opts: dict[str, Any], probs: bool = False
) -> tuple[Any, Any, Any, Any]:
    """Loss and gradients wrt x, W, b from PyTorch autograd on the unfused computation."""
    x = torch.tensor(d["x"], requires_grad=True)
    W = torch.tensor(d["W"], requires_grad=True)
    b = torch.tensor(d["b"], requires_grad=True)
    target = torch.tensor(d["P"]) if probs else torch.tensor(d["y"])
    kw: dict[str, Any] = {"label_smoothing": opts.get("label_smoothing", 0.0)}
    if opts.get("weight"):
        kw["weight"] = torch.tensor(d["weight"])
    if "ignore_index" in opts:
        kw["ignore_index"] = opts["ignore_index"]
    loss = torch.nn.functional.cross_entropy(x @ W.T + b, target, reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy(), W.grad.numpy(), b.grad.numpy()


def _ours(opts: dict[str, Any], d: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {k: v for k, v in opts.items() if k != "weight"}
    if opts.get("weight"):
        out["weight"] = d["weight"]
    return out


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=["plain", "weight+ignore", "smoothing"])
def test_cross_entropy_on_dask(data: dict[str, np.ndarray], reduction: str, opts: dict[str, Any]) -> None:
    z = data["x"] @ data["W"].T + data["b"]
    zd = da.from_array(z, chunks=(120, T))
    yd = da.from_array(data["y"], chunks=120)
    with dask.config.set(scheduler=_never_compute):
        loss = sg.cross_entropy(zd, yd, reduction=reduction, **_ours(opts, data))
    assert isinstance(loss, da.Array)
    expected = _torch_loss(data, reduction, opts)[0]
    np.testing.assert_allclose(loss.compute(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=["plain", "weight+ignore", "smoothing"])
@pytest.mark.parametrize(
    "chunks", [(500, 7), (120, 7), ((3, 200, 297), (4, 3))], ids=["one", "even", "uneven"]
)
def test_linear_cross_entropy_on_dask(
    data: dict[str, np.ndarray], reduction: str, opts: dict[str, Any], chunks: tuple
) -> None:
    xd = da.from_array(data["x"], chunks=chunks)
    with dask.config.set(scheduler=_never_compute):
        loss, (dx, dW, db) = sg.linear_cross_entropy(
            xd, data["W"], data["y"], data["b"], reduction=reduction, return_grad=True, chunk_size=64,
            **_ours(opts, data),
        )  # fmt: skip
    assert all(isinstance(a, da.Array) for a in (loss, dx, dW, db))
    assert dx.chunks[0] == xd.chunks[0]  # row-chunked like x: nothing gathered
    got = dask.compute(loss, dx, dW, db)
    for ours, ref, name in zip(
        got, _torch_loss(data, reduction, opts), ("loss", "dx", "dW", "db"), strict=True
    ):
        np.testing.assert_allclose(ours, ref, rtol=1e-11, atol=1e-14, err_msg=name)


def test_linear_cross_entropy_options(data: dict[str, np.ndarray]) -> None:
    xd = da.from_array(data["x"], chunks=(150, N))
    # probability targets, sample weights, Dask W and b, no gradients
    loss = sg.linear_cross_entropy(
        xd, da.from_array(data["W"]), da.from_array(data["P"], chunks=(150, T)), data["b"], reduction="sum"
    )
    np.testing.assert_allclose(loss.compute(), _torch_loss(data, "sum", {}, probs=True)[0], rtol=1e-12)
    sw = da.from_array(data["sw"], chunks=(100,))  # other chunks than x: realigned
    got = sg.linear_cross_entropy(xd, data["W"], data["y"], data["b"], sample_weight=sw, return_grad=True)
    ref = sg.linear_cross_entropy(
        data["x"], data["W"], data["y"], data["b"], sample_weight=data["sw"], return_grad=True
    )
    np.testing.assert_allclose(got[0].compute(), ref[0], rtol=1e-12)
    for ours, theirs in zip(dask.compute(*got[1]), ref[1], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-14)
    # float32 stays float32
    x32 = da.from_array(data["x"].astype(np.float32), chunks=(150, N))
    l32 = sg.linear_cross_entropy(x32, data["W"].astype(np.float32), data["y"], data["b"].astype(np.float32))
    assert l32.dtype == np.float32
    np.testing.assert_allclose(l32.compute(), _torch_loss(data, "mean", {})[0], rtol=1e-5)
    # every row ignored: the mean is NaN and the gradients 0, as in memory
    y_ignored = np.full(B, -100)
    l_nan, (dx, dW, db) = sg.linear_cross_entropy(xd, data["W"], y_ignored, return_grad=True)
    assert np.isnan(l_nan.compute()) and not np.any(dW.compute()) and not np.any(dx.compute())
    assert not np.any(db.compute())


def test_linear_cross_entropy_graph(data: dict[str, np.ndarray]) -> None:
    """W enters the graph once, not once per block."""
    xd = da.from_array(data["x"], chunks=(50, N))
    loss = sg.linear_cross_entropy(xd, data["W"], data["y"], data["b"])
    graph = dict(loss.__dask_graph__())
    holding_W = [k for k, task in graph.items() if _holds(task, data["W"])]
    assert len(holding_W) == 1, holding_W


def _holds(task: Any, W: np.ndarray) -> bool:
    """Whether a task's literal arguments include the array ``W`` (looked for two levels deep)."""
    stack: list[Any] = [task]
    for _ in range(4):
        nxt: list[Any] = []
        for t in stack:
            if isinstance(t, np.ndarray) and t.shape == W.shape and np.array_equal(t, W):
                return True
            if isinstance(t, (tuple, list)):
                nxt.extend(t)
            for attr in ("args", "value"):
                v = getattr(t, attr, None)
                if v is not None and not isinstance(t, np.ndarray):
                    nxt.extend(v if isinstance(v, (tuple, list)) else [v])
        stack = nxt
    return False


def test_linear_cross_entropy_bad_input(data: dict[str, np.ndarray]) -> None:
    xd = da.from_array(data["x"], chunks=(150, N))
    with pytest.raises(ValueError, match="reduction"):
        sg.linear_cross_entropy(xd, data["W"], data["y"], reduction="avg")
    with pytest.raises(ValueError, match="W must have shape"):
        sg.linear_cross_entropy(xd, data["W"][:, :3], data["y"])
    with pytest.raises(ValueError, match="target has 499 rows"):
        sg.linear_cross_entropy(xd, data["W"], data["y"][:-1])
    with pytest.raises(ValueError, match="chunk_size"):
        sg.linear_cross_entropy(xd, data["W"], data["y"], chunk_size=0)
