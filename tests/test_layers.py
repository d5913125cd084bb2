"""The import graph flows one way: data -> nn -> diffusion -> conditions -> model -> sampling -> train ->
metrics -> applications (eval drivers, benches, demo, info) -> cli.

Two checks: every ``qac`` import anywhere in a module (function-local ones included) points to its own layer
or one below, and each layer imports in a fresh interpreter in which every layer above it is unimportable.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import qac

SRC = Path(qac.__file__).parent
LAYERS: list[tuple[str, ...]] = [
    ("qac.errors", "qac.util", "qac.viz", "qac.safeio"),
    ("qac.data",),
    ("qac.nn",),
    ("qac.diffusion",),
    ("qac.conditions",),
    ("qac.model",),
    ("qac.sampling",),
    ("qac.train",),
    ("qac.metrics",),
    ("qac.eval", "qac.bench", "qac.edit", "qac.align", "qac.demo", "qac.info"),
    ("qac.cli", "qac.__main__"),
]


def _layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "qac":  # the package facade re-exports entry points lazily
            out.append((name, path))
    return out


def _qac_imports(path: Path, module: str) -> set[str]:
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "qac"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] == "qac":
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in _NAMES}
    return {t for t in found if t != "qac"}


_NAMES = {name for name, _ in _modules()}


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down_or_sideways(module: str, path: Path) -> None:
    own = _layer_of(module)
    upward = sorted(t for t in _qac_imports(path, module) if _layer_of(t) > own)
    assert not upward, f"{module} (layer {own}) imports from higher layers: {upward}"


def test_every_layer_is_known() -> None:
    for name, _ in _modules():
        _layer_of(name)


_BLOCKER = """
import importlib, pkgutil, sys
blocked = {blocked!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(f"layer violation: {{name}} imported")
        return None
sys.meta_path.insert(0, Block())
for top in {layer!r}:
    mod = importlib.import_module(top)
    if hasattr(mod, "__path__"):
        for info in pkgutil.walk_packages(mod.__path__, top + "."):
            importlib.import_module(info.name)
"""


@pytest.mark.parametrize("index", range(len(LAYERS) - 1), ids=[LAYERS[i][0] for i in range(len(LAYERS) - 1)])
def test_layer_imports_without_the_layers_above(index: int) -> None:
    layer = [m for m in LAYERS[index] if (SRC.parent / m.replace(".", "/")).exists()
             or (SRC.parent / (m.replace(".", "/") + ".py")).exists()]
    blocked = [m for above in LAYERS[index + 1:] for m in above]
    code = _BLOCKER.format(blocked=blocked, layer=layer)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
