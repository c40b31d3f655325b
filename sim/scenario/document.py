"""The scenario file: one YAML document of the sections in `sim.scenario.sections`, validated, with
`--set key=value` overrides; `twin schema` writes its JSON Schema."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import GenerateJsonSchema

from integration import ConfigurationError
from sim.scenario.assertions import check_syntax
from sim.scenario.operations import Operations
from sim.scenario.sections import (
    DEFAULT_METRICS,
    Calendar,
    Demand,
    EdgeCases,
    Faults,
    Integration,
    Measures,
    Mes,
    Pattern,
    PlantSpec,
    Products,
    Reporting,
    Store,
    Sweep,
)
from sim.scenario.values import Distribution, Duration, Spec, format_duration, parse_duration

__all__ = [
    "DEFAULT_METRICS",
    "Calendar",
    "Distribution",
    "Pattern",
    "PlantSpec",
    "Reporting",
    "Scenario",
    "Sweep",
    "format_duration",
    "load_scenario",
    "parse_duration",
    "read_document",
    "scenario_schema",
    "yaml_value",
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
    operations: Operations = Operations()
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
        if unknown := sorted({o.plant for o in self.faults.outages} - {None, *ids}):
            raise ValueError(f"faults.outages name plants the scenario does not have: {unknown}")
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
    value = yaml_value(raw)
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def _yaml_problem(error: yaml.YAMLError) -> tuple[str, str]:
    """(`line:column` of a YAML mistake or "", what is wrong), without the `"<unicode string>"`
    PyYAML names text it was handed."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return "", str(error)
    problem = str(error.problem)
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None:
        where = f"line {context_mark.line + 1}, column {context_mark.column + 1}"
        problem += f" ({context} at {where})"
    elif context:
        problem += f" ({context})"
    return f"{mark.line + 1}:{mark.column + 1}", problem


def yaml_value(text: str) -> Any:
    """A `--set` value read as YAML (`0.1` a number, `2h` text, `{kind: constant, mean: 1s}` a
    mapping; blank stays text); `ValueError` saying what is wrong and in which column."""
    if not text.strip():
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        where, problem = _yaml_problem(error)
        column = f" at column {where.partition(':')[2]}" if where else ""
        raise ValueError(f"{text!r} is not YAML: {problem}{column}") from error


def read_document(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The scenario document (a copy, when given a dict) and where it came from. A file that
    cannot be read, is not YAML (`PATH:LINE:COLUMN: ...`) or not a mapping is a
    `ConfigurationError` naming it."""
    if isinstance(source, dict):
        return json.loads(json.dumps(source, default=str)), "scenario"
    origin = str(source)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"cannot read {origin}: {error}") from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where, problem = _yaml_problem(error)
        place = f"{origin}:{where}:" if where else f"{origin}:"
        raise ConfigurationError(f"{place} invalid YAML: {problem}") from error
    if not isinstance(document, dict):
        raise ConfigurationError(f"{origin} is not a YAML mapping")
    return document, origin


def _section(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section model a field holds, and whether it holds a list of them."""
    many = get_origin(annotation) in (tuple, list)
    inner = get_args(annotation)[0] if many and get_args(annotation) else annotation
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner, many
    return None, False


def _scenario_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key a scenario file can set, `*` standing for a list index:
    `faults.duplicate_rate`, `plants.*.work_centres.*.capacity`."""
    keys = []
    for name, info in (model or Scenario).model_fields.items():
        key = prefix + (info.alias or name)
        keys.append(key)
        section, many = _section(info.annotation)
        if section is not None:
            keys += _scenario_keys(section, f"{key}.*." if many else f"{key}.")
    return keys


def _nearest_key(key: str) -> str | None:
    """The scenario key most like `key` (a sibling first, then any key), its list indices
    kept: `faults.duplicate_rat` -> `faults.duplicate_rate`; None when nothing is close."""
    parts = key.split(".")
    masked = ".".join("*" if part.isdigit() else part for part in parts)
    parent, _, leaf = masked.rpartition(".")
    keys = _scenario_keys()
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    match = difflib.get_close_matches(leaf, siblings, n=1)
    if match:
        found = siblings[match[0]]
    else:  # not the siblings or the sections above: the shared start makes them look close
        elsewhere = [
            k for k in keys if k not in siblings.values() and not masked.startswith(f"{k}.")
        ]
        anywhere = difflib.get_close_matches(masked, elsewhere, n=1)
        if not anywhere:
            return None
        found = anywhere[0]
    indices = iter(part for part in parts if part.isdigit())
    return ".".join(next(indices, "0") if part == "*" else part for part in found.split("."))


def _describe(problem: dict[str, Any], where: str) -> str:
    if problem["type"] == "extra_forbidden":
        near = _nearest_key(where)
        return f"{where}: unknown key" + (f"; did you mean {near}?" if near else "")
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}"


def _override_at(where: str, overrides: Sequence[str]) -> str | None:
    """The last override whose key holds `where` or lies inside it: the one to blame."""
    for override in reversed(overrides):
        key = f"{override.partition('=')[0].strip()}."
        if where and (f"{where}.".startswith(key) or key.startswith(f"{where}.")):
            return override
    return None


def _problems(error: ValidationError) -> list[tuple[dict[str, Any], str]]:
    """Each problem with its dotted place, less a list's "too short" that only echoes a
    problem inside one of its items (pydantic drops the item, then counts)."""
    found = [(p, ".".join(str(part) for part in p["loc"])) for p in error.errors()]
    places = [where for _, where in found]
    return [
        (problem, where)
        for problem, where in found
        if problem["type"] != "too_short"
        or not any(other.startswith(f"{where}.") for other in places)
    ]


def _invalid(error: ValidationError, origin: str, overrides: Sequence[str]) -> ConfigurationError:
    """One line per problem: an override's as `--set KEY=VALUE: ...`, the rest under the file."""
    blamed, rest = [], []
    for problem, where in _problems(error):
        text = _describe(problem, where or "(document)")
        override = _override_at(where, overrides)
        if override is not None:
            blamed.append(f"--set {override}: {text}")
        else:
            rest.append(f"  {text}")
    if rest:
        with_overrides = " with its --set overrides" if overrides else ""
        blamed += [f"{origin}{with_overrides} is not a valid scenario:", *rest]
    return ConfigurationError("\n".join(blamed))


def load_scenario(source: str | Path | dict[str, Any], overrides: Sequence[str] = ()) -> Scenario:
    """Read a scenario file (or a dict), apply `key=value` overrides, validate. Errors name
    the field, and the override that set it: `ConfigurationError` with one line per problem."""
    document, origin = read_document(source)
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
        raise _invalid(error, origin, overrides) from error
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
