"""The port the twin's pipes deliver into: a `Target` takes envelopes at a virtual moment and
answers with the core's `Outcome`, heals at the end and shows its `Books`. Its adapters (the
core in process, over HTTP, none at all) are in `sim.run`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from integration import DeadLetterFilter, Envelope, Outcome
from sim.model.truth import StockKey

__all__ = ["Target", "Books", "TargetError", "TargetUnavailable", "TargetRefused"]


class TargetError(RuntimeError):
    """The target answered no outcome. `status` is the HTTP status (None: no answer at all),
    `code` the service's stable code when it sent one, `retry_after` its Retry-After (s)."""

    def __init__(self, message: str, status=None, code=None, retry_after=None) -> None:
        super().__init__(message)
        self.status: int | None = status
        self.code: str | None = code
        self.retry_after: float | None = retry_after


class TargetUnavailable(TargetError):
    """No answer, a 5xx or a 429: retryable (the core deduplicates a resent message id)."""


class TargetRefused(TargetError):
    """A 4xx without an outcome (unknown key, key without rights, body too large): the adapter
    is misconfigured and a retry will not help."""


@dataclass(frozen=True)
class Books:
    """The target's books at the end of a run, as the harness compares them with the truth."""

    stock: dict[StockKey, Decimal]
    open_dead_letters: list[tuple[str | None, str]]  # (message id, code)
    balanced: bool  # every journal entry balances
    reconciled: bool  # and every other invariant holds (inventory = stock, WIP = open orders)
    entries: int
    findings: list[str] = field(default_factory=list)
    negative_stock_events: int = 0
    dead_letters_total: int = 0  # ever written, open or not
    dead_letters_replayed: int = 0  # resolved by a replay (by hand or when a wait ended)
    # every dead letter ever written, counted by the code it first failed with (its history's
    # first entry): a replay that fails again re-codes the letter, and `open_dead_letters`
    # shows only the last code
    dead_letters_by_first_code: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a load run keeps what it read back from its target as books.json."""
        return {
            **{name: getattr(self, name) for name in _BOOK_FIGURES},
            "stock": [[*key, str(qty)] for key, qty in sorted(self.stock.items())],
            "open_dead_letters": [list(letter) for letter in self.open_dead_letters],
            "findings": list(self.findings),
            "dead_letters_by_first_code": dict(sorted(self.dead_letters_by_first_code.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Books:
        """The books `to_dict` wrote (one written before first codes were kept has none)."""
        return cls(
            **{name: data[name] for name in _BOOK_FIGURES},
            stock={(p, i, loc): Decimal(qty) for p, i, loc, qty in data["stock"]},
            open_dead_letters=[(mid, code) for mid, code in data["open_dead_letters"]],
            findings=list(data["findings"]),
            dead_letters_by_first_code=dict(data.get("dead_letters_by_first_code", {})),
        )


_BOOK_FIGURES = (
    "balanced",
    "reconciled",
    "entries",
    "negative_stock_events",
    "dead_letters_total",
    "dead_letters_replayed",
)


class Target(Protocol):
    def submit(self, envelope: Envelope, at: datetime) -> Outcome:
        """Apply one message as the core would, at virtual time `at`; `TargetUnavailable`
        when no answer came (the twin retries, as a middleware would)."""

    def expire(self, at: datetime) -> list[Outcome]:
        """Dead-letter the holds due by `at` and say so (the core would otherwise do it
        silently inside the next submit)."""

    def stock(self) -> dict[StockKey, Decimal]:
        """Quantity on hand per (plant, item, location), lots summed."""

    def replay(self, selection: DeadLetterFilter, at: datetime) -> list[Outcome]:
        """Replay the open dead letters `selection` picks, at `at` (an operator's replay by
        filter)."""

    def discard(self, selection: DeadLetterFilter, reason: str, at: datetime) -> int:
        """Close the open dead letters `selection` picks without replaying them, at `at`, for
        `reason` (an operator's discard of a superseded message); how many it closed."""

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        """Expire holds due by `at`, then replay open dead letters: (expired, replayed)."""

    def books(self) -> Books: ...

    def close(self) -> None: ...
