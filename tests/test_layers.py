"""The import graph of ``src/aerossl``, built statically from the source: no circle, and the
lower parts never import the parts above them.

Every import counts: module level, inside functions and under ``TYPE_CHECKING``. An import of
``aerossl.a.b`` is an edge to the module ``aerossl.a.b`` (not to the package ``aerossl.a``);
``from aerossl.a import b`` is an edge to ``aerossl.a.b`` when that is a module, else to
``aerossl.a``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aerossl

SRC = Path(aerossl.__file__).parent

#: The layers, lowest first: a module of a lower part imports only modules of its own layer or
#: of a layer below (by the longest matching prefix). Modules not listed are above all of them.
LAYERS: list[tuple[str, ...]] = [
    ("aerossl.errors", "aerossl.version", "aerossl.batch", "aerossl.tasks"),
    ("aerossl.config",),
    ("aerossl.data", "aerossl.augment", "aerossl.models"),
    ("aerossl.algorithms",),
]

#: (importer prefixes, imported prefixes they must not import) among the upper parts.
UPPER_RULES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    # the engine trains; it uses a finished run only through the loader
    (("aerossl.engine",), ("aerossl.api", "aerossl.cli", "aerossl.commands", "aerossl.pipelines",
                           "aerossl.runs.predict", "aerossl.runs.export", "aerossl.runs.mapping",
                           "aerossl.runs.suggest", "aerossl.runs.compare")),
    # what uses a finished run does not train, and does not reach the API or the command line
    (("aerossl.runs",), ("aerossl.api", "aerossl.cli", "aerossl.commands", "aerossl.pipelines",
                         "aerossl.engine.trainer")),
    (("aerossl.pipelines",), ("aerossl.api", "aerossl.cli", "aerossl.commands")),
    # the API is the one door below the command line
    (("aerossl.api", "aerossl.validate"), ("aerossl.cli", "aerossl.commands")),
]


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in sorted(SRC.rglob("*.py")):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _targets(module: str, is_pkg: bool, node: ast.AST, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:  # relative import
            anchor = module.split(".") if is_pkg else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                 for a in node.names]
    out = []
    for name in names:
        if not (name == "aerossl" or name.startswith("aerossl.")):
            continue
        while name not in modules and "." in name:  # aerossl.x.attr -> aerossl.x
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the aerossl modules it imports (anywhere in its source)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps.update(t for t in _targets(name, is_pkg, node, modules) if t != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(module: str) -> int:
    """The layer index of ``module`` (``len(LAYERS)``: above every lower part)."""
    best, best_len = len(LAYERS), -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


GRAPH = import_graph()


def test_the_graph_sees_function_local_and_type_checking_imports() -> None:
    # engine.trainer imports the algorithms at module level; data.formats imports config only
    # under TYPE_CHECKING; runs.export imports the version inside a function
    assert "aerossl.algorithms" in GRAPH["aerossl.engine.trainer"]
    assert "aerossl.config" in GRAPH["aerossl.data.formats"]
    assert "aerossl.version" in GRAPH["aerossl.runs.export"]


def test_cycle_finder_finds_a_planted_circle() -> None:
    planted = {**GRAPH, "aerossl.config": GRAPH["aerossl.config"] | {"aerossl.engine.trainer"}}
    assert any("aerossl.config" in c and "aerossl.engine.trainer" in c for c in cycles(planted))


def test_no_import_circle() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("layer", range(len(LAYERS)), ids=lambda i: "+".join(LAYERS[i]))
def test_lower_parts_import_nothing_above_them(layer: int) -> None:
    bad = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() if layer_of(m) == layer
                 for d in deps if layer_of(d) > layer)
    assert not bad, bad


def test_the_layer_rule_catches_an_upward_import() -> None:
    assert layer_of("aerossl.data.folder") < layer_of("aerossl.engine.data")
    assert layer_of("aerossl.config") < layer_of("aerossl.data.formats")
    assert layer_of("aerossl.algorithms.distill") < layer_of("aerossl.runs.loader")


@pytest.mark.parametrize(("importers", "forbidden"), UPPER_RULES,
                         ids=lambda v: v[0] if isinstance(v, tuple) else str(v))
def test_upper_parts_point_one_way(importers: tuple[str, ...], forbidden: tuple[str, ...]
                                   ) -> None:
    bad = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() if _matches(m, importers)
                 for d in deps if _matches(d, forbidden))
    assert not bad, bad


def test_no_module_is_only_a_re_export() -> None:
    """Every module defines something (a package ``__init__`` may gather its parts)."""
    shims = []
    for name, (path, is_pkg) in _modules().items():
        body = [n for n in ast.parse(path.read_text(encoding="utf-8")).body
                if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if is_pkg or not body:
            continue
        if all(isinstance(n, ast.Import | ast.ImportFrom)
               or (isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__"
                                                     for t in n.targets)) for n in body):
            shims.append(name)
    assert not shims, shims


def test_no_algorithm_can_read_hidden_labels_by_name() -> None:
    for f in sorted((SRC / "algorithms").glob("*.py")):
        assert "unlabeled_true" not in f.read_text(), f
