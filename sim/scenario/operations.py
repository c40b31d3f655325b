"""The `operations:` section: the people who watch the integration and repair what fails.
Alert rules (the core's rule language, `integration.AlertRule`) are evaluated every
`interval`; a firing rule detects the incidents it covers, and an operator (one of `staffing`)
responds and fixes each after times drawn per error class (README, Operations and
governance)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, field_serializer, model_validator

from integration import AlertRule
from sim.scenario.values import Distribution, Duration, Spec

__all__ = ["ClassTimes", "Operations"]


_HALF_AN_HOUR = Distribution(kind="exponential", mean=timedelta(minutes=30))


class ClassTimes(Spec):
    """A random duration per error class (`ERROR_CLASSES` in `sim.scenario.vocabulary`)."""

    master_data: Distribution = _HALF_AN_HOUR
    """master data and message contents (REVISION_MISMATCH, UNKNOWN_ITEM, ...)"""
    stock: Distribution = _HALF_AN_HOUR
    """book stock (BACKFLUSH_SHORTAGE)"""
    quality: Distribution = _HALF_AN_HOUR
    """quality holds (LOT_ON_HOLD)"""
    flow: Distribution = _HALF_AN_HOUR
    """everything else: order, dependencies, closed orders and periods"""


class Operations(Spec):
    """On-call operators. Off (`enabled: false`, or no `alerts`), nothing is detected before
    the heal phase: the negative control of the governance figures."""

    enabled: bool = False
    """evaluate the alerts and let operators respond"""
    interval: Duration = Field(timedelta(minutes=5), gt=timedelta(0))
    """how often the alert rules are evaluated, from the start"""
    staffing: int = Field(1, ge=1)
    """operators on call at once; more incidents wait for one"""
    attempts: int = Field(3, ge=1)
    """times operators take up one incident: once detected, and again at an evaluation that
    still covers it after a fix that did not close it"""
    alerts: tuple[AlertRule, ...] = ()
    """alert rules, as the service's rule files write them"""
    response: ClassTimes = ClassTimes()
    """from an operator taking the incident to starting on it, per error class"""
    fix: ClassTimes = ClassTimes()
    """from starting on it to the fix sent and the dead letters replayed, per error class"""

    @model_validator(mode="after")
    def _names_unique(self) -> Operations:
        names = [rule.name for rule in self.alerts]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"operations.alerts names repeat: {', '.join(repeated)}")
        return self

    @field_serializer("alerts")
    def _rules_as_written(self, alerts: tuple[AlertRule, ...]) -> list[dict[str, Any]]:
        """Each rule with the fields it was given only: a rule refuses the fields its kind
        does not read, so a scenario written back (scenario.yaml) must load again."""
        return [rule.model_dump(mode="json", exclude_unset=True) for rule in alerts]

    @property
    def alerting(self) -> bool:
        """Whether anything is evaluated at all."""
        return self.enabled and bool(self.alerts)
