"""The house rules a linter does not check: imports inside ``workbench/`` point down the floors of
``docs/architecture.md`` (:data:`FLOORS`) and make no circle, no module of ``workbench/`` or
``app/`` is above 800 lines, no function there above 80 lines of body (its docstring not counted).

Run ``python scripts/check_structure.py`` (``make lint`` does, after ruff): it prints one line per
problem and exits 1 when there is any. ``tests/test_structure.py`` runs the same checks.

Every import counts, including one inside a function (a lazy import hides a circle, it does not
remove it), except those under ``if TYPE_CHECKING:``. ``from package import name`` is an edge to
the submodule ``package.name`` when there is one, else to the package.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80

#: the floor of each top-level part of ``workbench`` (docs/architecture.md): a module may import its
#: own part and any part on the same or a lower floor, never a higher one
FLOORS: dict[str, int] = {
    # ground: facts and helpers every floor may read
    "workbench": 0, "config": 0, "vocabulary": 0, "errors": 0, "runtime": 0, "devices": 0,
    "metrics": 0, "paths": 0, "procs": 0,
    # data and models
    "data": 1, "models": 1,
    # distillation methods
    "distill": 2,
    # analyses (models + tensors, never the run store), config checks against the registries
    "analysis": 3, "validate": 3, "recipes": 3,
    # the run store, its teachers and the run adapter; the New-run form
    "runs": 4, "run_form": 4,
    # training
    "train": 5,
    # figures
    "viz": 6,
    # services over stored runs
    "jobs": 7, "sweep": 7, "diagnosis": 7, "demo": 7, "background": 7, "workspaces": 7, "console": 7,
    "experiments": 7, "class_overview": 7,
    # faces
    "widgets": 8, "cli": 8, "commands": 8, "serve": 8, "app_server": 8, "lessons": 8, "grading": 8,
}


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def _imports(module: str, is_package: bool, tree: ast.AST, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports."""
    out: set[str] = set()
    skip = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif target in modules:
                    out.add(target)
    out.discard(module)
    return out


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """``module -> modules it imports`` for every module of the package at ``package_dir``."""
    base = package_dir.parent
    files = {_module_name(p, base): p for p in sorted(package_dir.rglob("*.py"))}
    names = set(files)
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _imports(name, path.name == "__init__.py", tree, names)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan's algorithm,
    iterative), each sorted; sorted by their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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
    return sorted(found)


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def floor_problems(graph: dict[str, set[str]], floors: dict[str, int] = FLOORS) -> list[str]:
    """One line per import that points up the floors, and per part of the package without a floor."""
    out = []
    for module in sorted(graph):
        part = _part(module)
        if part not in floors:
            out.append(f"{module}: {part!r} has no floor in scripts/check_structure.py FLOORS")
            continue
        for target in sorted(graph[module]):
            other = _part(target)
            if other != part and other in floors and floors[other] > floors[part]:
                out.append(
                    f"{module} imports {target}: floor {floors[other]} ({other}) above floor {floors[part]} ({part})"
                )
    return sorted(set(out))


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
        first.value.value, str
    )
    if has_doc:
        if len(body) == 1:
            return 0
        first = body[1]
    start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
    return int(node.end_lineno or node.lineno) - start + 1


def size_problems(folders: list[Path], *, root: Path = ROOT) -> list[str]:
    """One line per module above :data:`MAX_MODULE_LINES` lines and per function whose body is
    above :data:`MAX_FUNCTION_LINES` lines, in the ``.py`` files under ``folders``."""
    out = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            n_lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            if n_lines > MAX_MODULE_LINES:
                out.append(f"{shown}: {n_lines} lines (at most {MAX_MODULE_LINES})")
            for node in ast.walk(ast.parse(text, filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    body = _body_lines(node)
                    if body > MAX_FUNCTION_LINES:
                        out.append(
                            f"{shown}:{node.lineno}: function {node.name} has {body} lines of body "
                            f"(at most {MAX_FUNCTION_LINES})"
                        )
    return out


def problems(root: Path = ROOT) -> list[str]:
    """Every problem of the tree at ``root``: import circles and imports up the floors in
    ``workbench/``, then sizes in ``workbench/`` and ``app/``."""
    graph = import_graph(root / "workbench")
    out = ["import circle: " + " <-> ".join(component) for component in import_circles(graph)]
    out += floor_problems(graph)
    folders = [root / name for name in ("workbench", "app") if (root / name).is_dir()]
    return out + size_problems(folders, root=root)


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
