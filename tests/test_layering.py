"""The package's layers: the core imports nothing above it, no module imports a
higher layer, and no import circle exists.

Layers, lowest first (a module may import its own layer and those below)::

    base        compressai_psic (lazy __init__), errors, utils (its helpers)
    models      compressai_psic.models: the shielded core
    components  losses, transforms, vlp, datasets, zoo, io (the .psic format,
                images, the codec between them)
    pipelines   train, evaluation, the tools of utils (eval_model, update_model,
                plot, pareto, bd, results)
    demo        demo
    cli         cli, __main__

Imports are read from the source (``ast``), including those inside functions,
since a lazy import is still an import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

PACKAGE = "compressai_psic"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE

#: Layer names, lowest first.
LAYER_NAMES = ("base", "models", "components", "pipelines", "demo", "cli")

#: Module or package → layer; a module takes the entry of its longest prefix.
LAYERS: Dict[str, str] = {
    PACKAGE: "base",
    f"{PACKAGE}.errors": "base",
    f"{PACKAGE}.utils": "base",
    f"{PACKAGE}.models": "models",
    **{
        f"{PACKAGE}.{name}": "components"
        for name in (
            "losses",
            "transforms",
            "vlp",
            "datasets",
            "zoo",
            "io",
        )
    },
    f"{PACKAGE}.train": "pipelines",
    f"{PACKAGE}.evaluation": "pipelines",
    **{
        f"{PACKAGE}.utils.{name}": "pipelines"
        for name in ("eval_model", "update_model", "plot", "pareto", "bd", "results")
    },
    f"{PACKAGE}.demo": "demo",
    f"{PACKAGE}.cli": "cli",
    f"{PACKAGE}.__main__": "cli",
}

#: Edges left out of the circle check (none: every circle fails the test).
KNOWN_CIRCLE_EDGES: set = set()

Edge = Tuple[str, str, int]  # importer, imported, line


def module_files() -> Dict[str, Path]:
    """Dotted name → file of every module of the package."""
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> Optional[str]:
    """The layer of ``module`` (its longest listed prefix), ``None`` if unlisted."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def _base_of(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    if node.level > 1:
        parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: Dict[str, Path]) -> Iterator[Edge]:
    """Package modules that ``module`` imports, anywhere in its source.

    ``from X import name`` counts as an import of ``X.name`` when that is a
    module, else of ``X``; the parent packages Python loads on the way are not
    counted.
    """
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base_of(module, path, node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield module, target, node.lineno


def import_graph() -> Tuple[Dict[str, Path], List[Edge]]:
    modules = module_files()
    edges = [
        edge
        for name, path in modules.items()
        for edge in imports_of(name, path, modules)
    ]
    return modules, edges


def find_cycle(nodes: List[str], edges: List[Edge]) -> Optional[List[Edge]]:
    """The edges of one import circle, or ``None`` when there is none."""
    following: Dict[str, List[Edge]] = {node: [] for node in nodes}
    for edge in edges:
        if edge[1] in following and edge[0] != edge[1]:
            following[edge[0]].append(edge)
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[Edge] = []

    def visit(node: str) -> Optional[List[Edge]]:
        state[node] = 1
        for edge in following[node]:
            target = edge[1]
            if state.get(target) == 1:
                start = next(i for i, e in enumerate(path) if e[0] == target)
                return path[start:] + [edge] if path else [edge]
            if target not in state:
                path.append(edge)
                cycle = visit(target)
                if cycle:
                    return cycle
                path.pop()
        state[node] = 2
        return None

    for node in nodes:
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _describe(edge: Edge, modules: Dict[str, Path]) -> str:
    importer, imported, line = edge
    where = modules[importer].relative_to(SOURCE.parent)
    return f"{importer} -> {imported} ({where}:{line})"


# ---------------------------------------------------------------------------- tests


def test_every_module_has_a_layer():
    unlisted = [name for name in module_files() if layer_of(name) is None]
    assert not unlisted, f"modules without a layer (add them to LAYERS): {unlisted}"


def test_no_import_goes_up_a_layer():
    modules, edges = import_graph()
    rank = {name: i for i, name in enumerate(LAYER_NAMES)}
    upward = [
        f"{_describe(edge, modules)}: {layer_of(edge[0])} imports {layer_of(edge[1])}"
        for edge in edges
        if rank[layer_of(edge[1])] > rank[layer_of(edge[0])]
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(
        upward
    )


def test_no_import_circles():
    modules, edges = import_graph()
    known = [edge for edge in edges if edge[:2] in KNOWN_CIRCLE_EDGES]
    stale = KNOWN_CIRCLE_EDGES - {edge[:2] for edge in known}
    assert not stale, f"fixed circles, remove them from KNOWN_CIRCLE_EDGES: {stale}"
    edges = [edge for edge in edges if edge[:2] not in KNOWN_CIRCLE_EDGES]
    cycle = find_cycle(sorted(modules), edges)
    assert cycle is None, "import circle:\n" + "\n".join(
        _describe(edge, modules) for edge in cycle
    )


def test_cycle_finder_finds_a_planted_circle():
    edges = [("a", "b", 1), ("b", "c", 2), ("c", "a", 3), ("c", "d", 4)]
    assert find_cycle(["a", "b", "c", "d"], edges) == edges[:3]
    assert find_cycle(["a", "b", "c", "d"], edges[:2] + edges[3:]) is None


@pytest.mark.slow
def test_the_core_imports_nothing_above_it():
    code = (
        "import sys, compressai_psic.models\n"
        "print('\\n'.join(m for m in sys.modules "
        "if m.startswith(('compressai_psic', 'tests'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=SOURCE.parent,
    )
    loaded = result.stdout.split()
    assert "compressai_psic.models" in loaded
    above = [
        name
        for name in loaded
        if name.startswith("tests") or layer_of(name) not in ("base", "models")
    ]
    assert not above, f"import compressai_psic.models loaded {above}"
