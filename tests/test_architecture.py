"""tasklock's architecture (issue 18): zero import cycles inside the package, dependencies
pointing one way (faces -> lock core -> backends -> values/names/settings), no module over
400 lines. The import graph is read with ``ast`` (nothing is imported): imports anywhere in
a module count, except under ``if TYPE_CHECKING:``. The self-tests prove the checks can fail.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

#: read from disk, not imported: the checks still run when the package fails to import
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "tasklock"
MAX_LINES = 400
Graph = dict[str, set[str]]
Layers = list[tuple[str, list[str], bool]]

#: bottom to top: (layer name, entries, may entries of this layer import each other?);
#: an entry places itself and its submodules, except the top package, which places only itself
LAYERS: Layers = [
    (
        "values, names, settings",
        # models.py: the admin's placeholder model, which imports nothing of tasklock
        ["tasklock.conf", "tasklock.exceptions", "tasklock.signals", "tasklock.values", "tasklock.models"],
        False,
    ),
    ("backends", ["tasklock.backends"], False),
    ("lock core", ["tasklock.core"], False),
    ("metrics", ["tasklock.metrics"], False),
    ("dead holders", ["tasklock.dead_holders"], False),
    ("task integrations and operations", ["tasklock.integrations", "tasklock.operations"], False),
    (
        "faces",
        [
            "tasklock.checks",
            "tasklock.celery",
            "tasklock.django_tasks",
            "tasklock.admin",
            "tasklock.management",
            "tasklock.apps",
            "tasklock.migrations",
            "tasklock.contrib",
            "tasklock",
        ],
        True,
    ),
]


def module_files(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (``__init__`` is the package)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` (functions included), skipping ``if TYPE_CHECKING:`` bodies."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(other)
        else:
            yield from _imports(child)


def import_graph(package_dir: Path, package: str) -> Graph:
    """Module -> the package's modules it imports. ``from x import y`` is an edge to ``x.y`` when
    that is a module, else to ``x``; an import of ``a.b`` is an edge to ``a.b`` only (not to ``a``)."""
    files = module_files(package_dir, package)
    graph: Graph = {}
    for module, path in files.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                parent = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[module] = {target for target in targets if target in files and target != module}
    return graph


def _shortest_cycle(graph: Graph, start: str) -> list[str] | None:
    """A shortest path ``[start, ..., start]`` (breadth-first), or None if start is on no cycle."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue and start not in came_from:
        node = queue.popleft()
        for target in sorted(graph.get(node, ())):
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    if start not in came_from:
        return None
    path = [start]
    while path[-1] != start or len(path) == 1:
        path.append(came_from[path[-1]])
    return path[::-1]


def find_cycles(graph: Graph) -> list[list[str]]:
    """Cycles as paths ``[a, b, ..., a]``: shortest ones, until every module on a cycle is on one shown."""
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if not any(start in cycle for cycle in cycles) and (cycle := _shortest_cycle(graph, start)):
            cycles.append(cycle)
    return cycles


def _entry_of(module: str, package: str, layers: Layers) -> list[tuple[int, str]]:
    return [
        (index, entry)
        for index, (_, entries, _) in enumerate(layers)
        for entry in entries
        if module == entry or (entry != package and module.startswith(entry + "."))
    ]


def layer_problems(graph: Graph, package: str, layers: Layers) -> list[str]:
    """Modules placed by no entry or several, and every edge to a higher layer or to a sibling
    entry of a layer whose entries are independent."""
    problems, placed = [], {}
    for module in sorted(graph):
        places = _entry_of(module, package, layers)
        if len(places) != 1:
            problems.append(f"{module} is placed by {len(places)} entries of the layer table, not 1")
        else:
            placed[module] = places[0]
    for importer in sorted(graph):
        for imported in sorted(graph[importer]):
            if importer not in placed or imported not in placed:
                continue
            (mine, my_entry), (theirs, their_entry) = placed[importer], placed[imported]
            siblings = mine == theirs and my_entry != their_entry and not layers[mine][2]
            if theirs > mine or siblings:
                what = f"layer {mine} {layers[mine][0]!r} imports layer {theirs} {layers[theirs][0]!r}"
                what += ", independent siblings" if siblings else ""
                problems.append(f"{importer} -> {imported} ({what})")
    return problems


def long_modules(package_dir: Path, package: str, limit: int = MAX_LINES) -> list[str]:
    """``module: N lines`` for each module longer than ``limit`` lines."""
    files = module_files(package_dir, package)
    counts = {module: len(path.read_text(encoding="utf-8").splitlines()) for module, path in files.items()}
    return [f"{module}: {count} lines" for module, count in sorted(counts.items()) if count > limit]


def test_no_import_cycles():
    cycles = find_cycles(import_graph(PACKAGE_DIR, "tasklock"))
    assert not cycles, "import cycles in tasklock:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_dependencies_point_down_the_layers():
    problems = layer_problems(import_graph(PACKAGE_DIR, "tasklock"), "tasklock", LAYERS)
    assert not problems, "layering of tasklock broken:\n" + "\n".join(problems)


def test_no_module_over_400_lines():
    offenders = long_modules(PACKAGE_DIR, "tasklock")
    assert not offenders, f"modules over {MAX_LINES} lines:\n" + "\n".join(offenders)


def _synthetic(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    return tmp_path / "pkg"


def test_cycle_finder_sees_function_imports_and_skips_type_checking(tmp_path):
    package_dir = _synthetic(
        tmp_path,
        {
            "a.py": "import pkg.b\n",
            "b.py": "def f():\n    from . import a\n",
            "c.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg import a\nelse:\n    import os\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import x\n",
        },
    )
    graph = import_graph(package_dir, "pkg")
    assert graph["pkg.c"] == set() and graph["pkg.d"] == set()
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_layer_check_reports_upward_and_sibling_imports_and_an_unplaced_module(tmp_path):
    package_dir = _synthetic(
        tmp_path,
        {
            "__init__.py": "from .high import face\n",
            "low/__init__.py": "",
            "low/base.py": "from ..high import face\n",
            "left.py": "import pkg.right\nfrom .low import base\n",
            "right.py": "",
            "high/__init__.py": "",
            "high/face.py": "from ..low import base\nfrom .. import left\n",
            "stray.py": "",
        },
    )
    layers: Layers = [
        ("low", ["pkg.low"], False),
        ("mid", ["pkg.left", "pkg.right"], False),
        ("high", ["pkg.high", "pkg"], True),
    ]
    assert layer_problems(import_graph(package_dir, "pkg"), "pkg", layers) == [
        "pkg.stray is placed by 0 entries of the layer table, not 1",
        "pkg.left -> pkg.right (layer 1 'mid' imports layer 1 'mid', independent siblings)",
        "pkg.low.base -> pkg.high.face (layer 0 'low' imports layer 2 'high')",
    ]
