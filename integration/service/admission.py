"""What the service refuses before the core sees it: back-pressure and the dead-letter quota.

Both answer 429 with `Retry-After` (whole seconds) and apply nothing of the refused request.

* Back-pressure (`Admission`): the expected wait of a submission is the number of messages
  admitted ahead of it and not yet answered times the service's recent time per
  message: the time the service was busy (something admitted and not yet answered) divided by
  the messages it answered meanwhile, both decayed with a half-life of `HALF_LIFE_S`. Busy
  time counts everything an answer waits on (the core's transaction, and the event loop
  parsing requests and writing answers, which shares the interpreter with the core), so at
  saturation the time per message is the inverse of the service's actual throughput, and the
  expected wait is what Little's law gives. Above half the bound (`TARGET_SHARE`) the
  submission is refused with OVERLOADED. A submission's own work does not count, so a batch
  larger than the bound passes once the queue ahead of it is short, not only when idle.
* The dead-letter quota (`DeadLetterQuota`): each API key may leave at most so many bytes of
  raw payload in the dead letters per sliding hour (authenticated rejections keep their raw
  payload). A submission reserves its body's size (all of it could be kept) and, once
  answered, counts what its rejected messages kept; one whose reservation would pass the
  quota is refused with DEAD_LETTER_QUOTA until enough of the hour's bytes have aged out (its
  Retry-After says when); each key keeps a running total, so a check costs the same however
  busy the hour was. So
  the quota is never exceeded, concurrent requests included (the service keeps the quota at
  least the largest body it accepts).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from integration.clock import Clock
from integration.service.inputs import ServiceError

__all__ = [
    "DEFAULT_DEAD_LETTER_QUOTA_BYTES",
    "DEFAULT_MAX_WAIT_S",
    "Admission",
    "DeadLetterQuota",
    "Refused",
    "Reservation",
]

DEFAULT_MAX_WAIT_S = 0.5
DEFAULT_DEAD_LETTER_QUOTA_BYTES = 64 << 20  # per key and hour
QUOTA_WINDOW = timedelta(hours=1)
# Admitted submissions keep the backlog at the admission threshold, so their waits scatter
# around it: admitting up to half the bound keeps nearly all of them under the bound.
TARGET_SHARE = 0.5
HALF_LIFE_S = 1.0  # of the busy time and answers the time per message is measured over


class Refused(ServiceError):
    """A 429 answer: nothing was applied; try again after `retry_after_s` seconds."""

    def __init__(self, code: str, message: str, wait_s: float) -> None:
        super().__init__(429, code, message)
        self.retry_after_s = max(1, math.ceil(wait_s))


class Admission:
    """The bounded admission queue in front of the core (see the module docstring). Used from
    the event loop only; `timer` is a monotonic clock in seconds."""

    def __init__(
        self,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_wait_s <= 0:
            raise ValueError("the admission bound must be positive")
        self.max_wait_s = max_wait_s
        self.backlog = 0  # messages admitted and not yet answered
        self._timer = timer
        self._last = timer()
        self._busy_s = 0.0  # decayed busy time
        self._answered = 0.0  # decayed answers

    @property
    def seconds_per_message(self) -> float:
        """The recent busy time per message answered (0 before any answer)."""
        return self._busy_s / self._answered if self._answered else 0.0

    def expected_wait_s(self, messages: int) -> float:
        """The expected time until `messages` more would be answered."""
        return (self.backlog + messages) * self.seconds_per_message

    def admit(self, messages: int) -> None:
        """Count `messages` in, or raise `Refused` (OVERLOADED) when the wait of what is
        already admitted ahead of them passes the bound. Their own work does not count: a
        batch larger than the bound would otherwise wait for an idle service for ever."""
        self._tick(0)
        wait = self.expected_wait_s(0)
        if self.backlog and wait > self.max_wait_s * TARGET_SHARE:
            raise Refused(
                "OVERLOADED",
                f"the service is busy: expected wait {wait:.3f} s; the bound is "
                f"{self.max_wait_s:g} s",
                self.expected_wait_s(0),
            )
        self.backlog += messages

    def answered(self, messages: int) -> None:
        """`messages` admitted earlier have their answers."""
        self._tick(messages)
        self.backlog -= messages

    def _tick(self, answered: int) -> None:
        now = self._timer()
        decay = 0.5 ** ((now - self._last) / HALF_LIFE_S)
        busy = now - self._last if self.backlog else 0.0
        self._busy_s = self._busy_s * decay + busy
        self._answered = self._answered * decay + answered
        self._last = now


@dataclass
class _KeyUse:
    """One key's reservations of the last hour, oldest first, and the bytes they count."""

    entries: deque[Reservation] = field(default_factory=deque)
    used: int = 0


@dataclass
class Reservation:
    """Bytes a key's submission may leave in the dead letters, counted from `at`."""

    at: datetime
    size: int
    use: _KeyUse = field(repr=False)
    counted: bool = True  # false once it has left the hour


class DeadLetterQuota:
    """Bytes of raw payload each key may leave in the dead letters per sliding hour."""

    def __init__(self, clock: Clock, bytes_per_hour: int = DEFAULT_DEAD_LETTER_QUOTA_BYTES):
        if bytes_per_hour <= 0:
            raise ValueError("the dead-letter quota must be positive")
        self.clock = clock
        self.bytes_per_hour = bytes_per_hour
        self._kept: dict[str, _KeyUse] = {}

    def reserve(self, key_name: str, body_bytes: int) -> Reservation:
        """Count a body of `body_bytes` against the key's quota, as if all of it were kept, or
        raise `Refused` (DEAD_LETTER_QUOTA, with when enough bytes leave the hour) when that
        would pass the quota. Constant time: the key keeps a running total."""
        use = self._recent(key_name)
        if use.entries and use.used + body_bytes > self.bytes_per_hour:
            raise Refused(
                "DEAD_LETTER_QUOTA",
                f"key {key_name} may keep {self.bytes_per_hour} bytes of rejected payloads an "
                f"hour; {use.used} are counted in the last hour",
                (self._frees_at(use, body_bytes) - self.clock.now()).total_seconds(),
            )
        while use.entries and use.entries[-1].size == 0:  # settled, keeping nothing
            use.entries.pop()
        reservation = Reservation(self.clock.now(), body_bytes, use)
        use.entries.append(reservation)
        use.used += body_bytes
        return reservation

    @staticmethod
    def settle(reservation: Reservation, kept_bytes: int) -> None:
        """The submission was answered: its rejected messages kept `kept_bytes` of raw payload
        (a submission never settled keeps its whole reservation)."""
        if reservation.counted:
            reservation.use.used += kept_bytes - reservation.size
        reservation.size = kept_bytes

    def _frees_at(self, use: _KeyUse, body_bytes: int) -> datetime:
        """When enough of the oldest bytes leave the hour for `body_bytes` more to fit."""
        left = use.used
        for entry in use.entries:
            left -= entry.size
            if left + body_bytes <= self.bytes_per_hour:
                return entry.at + QUOTA_WINDOW
        return use.entries[-1].at + QUOTA_WINDOW

    def _recent(self, key_name: str) -> _KeyUse:
        use = self._kept.setdefault(key_name, _KeyUse())
        horizon = self.clock.now() - QUOTA_WINDOW
        while use.entries and use.entries[0].at <= horizon:
            gone = use.entries.popleft()
            use.used -= gone.size
            gone.counted = False
        return use
