"""Each module under src/softgrad imports only from its own layer or the layers below it.

Layers, bottom to top: ``_array``/``config`` -> ``core`` -> ``losses`` -> ``models`` ->
``interfaces``. The package facade (``softgrad/__init__.py``, ``__main__.py``) sits on top;
its metadata (``from softgrad import __version__``) may be read from anywhere.
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
LAYERS = {"_array": 0, "config": 0, "core": 1, "losses": 2, "models": 3, "interfaces": 4}
FACADE = {"softgrad", "softgrad.__main__"}
TOP = max(LAYERS.values()) + 1


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of a module of softgrad (the facade is above every layer)."""
    if module in FACADE:
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


def test_import_loads_no_optional_backend():
    """``import softgrad`` and a NumPy softmax load none of the optional libraries."""
    code = (
        "import sys, numpy as np, softgrad as sg\n"
        "sg.softmax(np.array([1.0, 2.0]))\n"
        "heavy = ('torch', 'jax', 'dask', 'cupy', 'matplotlib', 'sklearn', 'pandas')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
