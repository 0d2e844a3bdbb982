"""The library's imports point down, and file names live in resumo.artifacts (see docs/development.md, "Layers")."""

import ast
import re
from pathlib import Path

import resumo

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = Path(resumo.__file__).parent
KFP_LAYER = ("resumo.components", "resumo.pipelines")
FILE_NAME = re.compile(r"^\w[\w./<>{}-]*\.(json|jsonl|parquet|png|md|html|yaml)$")


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level?) for every import in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(f"{node.module}.{alias.name}", id(node) in top) for alias in node.names]
    return found


def test_the_core_imports_neither_components_nor_pipelines():
    offenders = {
        path.name: [name for name, _ in imports(path) if name.startswith(KFP_LAYER)]
        for path in LIBRARY.glob("*.py")
        if path.name != "cli.py"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_cli_reaches_the_kfp_layer_only_inside_a_command():
    eager = [name for name, at_top in imports(LIBRARY / "cli.py") if at_top and name.startswith(("resumo.", "kfp"))]
    assert eager == ["resumo.errors.ResumoError"]


def test_components_spell_no_file_name():
    literals = {
        path.name: [node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant) and isinstance(node.value, str) and FILE_NAME.match(node.value)]
        for path in (ROOT / "components").glob("*.py")
    }
    assert {name: found for name, found in literals.items() if found} == {}


def test_a_file_name_is_spelled_in_one_module_of_the_library_at_most():
    spelled: dict[str, set[str]] = {}
    for path in LIBRARY.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FILE_NAME.match(node.value) and "/" not in node.value:
                spelled.setdefault(node.value, set()).add(path.name)
    assert {name: sorted(modules) for name, modules in spelled.items() if len(modules) > 1} == {}
