"""The in-memory index of held messages: by the dependency key each waits on, and by deadline."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta

from integration.envelope import Envelope
from integration.errors import ErrorCode

__all__ = ["HeldMessage", "HoldIndex"]


@dataclass(frozen=True, slots=True)
class HeldMessage:
    inbox_id: int
    envelope: Envelope
    raw: str
    code: ErrorCode
    waits_on: tuple[str, ...]
    deadline: datetime
    received_at: datetime


class HoldIndex:
    """Held messages findable by what they wait for (`take`) and by when they expire."""

    def __init__(self) -> None:
        self._held: dict[int, HeldMessage] = {}
        self._by_key: dict[str, list[int]] = {}
        self._deadlines: list[tuple[datetime, int]] = []

    def __len__(self) -> int:
        return len(self._held)

    def add(self, held: HeldMessage) -> None:
        self._held[held.inbox_id] = held
        for key in held.waits_on:
            self._by_key.setdefault(key, []).append(held.inbox_id)
        heapq.heappush(self._deadlines, (held.deadline, held.inbox_id))

    def take(self, key: str) -> list[HeldMessage]:
        """Remove and return, oldest first, every held message waiting on `key`."""
        taken = [self._held[i] for i in self._by_key.pop(key, []) if i in self._held]
        for held in taken:
            self._discard(held)
        return taken

    def expired(self, now: datetime) -> list[HeldMessage]:
        """Remove and return every held message whose deadline has passed."""
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _deadline, inbox_id = heapq.heappop(self._deadlines)
            held = self._held.get(inbox_id)
            if held is not None and held.deadline <= now:
                self._discard(held)
                expired.append(held)
        return expired

    def held_for(self, now: datetime, at_least: timedelta) -> list[HeldMessage]:
        """Remove and return, oldest first, every message held `at_least` that long by `now`
        (whatever its deadline)."""
        chosen = sorted(
            (held for held in self._held.values() if now - held.received_at >= at_least),
            key=lambda held: (held.received_at, held.inbox_id),
        )
        for held in chosen:
            self._discard(held)
        return chosen

    def _discard(self, held: HeldMessage) -> None:
        self._held.pop(held.inbox_id, None)
        for key in held.waits_on:
            waiting = self._by_key.get(key)
            if waiting and held.inbox_id in waiting:
                waiting.remove(held.inbox_id)
                if not waiting:
                    del self._by_key[key]
