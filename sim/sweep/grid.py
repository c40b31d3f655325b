"""`twin sweep`: a what-if grid of variants, each run for several replications with common
random numbers, through any `concurrent.futures.Executor` (a local process pool, or a Dask
cluster's executor), gathered into per-variant confidence intervals (`sim.sweep.report`).

Replication r of every variant runs with seed = base seed + r, so variants differ only by
what was swept. Results are ordered by (variant, replication), whatever order they finish in.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration import ConfigurationError
from sim.scenario.document import (
    Scenario,
    format_duration,
    load_scenario,
    read_document,
    yaml_value,
)

__all__ = [
    "Replication",
    "SweepResult",
    "Task",
    "Variant",
    "check_variants",
    "failures_text",
    "grid",
    "local_executor",
    "parse_set",
    "plan",
    "run_replication",
    "run_sweep",
    "split_top_level",
    "value_text",
]

_OPEN, _CLOSE = "[{(", "]})"


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes: `1,{a: 1, b: 2},[3, 4]` gives
    three pieces. Pieces are stripped; an unbalanced bracket is a `ConfigurationError`."""
    pieces, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                raise ConfigurationError(f"{text!r}: unbalanced {char!r}")
        elif char == "," and depth == 0:
            pieces.append(text[start:index].strip())
            start = index + 1
    if depth or quote:
        raise ConfigurationError(f"{text!r}: unclosed bracket or quote")
    pieces.append(text[start:].strip())
    return pieces


def parse_set(option: str) -> tuple[str, list[Any]]:
    """`key=a,b,c` -> (key, [a, b, c]), each value read as YAML (`0.1` a number, `2h` text,
    `{kind: lognormal, mean: 30s}` a mapping)."""
    key, sep, raw = option.partition("=")
    if not sep or not key.strip():
        raise ConfigurationError(f"--set {option!r} is not key=a,b,c")
    try:
        values = [yaml_value(piece) for piece in split_top_level(raw)]
    except ValueError as error:
        raise ConfigurationError(f"--set {key}: {error}") from error
    return key.strip(), values


def value_text(value: Any) -> str:
    """A value as written in a scenario file (`true`, `{kind: lognormal, mean: 30s}`)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its position, a directory-safe name, and the values it sets."""

    index: int
    values: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={value_text(value)}" for key, value in self.values) or "base"

    @property
    def name(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label.replace(", ", "__"))
        return f"v{self.index:02d}-{slug[:40].strip('_')}"

    def overrides(self) -> list[str]:
        """As `--set` overrides (JSON is YAML, so every value reads back exactly)."""
        return [f"{key}={json.dumps(value, default=str)}" for key, value in self.values]


def grid(parameters: dict[str, list[Any]]) -> list[Variant]:
    """The product of the value lists, keys in the given order, the last varying fastest."""
    keys = list(parameters)
    combos = itertools.product(*(parameters[key] for key in keys))
    return [Variant(i, tuple(zip(keys, combo, strict=True))) for i, combo in enumerate(combos)]


@dataclass(frozen=True)
class Task:
    """What a worker needs for one replication (picklable)."""

    document: dict[str, Any]
    overrides: tuple[str, ...]
    variant: str
    seed: int
    run_dir: str | None = None


@dataclass
class Replication:
    """One finished (or failed) replication."""

    variant: str
    seed: int
    summary: dict[str, Any] | None = None
    horizon_s: float = 0.0
    error: str | None = None


def run_replication(task: Task) -> Replication:
    """Run one replication in a worker; an exception becomes the replication's `error`."""
    try:
        overrides = (*task.overrides, f"seed={task.seed}")
        if task.run_dir is not None:
            from sim.run.session import run_scenario

            outcome = run_scenario(task.document, overrides, task.run_dir, progress=False)
            summary, scenario = outcome.summary, load_scenario(task.document, overrides)
        else:
            from sim.run.runner import simulate

            scenario = load_scenario(task.document, overrides)
            summary = simulate(scenario).summary
        plain = json.loads(json.dumps(summary, default=str))
        return Replication(task.variant, task.seed, plain, scenario.horizon.total_seconds())
    except Exception as error:  # noqa: BLE001 - reported with its seed; the sweep goes on
        return Replication(task.variant, task.seed, error=f"{type(error).__name__}: {error}")


@dataclass
class SweepResult:
    """The sweep as planned and as it came back, ordered by (variant, replication)."""

    scenario: Scenario
    variants: list[Variant]
    replications: int
    metrics: tuple[str, ...]
    results: dict[str, list[Replication]] = field(default_factory=dict)

    @property
    def failures(self) -> list[Replication]:
        return [r for v in self.variants for r in self.results[v.name] if r.error is not None]


def plan(
    path: str | Path | dict[str, Any],
    sets: Sequence[str] = (),
    replications: int | None = None,
    metrics: Sequence[str] = (),
    seed: int | None = None,
) -> tuple[dict[str, Any], SweepResult]:
    """The scenario document and the empty result: the file's `sweep:` section, with `--set`
    value lists added (or replacing the same key) and the options given. Every variant is
    validated first: a `ConfigurationError` names each invalid one before anything runs."""
    scenario = load_scenario(path, [f"seed={seed}"] if seed is not None else [])
    document, _ = read_document(path)
    if seed is not None:
        document["seed"] = seed
    section = scenario.sweep
    parameters = dict(section.parameters)
    for option in sets:
        key, values = parse_set(option)
        parameters[key] = values
    if "seed" in parameters:
        raise ConfigurationError("sweep: seed is not a parameter (replication r uses seed + r)")
    if section.warmup:
        document.setdefault("measures", {})["warmup"] = format_duration(section.warmup)
    variants = grid(parameters)
    check_variants(document, variants)
    result = SweepResult(
        scenario, variants, replications or section.replications, tuple(metrics) or section.metrics
    )
    return document, result


def check_variants(document: dict[str, Any], variants: Sequence[Variant], shown: int = 10) -> None:
    """Load every variant of `document`; a `ConfigurationError` naming each invalid variant
    (the first `shown` of them) and its problems, or nothing."""
    problems = []
    for variant in variants:
        try:
            load_scenario(document, variant.overrides())
        except ConfigurationError as error:
            detail = str(error).replace("\n", "\n  ")
            problems.append(f"variant {variant.name} ({variant.label}):\n  {detail}")
    if problems:
        more = len(problems) - shown
        raise ConfigurationError(
            f"{len(problems)} of {len(variants)} sweep variants are invalid; nothing ran:\n"
            + "\n".join(problems[:shown] + [f"... and {more} more"] * (more > 0))
        )


def local_executor(workers: int) -> ProcessPoolExecutor:
    """A process pool started from a forkserver (no fork of a threaded parent), with the
    simulator preloaded so each worker starts quickly."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sim.run.runner", "sim.sweep.grid"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def run_sweep(
    executor: Executor,
    document: dict[str, Any],
    result: SweepResult,
    keep_runs: Path | None = None,
    progress: Callable[[Replication], None] | None = None,
) -> SweepResult:
    """Submit every (variant, replication) to `executor`, wait for all, and fill `result`."""
    base = result.scenario.seed
    tasks = [
        Task(
            document,
            tuple(variant.overrides()),
            variant.name,
            base + r,
            str(keep_runs / variant.name / f"seed{base + r}") if keep_runs else None,
        )
        for variant in result.variants
        for r in range(result.replications)
    ]
    futures: dict[Future, Task] = {executor.submit(run_replication, t): t for t in tasks}
    done: dict[tuple[str, int], Replication] = {}
    for future in as_completed(futures):
        task = futures[future]
        try:
            replication = future.result()
        except Exception as error:  # noqa: BLE001 - a worker lost, not a replication error
            replication = Replication(task.variant, task.seed, error=_error(error))
        done[(task.variant, task.seed)] = replication
        if progress is not None:
            progress(replication)
    for variant in result.variants:
        result.results[variant.name] = [
            done[(variant.name, base + r)] for r in range(result.replications)
        ]
    return result


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def failures_text(failures: Iterable[Replication]) -> list[str]:
    """One line per failed replication: its variant, seed and error."""
    return [f"{r.variant} seed {r.seed}: {r.error}" for r in failures]
