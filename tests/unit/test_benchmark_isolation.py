"""A side-by-side benchmark child runs its own tree's code only (benchmarks/checkout.py): the
editable install maps `sim` to the working tree and would lend another tree the modules it
lacks, so a baseline's child would run a mix of the two."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_CHILD = """
import sys
sys.path.insert(0, {benchmarks!r})
from checkout import import_from_source_only
if {isolate}:
    import_from_source_only()
try:
    import sim.report
except ModuleNotFoundError:
    print("missing")
else:
    print(sim.report.__file__)
"""


def _child(tree: Path, isolate: bool, scratch: Path) -> str:
    """Where a script with `tree` as its PYTHONPATH finds `sim.report`. A script, as the
    benchmarks run their children: sys.path[0] is its folder, not the working directory."""
    script = scratch / f"child_{isolate}.py"
    script.write_text(_CHILD.format(benchmarks=str(ROOT / "benchmarks"), isolate=isolate))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_child_on_another_tree_imports_nothing_from_the_working_tree(tmp_path):
    tree = tmp_path / "baseline"
    (tree / "sim").mkdir(parents=True)
    (tree / "sim" / "__init__.py").write_text("")  # an older layout: no sim/report/
    assert _child(tree, isolate=True, scratch=tmp_path) == "missing"
    # the negative control: without it, the working tree lends the module
    lent = _child(tree, isolate=False, scratch=tmp_path)
    assert lent == str(ROOT / "sim" / "report" / "__init__.py")


def test_a_child_on_the_working_tree_keeps_its_imports(tmp_path):
    found = _child(ROOT, isolate=True, scratch=tmp_path)
    assert found == str(ROOT / "sim" / "report" / "__init__.py")
