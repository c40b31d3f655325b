"""What `submit` answers: the outcome of one message (a ConfirmBOD, in OAGIS terms)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from integration.errors import ErrorCode, Problem

__all__ = ["Status", "Outcome"]


class Status(StrEnum):
    POSTED = "POSTED"  # applied: its entries (if any) committed with the inbox record
    DUPLICATE = "DUPLICATE"  # seen before: nothing applied again; `original` says what happened
    HELD = "HELD"  # waiting for a sequence gap or a dependency; `code` says which
    REJECTED = "REJECTED"  # dead-lettered with `code` and every problem found


class Outcome(NamedTuple):
    """The answer to one message (a named tuple: immutable, and one is made per message)."""

    status: Status
    message_id: str | None
    message_type: str | None = None
    code: ErrorCode | None = None
    problems: tuple[Problem, ...] = ()
    entry_ids: tuple[int, ...] = ()
    committed_at: datetime | None = None
    late: bool = False
    original: Outcome | None = None
    dead_letter_id: int | None = None
    # Held or dead-lettered messages that this one let through, in the order they were applied.
    released: tuple[Outcome, ...] = ()

    @property
    def applied(self) -> bool:
        return self.status is Status.POSTED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, as the HTTP service and run traces write it."""
        return {
            "status": self.status.value,
            "message_id": self.message_id,
            "message_type": self.message_type,
            "code": self.code.value if self.code else None,
            "problems": [p.to_dict() for p in self.problems],
            "entry_ids": list(self.entry_ids),
            "committed_at": self.committed_at.isoformat() if self.committed_at else None,
            "late": self.late,
            "original": self.original.to_dict() if self.original else None,
            "dead_letter_id": self.dead_letter_id,
            "released": [r.to_dict() for r in self.released],
        }
