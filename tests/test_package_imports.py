"""The import structure of softgrad: layers, no cycles, no optional backend at import.

Each module under src/softgrad imports only from its own layer or the layers below it.
Layers, bottom to top: ``_array``/``_dasktools``/``config`` -> ``core`` -> ``losses`` ->
layer 3: ``models``, ``teaching`` (derivations, diagnosis) and the autodiff adapters
``torch``/``jax`` (``softgrad/torch.py``, ``softgrad/jax.py``), side by side: a layer-3
package imports nothing from another layer-3 package (teaching and the adapters use core and
losses only) -> ``interfaces`` (CLI, plots, bench, the explorer web app). The package facade
(``softgrad/__init__.py``, ``__main__.py``) sits on top; its metadata
(``from softgrad import __version__``) may be read from anywhere.

No module takes part in an import cycle, lazy imports included: a cycle hidden behind a
function-level import still ties two modules into one.

Imports are read with ``ast`` (inside functions too, so lazy imports count), relative imports
are resolved against the importing module's package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import softgrad

PACKAGE = Path(softgrad.__file__).parent
LAYERS = {
    "_array": 0,
    "_dasktools": 0,
    "config": 0,
    "core": 1,
    "losses": 2,
    "models": 3,
    "teaching": 3,
    "torch": 3,  # autodiff adapters: softgrad/torch.py and softgrad/jax.py, loaded lazily
    "jax": 3,
    "interfaces": 4,
}
SIDE_BY_SIDE = 3  # the layer whose packages may not import each other
FACADE = {"softgrad", "softgrad.__main__"}
# Programs that run in a process of their own (the benchmark's children) use the public facade,
# as a user's program does: they sit on top with it.
PROGRAMS = "softgrad.interfaces._bench_children."
TOP = max(LAYERS.values()) + 1


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of a module of softgrad (the facade is above every layer)."""
    if module in FACADE or module.startswith(PROGRAMS):
        return TOP
    first = module.split(".")[1]
    if first not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add {first!r} to LAYERS and to the notes")
    return LAYERS[first]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every softgrad module the file at ``path`` imports."""
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every softgrad import in ``source``, module ``name``."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                prefix = ".".join(base[: len(base) - (node.level - 1)])
                if node.module:
                    found.append((node.lineno, f"{prefix}.{node.module}"))
                else:  # from . import a, b: submodules (or names of the package itself)
                    found += [(node.lineno, f"{prefix}.{alias.name}") for alias in node.names]
            elif node.module:
                found.append((node.lineno, node.module))
    return [(line, mod) for line, mod in found if mod == "softgrad" or mod.startswith("softgrad.")]


def _existing(module: str) -> str:
    """``from . import name`` may name an attribute, not a module: use the enclosing module."""
    parts = module.split(".")
    while len(parts) > 1:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts = parts[:-1]
    return "softgrad"


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_only_from_own_or_lower_layers(path):
    name = module_name(path)
    own = layer_of(name)
    bad = []
    for line, target in imported_modules(path):
        if target.startswith("softgrad.__") and target.endswith("__"):
            continue  # package metadata such as __version__
        target = _existing(target)
        if layer_of(target) > own:
            bad.append(f"line {line}: {target} (layer {layer_of(target)})")
    assert not bad, f"{name} (layer {own}) imports from a higher layer: " + "; ".join(bad)


def package_of(module: str) -> str:
    """``softgrad.losses.linear`` -> ``losses``."""
    return module.split(".")[1] if module.count(".") else module


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_layer_3_packages_do_not_import_each_other(path):
    """teaching and the adapters build on core and losses only; models does not use them."""
    name = module_name(path)
    if name in FACADE or layer_of(name) != SIDE_BY_SIDE:
        return
    bad = [
        f"line {line}: {target}"
        for line, target in imported_modules(path)
        if not (target.startswith("softgrad.__") and target.endswith("__"))
        and layer_of(_existing(target)) == SIDE_BY_SIDE
        and package_of(_existing(target)) != package_of(name)
    ]
    assert not bad, f"{name} imports another layer-3 package: " + "; ".join(bad)


def test_the_checker_sees_violations():
    """Relative, absolute and lazy imports are resolved: a core module importing up is caught."""
    source = (
        "from ..losses import cross_entropy\n"
        "from . import derivatives\n"
        "def f():\n"
        "    import softgrad.models\n"
        "    from .. import interfaces\n"
        "import numpy\n"
    )
    found = [mod for _, mod in imports_in(source, "softgrad.core.softmax", is_package=False)]
    assert found == ["softgrad.losses", "softgrad.core.derivatives", "softgrad.models", "softgrad.interfaces"]
    assert [layer_of(_existing(m)) for m in found] == [2, 1, 3, 4]
    assert imports_in("from . import x", "softgrad.core", is_package=True) == [(1, "softgrad.core.x")]
    assert _existing("softgrad.core.softmax.log_softmax") == "softgrad.core.softmax"
    assert [layer_of(m) for m in ("softgrad.teaching.derive", "softgrad.torch", "softgrad.jax")] == [3, 3, 3]
    assert package_of("softgrad.teaching.derive") == "teaching" != package_of("softgrad.models.regression")


# ----------------------------------------------------------------------------------------------
# Import cycles


def resolve(target: str, known: set[str]) -> str | None:
    """The module of ``known`` that ``target`` names (``from . import name`` may name an attribute)."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts = parts[:-1]
    return None


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the modules it imports, from ``{module: (source, is_package)}``.

    Lazy (function-level) imports count; package metadata (``softgrad.__version__``) does not.
    The implicit import of a module's parent packages is not an edge (every module would
    otherwise sit in one cycle with the facade).
    """
    known = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, (source, is_package) in sources.items():
        for _, target in imports_in(source, name, is_package):
            if target.startswith("softgrad.__") and target.endswith("__"):
                continue
            module = resolve(target, known)
            if module is not None and module != name:
                graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_sources() -> dict[str, tuple[str, bool]]:
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in SOURCES}


def test_no_import_cycles():
    found = cycles(import_graph(package_sources()))
    assert not found, "import cycles (lazy imports included): " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_sees_a_planted_cycle():
    """A cycle hidden behind a lazy import, as linear.py <-> _dask.py once was, is found; so is
    one planted into the real package's graph."""
    planted = {
        "softgrad.losses.linear": ("from . import _dask\n", False),
        "softgrad.losses._dask": ("def block():\n    from .linear import linear_cross_entropy\n", False),
        "softgrad.losses.cross_entropy": ("from ..core import softmax\n", False),
        "softgrad.core.softmax": ("", False),
    }
    assert cycles(import_graph(planted)) == [["softgrad.losses._dask", "softgrad.losses.linear"]]
    sources = package_sources()
    source, is_package = sources["softgrad.core._dispatch"]
    sources["softgrad.core._dispatch"] = (source + "\ndef f():\n    from . import softmax\n", is_package)
    found = cycles(import_graph(sources))
    assert found == [["softgrad.core._dispatch", "softgrad.core.softmax"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_loads_no_optional_backend():
    """``import softgrad`` and a NumPy softmax load none of the optional libraries."""
    code = (
        "import sys, numpy as np, softgrad as sg\n"
        "sg.softmax(np.array([1.0, 2.0]))\n"
        "heavy = ('torch', 'jax', 'dask', 'cupy', 'matplotlib', 'sklearn', 'pandas', 'sympy', 'starlette')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
