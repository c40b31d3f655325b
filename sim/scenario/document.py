"""The scenario file: one YAML document of the sections in `sim.scenario.sections`, validated, with
`--set key=value` overrides; `twin schema` writes its JSON Schema."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import AwareDatetime, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import GenerateJsonSchema

from integration import ConfigurationError
from sim.scenario.sections import (
    DEFAULT_METRICS,
    Calendar,
    Demand,
    Distribution,
    Duration,
    EdgeCases,
    Faults,
    Integration,
    Measures,
    Mes,
    Pattern,
    PlantSpec,
    Products,
    Reporting,
    Spec,
    Store,
    Sweep,
    format_duration,
    parse_duration,
)

__all__ = [
    "Scenario",
    "Calendar",
    "PlantSpec",
    "Distribution",
    "Pattern",
    "Reporting",
    "Sweep",
    "DEFAULT_METRICS",
    "load_scenario",
    "scenario_schema",
    "parse_duration",
    "format_duration",
]


class Scenario(Spec):
    """A whole experiment: the plants, their traffic, the faults and the integration under test."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    """scenario name (the run directory is named after it)"""
    description: str = ""
    """what the scenario demonstrates"""
    seed: int = 1
    """root of every named random stream"""
    start: AwareDatetime = datetime.fromisoformat("2026-11-02T06:00:00+00:00")
    """virtual start (timezone-aware)"""
    horizon: Duration = timedelta(days=1)
    """length of the fault phase; the heal phase follows"""
    calendar: Calendar = Calendar()
    plants: tuple[PlantSpec, ...] = Field(min_length=1)
    products: Products = Products()
    demand: Demand = Demand()
    mes: Mes = Mes()
    edge_cases: EdgeCases = EdgeCases()
    faults: Faults = Faults()
    integration: Integration = Integration()
    store: Store = Store()
    measures: Measures = Measures()
    sweep: Sweep = Sweep()
    assertions: tuple[str, ...] = Field((), alias="assert")
    """checks over summary keys, e.g. `duplicates.posted == 0`"""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, use_attribute_docstrings=True
    )

    @model_validator(mode="after")
    def _coherent(self) -> Scenario:
        ids = [plant.id for plant in self.plants]
        if len(set(ids)) != len(ids):
            raise ValueError(f"plant ids repeat: {ids}")
        if self.demand.lot_size_max < self.demand.lot_size_min:
            raise ValueError("demand.lot_size_max is below demand.lot_size_min")
        return self


def _set(document: dict[str, Any], key: str, raw: str) -> None:
    """Apply one `a.b.c=value` override; the value is read as YAML (numbers, lists, booleans)."""
    *parents, leaf = key.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ConfigurationError(f"--set {key}: {part} is not a section")
    value = yaml.safe_load(raw) if raw.strip() else raw
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def _problem_text(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(document)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def load_scenario(
    source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> Scenario:
    """Read a scenario file (or a dict), apply `key=value` overrides, validate. Errors name
    the field: `ConfigurationError` with one line per problem."""
    if isinstance(source, dict):
        document = json.loads(json.dumps(source, default=str))
        origin = "scenario"
    else:
        origin = str(source)
        try:
            document = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigurationError(f"cannot read {origin}: {error}") from error
    if not isinstance(document, dict):
        raise ConfigurationError(f"{origin} is not a YAML mapping")
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--set {override!r} is not key=value")
        try:
            _set(document, key.strip(), raw)
        except (ValueError, IndexError, TypeError) as error:
            raise ConfigurationError(f"--set {override}: {error}") from error
    try:
        scenario = Scenario.model_validate(document)
    except ValidationError as error:
        raise ConfigurationError(
            f"{origin} is not a valid scenario:\n{_problem_text(error)}"
        ) from error
    from sim.scenario.assertions import check_syntax  # assertions read durations from this module

    check_syntax(scenario.assertions)
    return scenario


class _ScenarioSchema(GenerateJsonSchema):
    """Duration defaults written as a scenario file would (`1d`), not ISO 8601."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files (by alias: `assert`)."""
    return Scenario.model_json_schema(by_alias=True, schema_generator=_ScenarioSchema)
