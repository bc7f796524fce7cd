"""The package's layers: the core imports nothing above it, no module imports a
higher layer, and no import circle exists.

Layers, lowest first (a module may import its own layer and those below)::

    base        compressai_psic (lazy __init__), errors, options, padding,
                state_dicts, system (the helpers every layer may use)
    models      compressai_psic.models: the shielded core
    components  losses, transforms, vlp, datasets, zoo, io (the .psic format,
                images, the codec between them)
    pipelines   train, evaluation, utils (CompressAI-style tools: eval_model,
                update_model, plot, pareto, bd, results, export_decoder)
    demo        demo
    cli         cli, __main__

Imports are read from the source (``ast``), including those inside functions,
since a lazy import is still an import; so are imports made by string:
``importlib.import_module(...)`` and ``__import__(...)`` of a constant or an
f-string (``f"{__name__}.{module}"``, its fields filled with the module's own
string constants), and the lazy export tables (dict values such as
``"compressai_psic.models"`` that a ``__getattr__`` imports on first use).
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
    f"{PACKAGE}.padding": "base",
    f"{PACKAGE}.state_dicts": "base",
    f"{PACKAGE}.system": "base",
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
    f"{PACKAGE}.utils": "pipelines",
    f"{PACKAGE}.demo": "demo",
    f"{PACKAGE}.cli": "cli",
    f"{PACKAGE}.__main__": "cli",
}

#: Edges left out of the circle check (none: every circle fails the test).
KNOWN_CIRCLE_EDGES: set = set()

#: Upward edges allowed: the package root is the lazy facade of the public names
#: (its ``_EXPORTS`` table, ``register()`` and ``compressai_psic.zoo``), imported by
#: string on first use, so that ``import compressai_psic`` loads nothing above it.
FACADE_EDGES = {
    (PACKAGE, f"{PACKAGE}.models"),
    (PACKAGE, f"{PACKAGE}.losses"),
    (PACKAGE, f"{PACKAGE}.zoo"),
}

Edge = Tuple[str, str, int]  # importer, imported, line


def native_modules() -> Dict[str, Path]:
    """Dotted name → C source of the package's extension modules (setup.py's
    ``Extension(...)`` calls); they import nothing of the package."""
    setup = ast.parse((SOURCE.parent / "setup.py").read_text(encoding="utf-8"))
    modules = {}
    for node in ast.walk(setup):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "Extension"
            and isinstance(node.args[0], ast.Constant)
        ):
            sources = next(k.value for k in node.keywords if k.arg == "sources")
            modules[node.args[0].value] = SOURCE.parent / sources.elts[0].value
    return modules


def module_files() -> Dict[str, Path]:
    """Dotted name → file of every Python module of the package."""
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


#: Functions whose first argument names a module to import.
IMPORT_FUNCTIONS = ("import_module", "__import__")


def _is_import_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in IMPORT_FUNCTIONS


def _string_candidates(
    node: ast.AST, module: str, package: str, constants: List[str]
) -> List[str]:
    """The dotted names that the string expression ``node`` can take: a constant,
    or an f-string whose ``__name__``/``__package__`` fields are known and whose
    other fields take each string constant of the module in turn."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if not isinstance(node, ast.JoinedStr):
        return []
    names = [""]
    for part in node.values:
        if isinstance(part, ast.Constant):
            names = [name + str(part.value) for name in names]
        elif isinstance(part, ast.FormattedValue):
            field = getattr(part.value, "id", None)
            known = {"__name__": [module], "__package__": [package]}.get(field)
            names = [name + value for name in names for value in known or constants]
    return names


def _resolve(name: str, package: str) -> str:
    """``name`` made absolute (a leading dot is relative to ``package``)."""
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    parts = package.split(".")
    parts = parts[: len(parts) - level + 1]
    return ".".join(parts + ([name.lstrip(".")] if name.lstrip(".") else []))


def string_imports_of(
    module: str, path: Path, modules: Dict[str, Path], source: Optional[str] = None
) -> Iterator[Edge]:
    """Package modules that ``module`` imports by string: the first argument of
    ``import_module``/``__import__`` calls, and the values of dict tables (the
    lazy exports of ``__init__`` files) that name a module of the package.

    ``source`` replaces the file's text (for testing the scanner itself).
    """
    tree = ast.parse(source if source is not None else path.read_text("utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    constants = sorted(
        {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.replace(".", "").replace("_", "").isalnum()
        }
    )
    for node in ast.walk(tree):
        names: List[str] = []
        if _is_import_call(node):
            base = package
            if len(node.args) > 1 or node.keywords:
                anchor = node.args[1] if len(node.args) > 1 else node.keywords[0].value
                base = (_string_candidates(anchor, module, package, []) or [""])[0]
            names = [
                _resolve(name, base)
                for name in _string_candidates(node.args[0], module, package, constants)
            ]
        elif isinstance(node, (ast.Dict, ast.DictComp)):
            values = node.values if isinstance(node, ast.Dict) else [node.value]
            names = [
                value.value
                for value in values
                if isinstance(value, ast.Constant) and isinstance(value.value, str)
            ]
        for name in names:
            if name in modules:
                yield module, name, node.lineno


def import_graph() -> Tuple[Dict[str, Path], List[Edge]]:
    """Every module (the C extensions too, as leaves) and the imports of the
    Python ones."""
    python = module_files()
    modules = {**python, **native_modules()}
    edges = [
        edge
        for name, path in python.items()
        for scan in (imports_of, string_imports_of)
        for edge in scan(name, path, modules)
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


def test_each_subpackage_is_one_layer():
    """A subpackage's modules share its layer, so that the import graph of the
    packages (``compressai_psic.utils`` → ``compressai_psic.models``) has no
    upward edge either: no package holds both bottom helpers and top tools."""
    split = [
        name
        for name in module_files()
        if name.count(".") > 1
        and layer_of(name) != layer_of(".".join(name.split(".")[:2]))
    ]
    assert not split, f"modules in another layer than their package: {split}"
    assert all(key.count(".") <= 1 for key in LAYERS), "list packages, not modules"


def upward_edges(edges: List[Edge]) -> List[Edge]:
    """The edges of ``edges`` that go up a layer."""
    rank = {name: i for i, name in enumerate(LAYER_NAMES)}
    return [edge for edge in edges if rank[layer_of(edge[1])] > rank[layer_of(edge[0])]]


def test_no_import_goes_up_a_layer():
    modules, edges = import_graph()
    stale = FACADE_EDGES - {edge[:2] for edge in edges}
    assert not stale, f"gone, remove them from FACADE_EDGES: {stale}"
    upward = [
        f"{_describe(edge, modules)}: {layer_of(edge[0])} imports {layer_of(edge[1])}"
        for edge in upward_edges(edges)
        if edge[:2] not in FACADE_EDGES
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


def test_string_imports_are_seen():
    """A core module that imports the command line by string, in each of the
    forms the scanner reads, makes upward edges; harmless strings do not."""
    modules = module_files()
    core = f"{PACKAGE}.models.synthetic"
    source = (
        "import importlib\n"
        "from importlib import import_module\n"
        "def load(name):\n"
        "    importlib.import_module('compressai_psic.cli')\n"  # line 4
        "    import_module('..demo', package='compressai_psic.models')\n"  # 5
        "    __import__('compressai_psic.train')\n"  # 6
        "    return importlib.import_module(f'compressai_psic.{name}')\n"  # 7
        "_LAZY = {'run': 'compressai_psic.evaluation', 'x': 'not.a.module'}\n"  # 8
        "KINDS = ('evaluation', 'a phrase, not a module')\n"
        "NOTE = 'compressai_psic.cli in a sentence'\n"
    )
    path = SOURCE / "models" / "synthetic.py"  # never written: the source is given
    edges = list(string_imports_of(core, path, modules, source=source))
    assert sorted(edges) == sorted(
        [
            (core, f"{PACKAGE}.cli", 4),
            (core, f"{PACKAGE}.demo", 5),
            (core, f"{PACKAGE}.train", 6),
            (core, f"{PACKAGE}.evaluation", 7),
            (core, f"{PACKAGE}.evaluation", 8),
        ]
    )
    assert upward_edges(edges) == edges  # the layer rule fails each of them


def test_the_lazy_tables_of_the_package_are_seen():
    modules, edges = import_graph()
    pairs = {edge[:2] for edge in edges}
    assert FACADE_EDGES <= pairs
    assert (f"{PACKAGE}.train", f"{PACKAGE}.train.loop") in pairs  # f"{__name__}.…"


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


def test_the_package_never_imports_the_harness():
    """``tools/`` (retraining the demo models, benchmarks, fuzzers, mutation runs,
    sweeps) imports the package; nothing in the package imports it back, by
    statement or by string."""
    harness = ("tools", "tests", "scripts")
    found = []
    for module, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif _is_import_call(node) and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names = [first.value]
            found += [
                f"{module}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] in harness
            ]
    assert not found, found
