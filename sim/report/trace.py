"""The trace of a run: a streamed gzip JSON-lines file of everything the measures saw."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from integration import Envelope, Outcome
from sim.model.truth import PhysicalEvent

__all__ = ["Trace", "read_trace"]

# What orjson would write its own way goes through `str`, as `json.dumps(default=str)` did: a
# datetime as `2026-11-15 06:00:00+00:00`, not RFC 3339; a Decimal or a dataclass as its str.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
BLOCK = 1024  # records buffered before one compressed write


class Trace:
    """Everything the measures saw, as compressed JSON lines written as it happens (never kept
    in memory): truth events, messages, answers, later resolutions, edge cases, cost changes
    and samples. Replaying it rebuilds the summary (`sim.run.rebuild`). The only place the
    physical event id meets a message id. Times are virtual seconds, exact. Lines are written
    in blocks of `BLOCK` records and at `close`: a run killed outright loses its last block."""

    def __init__(self, path: Path) -> None:
        self._file = gzip.open(path, "wb", compresslevel=3)  # noqa: SIM115
        self._block: list[bytes] = []

    def _write(self, record: dict[str, Any]) -> None:
        self._block.append(orjson.dumps(record, default=str, option=_OPTIONS))
        if len(self._block) >= BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._block:
            self._block.append(b"")  # the last line's newline
            self._file.write(b"\n".join(self._block))
            self._block.clear()

    def truth(self, event: PhysicalEvent) -> None:
        deltas = [[*key, str(qty)] for key, qty in sorted(event.deltas.items())]
        self._write(
            {"kind": "truth", "t": event.occurred_at, "event": event.id,
             "workflow": event.workflow, "plant": event.plant, "deltas": deltas}
        )  # fmt: skip

    def message(self, now: float, event_id: int, envelope: Envelope) -> None:
        self._write(
            {"kind": "message", "t": now, "event": event_id, "message_id": envelope.message_id,
             "key": envelope.idempotency_key, "type": envelope.message.type,
             "stream": envelope.stream, "seq": envelope.source_seq}
        )  # fmt: skip

    def answer(self, now, event_id, envelope: Envelope, outcome: Outcome, queued: float) -> None:
        self._write(
            {**_outcome(now, event_id, outcome), "kind": "answer", "queued": queued,
             "stream": envelope.stream, "seq": envelope.source_seq}
        )  # fmt: skip

    def resolution(self, now: float, event_id: int, outcome: Outcome) -> None:
        self._write({**_outcome(now, event_id, outcome), "kind": "resolution"})

    def cover(self, edge_case: str, times: int) -> None:
        self._write({"kind": "cover", "name": edge_case, "n": times})

    def cost(self, item: str, costs: dict[str, Decimal]) -> None:
        self._write({"kind": "cost", "item": item, "costs": {p: str(c) for p, c in costs.items()}})

    def sample(self, now: float, queue_depth: int, value: Decimal, exceptions: int) -> None:
        self._write(
            {"kind": "sample", "t": now, "queue_depth": queue_depth, "drift_value": str(value),
             "drift_exceptions": exceptions}
        )  # fmt: skip

    def detected(self, now: float, event_id: int, rule: str) -> None:
        self._write({"kind": "detected", "t": now, "event": event_id, "rule": rule})

    def alert(self, now: float, rule: str) -> None:
        self._write({"kind": "alert", "t": now, "rule": rule})

    def fixed(self, now: float, event_id: int, error_class: str, replayed: int) -> None:
        self._write(
            {"kind": "fixed", "t": now, "event": event_id, "class": error_class,
             "replayed": replayed}
        )  # fmt: skip

    def heal_ended(self, unsent: int, in_flight: int) -> None:
        self._write({"kind": "heal_ended", "unsent": unsent, "in_flight": in_flight})

    def close(self) -> None:
        self._flush()
        self._file.close()


def _outcome(now: float, event_id: int, outcome: Outcome) -> dict[str, Any]:
    return {
        "t": now,
        "event": event_id,
        "message_id": outcome.message_id,
        "status": outcome.status.value,
        "code": outcome.code.value if outcome.code else None,
        "late": outcome.late,
    }


def read_trace(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a trace, in order; a run cut off mid-write ends at its last whole line."""
    with gzip.open(path, "rb") as lines:
        try:
            for line in lines:
                if line.endswith(b"\n"):
                    yield orjson.loads(line)
        except (EOFError, gzip.BadGzipFile):
            return
