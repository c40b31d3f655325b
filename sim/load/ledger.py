"""The books of a broker load run, read back from the ledger `twin consume` writes.

A broker has no read API of its own, so `twin load --target amqp://… --ledger URL` opens the
consumer's ledger store (sqlite:///… or postgresql://…) through the core's public API: a
`Core` of its own, with the scenario's core settings, reading what the consumer committed
(it catches up with the consumer's commits before every read of the books). The heal phase
goes through that core too: every message still held is dead-lettered (`expire_holds` with no
minimum age, as the HTTP path's `POST /v1/holds/expire` with `older_than_s: 0`) and open dead
letters are replayed (`Core.replay`) in rounds, on the wall clock as the consumer's core runs.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from integration import CoreSettings, Outcome
from sim.model.target import Books
from sim.model.truth import StockKey
from sim.run.targets import InProcessTarget, replay_rounds

__all__ = ["LedgerReader"]


def _now() -> datetime:
    return datetime.now(UTC)


class LedgerReader(InProcessTarget):
    """`InProcessTarget` on the consumer's ledger: its `stock` and `books` read it, its `heal`
    works on it; nothing is submitted through it. One call at a time: the drift sampler reads
    from a worker thread that a cancelled sample may leave running into the heal phase."""

    def __init__(self, settings: CoreSettings, ledger_url: str) -> None:
        super().__init__(settings, ledger_url, _now())
        self._one_at_a_time = threading.Lock()

    def stock(self) -> dict[StockKey, Decimal]:
        with self._one_at_a_time:
            return super().stock()

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        """Expire every hold and replay dead letters, at the wall-clock moment (the consumer's
        clock), not the run's virtual `at`."""
        with self._one_at_a_time:
            self.clock.set(_now())
            return self.core.expire_holds(timedelta(0)), replay_rounds(self.core.replay)

    def books(self) -> Books:
        with self._one_at_a_time:
            return super().books()
