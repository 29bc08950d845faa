"""The architecture's layering holds: each module imports only the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Layers in order (DESIGN.md "Layers"); a module may import its own layer and earlier ones.
# The error tree is a leaf (it imports nothing from rxllm at run time) that every layer
# raises from, the wire codecs included, so it comes first.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("rxllm.errors",)),
    ("wire", ("rxllm.wire",)),
    (
        "core",
        (
            "rxllm.events",
            "rxllm.request",
            "rxllm.response",
            "rxllm.typing",
            "rxllm._valve",
            "rxllm.schema",
        ),
    ),
    ("dialects", ("rxllm.providers",)),
    ("transport", ("rxllm.transport",)),
    ("bridges", ("rxllm.aio", "rxllm._replay")),
    ("operators", ("rxllm.operators",)),
    (
        "composition",
        (
            "rxllm.chain",
            "rxllm.roundtable",
            "rxllm._roundtable",
            "rxllm.hub",
            "rxllm.store",
            "rxllm.pipeline",
            "rxllm._pipeline",
            "rxllm.batch",
            "rxllm._batch",
        ),
    ),
    (
        "edges",
        (
            "rxllm.sim",
            "rxllm.cli",
            "rxllm._cli",
            "rxllm._demo",
            "rxllm.testing",
            "rxllm.__main__",
            "rxllm",
        ),
    ),
]


def _layer(module: str) -> int:
    best = -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (
                module == prefix
                or module.startswith(prefix + ".")
                or (prefix.startswith("rxllm._") and module.startswith(prefix))
            ):
                # the bare package "rxllm" only when nothing more specific matched
                best = max(best, index) if prefix != "rxllm" else (index if best < 0 else best)
    return best


def _modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in (("rxllm", "rxllm"), ("operators", "rxllm.operators")):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found.append((".".join([package, *parts]), path))
    return found


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    # Imports under "if TYPE_CHECKING:" exist only for the type checker.
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target != "rxllm":  # "from rxllm import operators": the submodule only
                names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "rxllm" or n.startswith("rxllm.")}


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v))
def test_module_imports_only_earlier_layers(module: str, path: Path) -> None:
    """No module imports a later layer (operators never import the transport, and so on)."""
    own = _layer(module)
    assert own >= 0, f"{module} belongs to no layer"
    later = sorted(name for name in _imports(module, path) if _layer(name) > own)
    assert later == [], f"{module} (layer {LAYERS[own][0]}) imports later layers: {later}"


def test_no_aiohttp_outside_transport_and_edges() -> None:
    """aiohttp client code lives in the transport; only the edges may use aiohttp.web."""
    for module, path in _modules():
        layer = LAYERS[_layer(module)][0]
        if layer in ("transport", "edges"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not any(n.split(".")[0] == "aiohttp" for n in names), module


def test_operators_never_import_the_transport() -> None:
    """Operators are pure Rx: they never reach the transport, whatever the layer order allows."""
    for module, path in _modules():
        if module.startswith("rxllm.operators"):
            bad = sorted(n for n in _imports(module, path) if n.startswith("rxllm.transport"))
            assert bad == [], f"{module} imports {bad}"
