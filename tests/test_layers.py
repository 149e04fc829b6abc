"""The packages are the layers: imports only go down, and no module imports itself back.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency). The layers, bottom to top::

    core → data → engine → inference | study → analysis → cli, api

``inference`` and ``study`` sit side by side and never import each other; ``study``
never imports ``analysis`` or the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "segtune"

# What each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "engine": {"core", "data"},
    "inference": {"core", "data", "engine"},
    "study": {"core", "data", "engine"},
    "analysis": {"core", "data", "engine", "study"},
    "cli": {"core", "data", "engine", "inference", "study", "analysis", "api"},
    "api": {"core", "data", "engine", "inference", "study", "analysis"},
    "__init__": {"core", "api", "engine"},
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The segtune modules ``path`` imports (``from segtune.x import y`` names module
    ``segtune.x.y`` when that is a module, else ``segtune.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "segtune"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "segtune":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(SRC.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in paths}


def test_every_module_belongs_to_a_layer() -> None:
    top = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir()}
    assert top - {"resources", "__pycache__"} <= set(ALLOWED), "a module outside the layers"


def test_imports_only_go_down() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) != layer_of(module)
        and layer_of(target) not in ALLOWED[layer_of(module)]
        and target != "segtune"
    ]
    assert wrong == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order, the first again at the
    end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_circles() -> None:
    graph = {m: {t for t in ts if t != "segtune"} for m, ts in import_graph().items()}
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a"}}, True),
    ],
)
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], circle: bool) -> None:
    assert (find_cycle(graph) is not None) is circle


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    core = tmp_path / "core.py"
    core.write_text("def f():\n    from segtune.analysis.report import write_report\n")
    targets = imports_of(core, {"segtune.analysis.report"})
    assert targets == {"segtune.analysis.report"}
    assert layer_of("segtune.analysis.report") not in ALLOWED["core"]
