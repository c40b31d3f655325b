"""Alert rules: one language for the service, which evaluates them on its ledger, and for the
twin's operators, which evaluate_alert them on what the twin's monitoring sees.

Pure: a rule reads the `AlertSignals` its caller provides and says whether it fires; an
`AlertBook` turns successive evaluations into firing and resolved notices, one of each per
episode. A rule file (JSON or YAML) holds `{"rules": [...]}`:

    rules:
      - {name: confirmations-failing, kind: dead_letters, message_type: OperationCompleted}
      - {name: missing-lots, kind: dead_letters, code: LOT_REQUIRED, above: 2, window: 1h}
      - {name: stuck-holds, kind: hold_age, older_than: 30m}
      - {name: books-disagree, kind: reconciliation_exceptions}
      - {name: confirmations-degraded, kind: success_rate, message_type: OperationCompleted,
         below: 95, window: 15m, min_volume: 20}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from integration.durations import Duration
from integration.envelope import BusinessIds
from integration.errors import ConfigurationError, ErrorCode

__all__ = [
    "AlertKind",
    "AlertRule",
    "AlertRules",
    "AlertSubject",
    "AlertSignals",
    "AlertEvaluation",
    "evaluate_alert",
    "AlertState",
    "AlertNotice",
    "AlertBook",
    "MAX_SUBJECTS",
    "load_rules",
]

MAX_SUBJECTS = 20  # failures a notice names; its count covers them all


class AlertKind(StrEnum):
    DEAD_LETTERS = "dead_letters"
    """open dead letters (of `code`, of `message_type`, received within `window`) > `above`"""
    HOLD_AGE = "hold_age"
    """a message (of `message_type`) held longer than `older_than`"""
    RECONCILIATION = "reconciliation_exceptions"
    """reconciliation findings > `above`"""
    SUCCESS_RATE = "success_rate"
    """first-pass success of the messages received within `window` (of `message_type`) under
    `below` percent, once at least `min_volume` were received"""


_FIELDS_OF = {
    AlertKind.DEAD_LETTERS: {"code", "message_type", "above", "window"},
    AlertKind.HOLD_AGE: {"message_type", "older_than"},
    AlertKind.RECONCILIATION: {"above"},
    AlertKind.SUCCESS_RATE: {"message_type", "below", "window", "min_volume"},
}


class AlertRule(BaseModel):
    """One rule; the fields a kind does not read must be left out."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    """stable name: notices and metrics carry it"""
    kind: AlertKind
    code: ErrorCode | None = None
    """dead_letters: only this error code"""
    message_type: str | None = Field(None, pattern=r"^[A-Za-z]{1,64}$")
    """only this message type (OperationCompleted, GoodsReceived, ...)"""
    above: int = Field(0, ge=0)
    """dead_letters, reconciliation_exceptions: fires when the count is above this"""
    window: Duration | None = None
    """dead_letters: only those received this recently (none: every open one);
    success_rate: the trailing window (default 1h)"""
    older_than: Duration = timedelta(hours=1)
    """hold_age: fires when a message has been held longer than this"""
    below: Decimal = Field(Decimal(99), gt=0, le=100)
    """success_rate: fires under this percentage"""
    min_volume: int = Field(1, ge=1)
    """success_rate: messages in the window before the rate means anything"""

    @model_validator(mode="after")
    def _only_fields_the_kind_reads(self) -> AlertRule:
        allowed = _FIELDS_OF[self.kind] | {"name", "kind"}
        stray = sorted(self.model_fields_set - allowed)
        if stray:
            raise ValueError(f"a {self.kind.value} rule does not read {', '.join(stray)}")
        return self

    def matches(self, subject: AlertSubject) -> bool:
        """Whether `subject` is of the code and message type this rule names (if it names
        them): the failures a firing rule covers."""
        if self.code is not None and subject.code != self.code:
            return False
        return self.message_type is None or subject.message_type == self.message_type

    @property
    def trailing(self) -> timedelta | None:
        """The window this rule looks back over (success_rate defaults to an hour)."""
        if self.kind is AlertKind.SUCCESS_RATE:
            return self.window or timedelta(hours=1)
        return self.window


class AlertRules(BaseModel):
    """A rule file: `{"rules": [...]}`, names unique."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[AlertRule, ...] = ()

    @model_validator(mode="after")
    def _names_unique(self) -> AlertRules:
        names = [rule.name for rule in self.rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"alert rule names repeat: {', '.join(repeated)}")
        return self


def load_rules(path: str | Path) -> AlertRules:
    """A rule file (JSON, or YAML for `.yaml`/`.yml`); ConfigurationError when it is
    unreadable or a rule is invalid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return AlertRules.model_validate(yaml.safe_load(text) or {})
        return AlertRules.model_validate_json(text)
    except (OSError, ValueError, ValidationError) as error:
        raise ConfigurationError(f"unreadable alert rules {path}: {error}") from error


@dataclass(frozen=True, slots=True)
class AlertSubject:
    """A dead letter or a held message as alert rules see it. `ref` names it for the one
    who acts: the dead letter's id in the service, the business event in the twin."""

    ref: str
    at: datetime
    message_type: str
    code: str
    correlation_id: str = ""
    business_ids: BusinessIds = BusinessIds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the business ids by name, only those the subject has."""
        ids = {name: value for name, value in self.business_ids._asdict().items() if value}
        return {
            "ref": self.ref,
            "at": self.at.isoformat(),
            "message_type": self.message_type,
            "code": self.code,
            "correlation_id": self.correlation_id,
            "business_ids": ids,
        }


class AlertSignals(Protocol):
    """What a rule reads, at the evaluation's instant; each caller answers from its own
    books (the service from its ledger, the twin from what its monitoring has seen)."""

    def open_dead_letters(self, received_since: datetime | None) -> Sequence[AlertSubject]:
        """Dead letters still open, received at or after `received_since` (None: all)."""

    def held_since_before(self, instant: datetime) -> Sequence[AlertSubject]:
        """Messages still held that were received before `instant`."""

    def reconciliation_exceptions(self) -> int:
        """Findings of the latest reconciliation."""

    def first_pass(self, since: datetime, message_type: str | None) -> tuple[int, int]:
        """(messages received at or after `since`, of them applied at the first attempt)."""


@dataclass(frozen=True, slots=True)
class AlertEvaluation:
    rule: AlertRule
    firing: bool
    value: Decimal
    """the count, the age in seconds or the percentage the rule compared"""
    subjects: tuple[AlertSubject, ...] = ()


def evaluate_alert(rule: AlertRule, signals: AlertSignals, now: datetime) -> AlertEvaluation:
    """Whether `rule` fires at `now` on `signals`, with the value it compared and the
    failures it covers (at most `MAX_SUBJECTS`, oldest first)."""
    if rule.kind is AlertKind.DEAD_LETTERS:
        since = None if rule.window is None else now - rule.window
        found = [f for f in signals.open_dead_letters(since) if rule.matches(f)]
        return _counted(rule, found, len(found) > rule.above)
    if rule.kind is AlertKind.HOLD_AGE:
        found = [f for f in signals.held_since_before(now - rule.older_than) if rule.matches(f)]
        oldest = min((f.at for f in found), default=now)
        return AlertEvaluation(rule, bool(found), _seconds(now - oldest), _oldest(found))
    if rule.kind is AlertKind.RECONCILIATION:
        count = signals.reconciliation_exceptions()
        return AlertEvaluation(rule, count > rule.above, Decimal(count))
    received, first_pass = signals.first_pass(now - rule.trailing, rule.message_type)
    rate = Decimal(100) if received == 0 else Decimal(100 * first_pass) / received
    rate = rate.quantize(Decimal("0.01"))
    return AlertEvaluation(rule, received >= rule.min_volume and rate < rule.below, rate)


def _counted(rule: AlertRule, found: list[AlertSubject], firing: bool) -> AlertEvaluation:
    return AlertEvaluation(rule, firing, Decimal(len(found)), _oldest(found))


def _oldest(found: Sequence[AlertSubject]) -> tuple[AlertSubject, ...]:
    return tuple(sorted(found, key=lambda f: (f.at, f.ref))[:MAX_SUBJECTS])


def _seconds(age: timedelta) -> Decimal:
    return Decimal(age // timedelta(milliseconds=1)) / 1000


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """A rule started or stopped firing: what a webhook receives and a console lists."""

    rule: AlertRule
    state: AlertState
    at: datetime
    since: datetime
    """when this episode started firing"""
    value: Decimal
    subjects: tuple[AlertSubject, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what a webhook receives (value as text, times ISO 8601)."""
        return {
            "rule": self.rule.name,
            "kind": self.rule.kind.value,
            "state": self.state.value,
            "value": str(self.value),
            "since": self.since.isoformat(),
            "at": self.at.isoformat(),
            "subjects": [subject.to_dict() for subject in self.subjects],
            "correlation_ids": sorted({s.correlation_id for s in self.subjects} - {""}),
        }


@dataclass
class AlertBook:
    """Which rules are firing, and since when; `observe` returns a notice only when a rule's
    state changes, so an episode gives exactly one firing and one resolved notice."""

    firing: dict[str, AlertNotice] = field(default_factory=dict)

    def observe(self, evaluations: Sequence[AlertEvaluation], now: datetime) -> list[AlertNotice]:
        """Fold one round of evaluations in; the notices of the rules that changed state."""
        notices = []
        for evaluation in evaluations:
            name = evaluation.rule.name
            opened = self.firing.get(name)
            if evaluation.firing and opened is None:
                notice = AlertNotice(
                    evaluation.rule, AlertState.FIRING, now, now, evaluation.value,
                    evaluation.subjects,
                )  # fmt: skip
                self.firing[name] = notice
                notices.append(notice)
            elif not evaluation.firing and opened is not None:
                del self.firing[name]
                notices.append(
                    AlertNotice(
                        evaluation.rule, AlertState.RESOLVED, now, opened.since,
                        evaluation.value, opened.subjects,
                    )  # fmt: skip
                )
        return notices
