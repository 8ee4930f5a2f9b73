"""The package's layers: no import cycle, and each layer imports only the layers below it.

    functional (pure maths)  <-  networks  <-  bijectors  <-  distributions, models  <-  export, cli

with `_checks`, `variables` and `_compat` beneath everything. Imports are read from the source
(those inside functions included), an import of a submodule counting as an edge to it.
"""

from __future__ import annotations

import ast
import pathlib

import tfp_glow

PACKAGE = pathlib.Path(tfp_glow.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """tfp_glow module -> the tfp_glow modules it imports."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name.startswith("tfp_glow")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfp_glow"):
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    edges.add(submodule if _is_module(submodule) else node.module)
        name = _module_name(path)
        graph[name] = edges - {name}
    return graph


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_is_part_of_an_import_cycle():
    assert _cycles(import_graph()) == []


LAYERS = {
    "tfp_glow.functional": {
        "tfp_glow._checks",
        "tfp_glow._compat",
        "tfp_glow.variables",
        "tfp_glow.functional",
    },
    "tfp_glow.networks": {
        "tfp_glow._checks",
        "tfp_glow._compat",
        "tfp_glow.variables",
        "tfp_glow.functional",
        "tfp_glow.networks",
    },
    "tfp_glow.bijectors": {
        "tfp_glow._checks",
        "tfp_glow._compat",
        "tfp_glow.variables",
        "tfp_glow.functional",
        "tfp_glow.networks",
        "tfp_glow.bijectors",
    },
}


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, imports in import_graph().items():
        for layer, allowed in LAYERS.items():
            if module == layer or module.startswith(layer + "."):
                wrong += [
                    f"{module} imports {target}"
                    for target in imports
                    if not any(target == a or target.startswith(a + ".") for a in allowed)
                ]
    assert wrong == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
