"""The twin's modules form no import circle, and its folders are layers that import only those
below them: every import counts, lazy ones and those made only for type checking included, so
`sim/` can be read from the bottom up."""

import ast
from pathlib import Path

import sim

SIM = Path(sim.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SIM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The sim modules a file imports; `from sim.pkg import mod` names the module mod."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in sorted(SIM.rglob("*.py"))}
    modules = set(paths)
    return {name: _imports(path, modules) - {name} for name, path in paths.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (its modules in import order), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            circle = visit(imported, [*path, module])
            if circle:
                return circle
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module, [])
        if circle:
            return circle
    return None


def test_no_module_of_sim_is_part_of_an_import_circle():
    graph = import_graph()
    assert len(graph) > 30 and "sim.model.world" in graph  # the walk sees the whole package
    assert find_circle(graph) is None, " -> ".join(find_circle(graph) or [])


LAYERS = ("scenario", "model", "report", "run", "load", "sweep")  # bottom up


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a folder of `sim/` into one above it in `LAYERS`."""
    return [
        f"{module} -> {imported}"
        for module, imports in sorted(graph.items())
        for imported in sorted(imports)
        if _layer(module)
        and _layer(imported)
        and LAYERS.index(_layer(imported)) > LAYERS.index(_layer(module))
    ]


def test_each_folder_of_sim_imports_only_the_folders_below_it():
    graph = import_graph()
    assert {_layer(module) for module in graph} >= set(LAYERS)
    assert upward_imports(graph) == []


def test_an_upward_import_is_seen():
    graph = {"sim.model.world": {"sim.run.runner"}, "sim.run.runner": {"sim.model.world"}}
    assert upward_imports(graph) == ["sim.model.world -> sim.run.runner"]


def test_the_circle_finder_sees_a_circle_of_any_length():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_circle(graph) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_lazy_and_type_checking_imports_count(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sim.model.world import World\n"
        "def f():\n    from sim.run import runner\n"
    )
    assert _imports(module, {"sim.model.world", "sim.run", "sim.run.runner"}) == {
        "sim.model.world",
        "sim.run",
        "sim.run.runner",
    }
