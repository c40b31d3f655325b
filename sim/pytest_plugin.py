"""A pytest plugin (entry point `mfg_twin`): the `twin` fixture runs a scenario in process.

    def test_duplicates_never_post(twin):
        result = twin.run("scenarios/duplicate_storm.yaml", set={"faults.duplicate_rate": 0.3})
        assert result.passed, result.failures
        assert result.duplicates.posted == 0 < result.duplicates.delivered
        assert result.latency("confirmation").p99 < 5 * 60_000

Each run gets its own run directory under pytest's tmp path (`result.out`: summary.json, the
trace, the SQLite ledger), without a progress bar. The fixture is lazy: it runs nothing, and
this module imports nothing of the twin, until a test calls `twin.run`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

__all__ = ["DeadLetters", "Drift", "Duplicates", "Latency", "Twin", "TwinResult", "twin"]


def _literal(value: Any) -> str:
    """A `--set` value as YAML (JSON is YAML): a timedelta as seconds, anything else odd as text."""
    return json.dumps(
        value, default=lambda v: v.total_seconds() if isinstance(v, timedelta) else str(v)
    )


def _counts(section: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only count per name; a name that never happened counts 0 (as in `assert:`)."""
    return MappingProxyType(Counter(section))


@dataclass(frozen=True)
class Duplicates:
    """Extra copies the core saw (`delivered`), refused (`detected`) and applied (`posted`)."""

    delivered: int
    detected: int
    posted: int


@dataclass(frozen=True)
class Drift:
    """Truth vs books valued at standard cost, in flight (`max_value`) and after the heal phase."""

    max_value: Decimal
    final_value: Decimal
    final_explained_value: Decimal
    final_unexplained_value: Decimal
    final_undelivered_value: Decimal  # messages the heal phase never delivered: not unexplained
    final_exceptions: int
    final_undelivered_messages: int


@dataclass(frozen=True)
class Latency:
    """One workflow's committed - occurred latency, in milliseconds."""

    workflow: str
    count: int
    p50: int
    p90: int
    p95: int
    p99: int
    p99_9: int
    max: int


@dataclass(frozen=True)
class DeadLetters:
    """Dead letters ever written, still open at the end, and resolved by a replay."""

    total: int
    remaining: int
    replayed: int
    by_code: Mapping[str, int]  # open dead letters per code; unknown codes count 0
    by_first_code: Mapping[str, int]  # every dead letter per the code it first failed with


@dataclass(frozen=True)
class TwinResult:
    """A finished run: its summary (summary.json as a dict), typed views, its assertions."""

    out: Path
    summary: dict[str, Any]
    duplicates: Duplicates
    drift: Drift
    dead_letters: DeadLetters
    coverage: Mapping[str, int]  # how often each edge case happened; unknown names count 0
    held_at_end: int  # messages the core still held when the run ended
    assertions: tuple[Any, ...]  # sim.scenario.assertions.AssertionResult, one per `assert:` line

    @classmethod
    def from_summary(cls, out: Path, summary: dict[str, Any]) -> TwinResult:
        from sim.scenario.assertions import AssertionResult

        drift, dead, dup = summary["drift"], summary["dead_letters"], summary["duplicates"]
        values = (
            "max_value", "final_value", "final_explained_value", "final_unexplained_value",
            "final_undelivered_value",
        )  # fmt: skip
        counts = (drift["final_exceptions"], drift["final_undelivered_messages"])
        return cls(
            out=out,
            summary=summary,
            duplicates=Duplicates(dup["delivered"], dup["detected"], dup["posted"]),
            drift=Drift(*(Decimal(drift[key]) for key in values), *counts),
            dead_letters=DeadLetters(
                dead["total"], dead["remaining"], dead["replayed"], _counts(dead["by_code"]),
                _counts(dead["by_first_code"]),
            ),  # fmt: skip
            coverage=_counts(summary["coverage"]),
            held_at_end=summary["events"]["held_at_end"],
            assertions=tuple(AssertionResult(**result) for result in summary["assertions"]),
        )

    @property
    def passed(self) -> bool:
        """Every `assert:` line of the scenario held."""
        return all(result.passed for result in self.assertions)

    @property
    def failures(self) -> list[str]:
        """The `assert:` lines that did not hold, with the value seen (for assertion messages)."""
        from sim.scenario.assertions import failure_lines

        return failure_lines(self.summary["assertions"])

    def latency(self, workflow: str) -> Latency:
        """Latency figures (ms) of `workflow`; KeyError naming the workflows that were seen."""
        figures = self.summary["latency_ms"].get(workflow)
        if figures is None:
            seen = ", ".join(self.summary["latency_ms"]) or "none"
            raise KeyError(f"no latency for workflow {workflow!r}; seen: {seen}")
        fields = ("count", "p50", "p90", "p95", "p99", "p99_9", "max")
        return Latency(workflow, *(figures[name] for name in fields))


class Twin:
    """Runs scenario files in process, each into a fresh directory under pytest's tmp path."""

    def __init__(self, factory: pytest.TempPathFactory, rootpath: Path) -> None:
        self._factory = factory
        self._rootpath = rootpath

    def run(
        self,
        scenario: str | Path,
        set: Mapping[str, Any] | None = None,  # spelt as `twin run --set`
        seed: int | None = None,
    ) -> TwinResult:
        """Run `scenario` with `set` overrides (dotted keys, as `--set`) and, when given,
        another root `seed`; return the typed result. Bad files or keys raise
        `ConfigurationError` naming the field."""
        from sim.run.session import run_scenario  # the twin itself, only when a test runs it

        path = Path(scenario)
        if not path.is_absolute() and not path.exists():
            path = self._rootpath / path  # relative to the project, not the working directory
        overrides = [f"{key}={_literal(value)}" for key, value in (set or {}).items()]
        if seed is not None:
            overrides.append(f"seed={int(seed)}")
        out = self._factory.mktemp(f"twin-{path.stem}", numbered=True)
        outcome = run_scenario(path, overrides, out_dir=out, progress=False)
        return TwinResult.from_summary(outcome.out, outcome.summary)


@pytest.fixture
def twin(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Twin:
    """The twin: `twin.run("scenarios/x.yaml", set={...}, seed=None)` -> `TwinResult`."""
    return Twin(tmp_path_factory, pytestconfig.rootpath)
