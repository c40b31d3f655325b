"""The twin's modules form no import circle: every import counts, lazy ones and those made only
for type checking included, so the folders of `sim/` can be read from the bottom up."""

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
