"""The value types scenario sections are written in: durations (`250ms`, `30s`, `15m`, `8h`,
`2d`, or a number of seconds), rates, and random durations (`Distribution`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integration import Duration, format_duration, parse_duration

__all__ = ["Spec", "Duration", "Rate", "parse_duration", "format_duration", "Distribution"]

Rate = Annotated[float, Field(ge=0, le=1)]


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


_PARAMETERS = {
    "exponential": ("mean",),
    "constant": ("mean",),
    "lognormal": ("mean", "sd"),
    "uniform": ("low", "high"),
}


class Distribution(Spec):
    """A random duration: `exponential` (mean), `lognormal` (mean, sd), `uniform` (low, high;
    low 0 if left out) or `constant` (mean). Each kind's parameters must be written (so that
    `{kind: lognormal, mean: 30s}` is not silently a constant) and no other kind's."""

    kind: Literal["exponential", "lognormal", "uniform", "constant"] = "exponential"
    mean: Duration = timedelta(0)
    sd: Duration = timedelta(0)
    low: Duration = timedelta(0)
    high: Duration = timedelta(0)

    @model_validator(mode="before")
    @classmethod
    def _parameters_written(cls, data: Any) -> Any:
        kind = data.get("kind", "exponential") if isinstance(data, dict) else None
        if not isinstance(kind, str):
            return data  # not a mapping or no kind name: field validation says what is wrong
        needed = [name for name in _PARAMETERS.get(kind, ()) if name != "low"]  # low: 0
        if missing := [name for name in needed if name not in data]:
            raise ValueError(f"{kind} needs {' and '.join(needed)}; {missing[0]} is missing")
        return data

    @model_validator(mode="after")
    def _complete(self) -> Distribution:
        takes = _PARAMETERS[self.kind]
        unused = [name for name in ("mean", "sd", "low", "high") if name not in takes]
        if stray := [name for name in unused if getattr(self, name) > timedelta(0)]:
            raise ValueError(f"{self.kind} takes {' and '.join(takes)}, not {', '.join(stray)}")
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError("uniform needs low <= high")
        if self.kind == "lognormal" and self.mean > timedelta(0) >= self.sd:
            raise ValueError("lognormal needs sd > 0 (for a fixed duration: kind: constant)")
        if self.kind == "lognormal" and self.mean <= timedelta(0) < self.sd:
            raise ValueError("lognormal needs a positive mean")
        return self
