"""No import circle in fer_bench and its baselines, counting imports inside functions too.

The graph is built from the source with `ast` (nothing is imported): every `import x` and `from x import y`, at
any depth, is an arrow from the importing module to x, or to x.y when y is a submodule, and to the packages above
it, whose `__init__` runs first; a module's own packages are left out (they always run before it). An arrow back
up the data flow (a worker's module importing the grid, a model importing the run stage) shows up as a circle
here before it shows up as an ImportError or a tangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: package name -> folder (pyproject.toml installs baselines/ as fer_bench.baselines)
PACKAGES = {"fer_bench": ROOT / "fer_bench", "fer_bench.baselines": ROOT / "baselines"}


def project_modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the project's packages."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name an ImportFrom names (resolving `from . import x` and `from .y import x`)."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports anywhere in its source."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            targets.add(base)
            # `from package import name`: an arrow to the submodule when name is one
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules)
    # importing a.b.c runs a and a.b first: arrows to them too, except to the importer's own packages
    targets.update(target.rsplit(".", k)[0] for target in list(targets) for k in range(1, target.count(".") + 1))
    own_packages = {module.rsplit(".", k)[0] for k in range(module.count(".") + 1)}
    return {t for t in targets if t in modules and t not in own_packages}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (as a closed path) per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, component) for component in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle through the component's first module (breadth-first within the component)."""
    start = min(component)
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no circle through {start} in {sorted(component)}")


def test_no_import_circle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same arrows between the project's parts: each subpackage (fer_bench.data, fer_bench.models,
    fer_bench.baselines, ...) as one node, each top-level module as itself."""
    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    return parts


def test_no_import_circle_between_packages():
    """No arrow back up between the parts either: e.g. a model importing the run stage that runs models, or the
    figures importing a baseline's module, is a circle of packages even when no two modules form one."""
    cycles = find_cycles(package_graph(import_graph()))
    assert not cycles, "import circles between packages: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_graph_sees_function_level_and_submodule_imports(tmp_path):
    """The checker itself: a circle made only of a function-level import and a `from package import module`."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from pkg.a import f\n")
    modules = {"pkg": package / "__init__.py", "pkg.a": package / "a.py", "pkg.b": package / "b.py"}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["pkg.a"] == {"pkg.b"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
