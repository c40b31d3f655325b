"""The checkout a benchmark runs from: its root, and the git commit it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_from_source_only() -> None:
    """In a side-by-side child whose PYTHONPATH is another tree (a baseline's export), import
    `sim` and `integration` from that tree alone. The editable install maps both packages to
    the working tree and would supply from it any module the other tree lacks (e.g.
    `sim.report.trace` to a revision from before `sim/` was regrouped): the child would run a
    mix of the two, and its import fallbacks for an older layout would never be taken."""
    source = os.environ.get("PYTHONPATH")
    if source and Path(source).resolve() != ROOT:
        sys.meta_path[:] = [f for f in sys.meta_path if _name(f) != "_EditableFinder"]


def json_child(command: list[str], source: Path) -> dict:
    """Run `command` (a benchmark in a child mode) in a fresh subprocess whose PYTHONPATH is
    the tree `source`, so that it imports that tree's packages; the JSON it prints."""
    done = subprocess.run(
        command,
        env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def _name(finder: object) -> str:
    return getattr(finder, "__name__", type(finder).__name__)  # a finder may be a class


def source_revision(*watched: str) -> str | None:
    """The git commit measured, with `+dirty` when the `watched` folders have local changes;
    None outside a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *watched],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def export_packages(revision: str, into: Path, *packages: str) -> str:
    """Write the `packages` (folders) of git `revision` under `into`; its short commit id."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run([*git, "archive", commit, *packages], capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit
