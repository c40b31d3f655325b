"""The twin and the in-process core as a two-stage pipeline on two cores (docs/architecture.md,
Run outputs): the twin's flow does not wait for the core's answers, which only feed the
measures, unless the scenario has it read them (quality holds wait for a receipt to post, the
operators read the books and dead letters); such a scenario runs in one process.

`PipelinedTarget` is the `Target` port over a `CoreProcess`: `submit`, `expire` and `stock`
return an `Answer` at once and send the call in a block; `heal`, `books`, `replay`, `discard`
wait for every answer, then for their own. `DeferredMeasures` stands in for the run's
`Measures`: it applies every call the twin makes, in the order made, once the answers a call
needs are back, so the measures and the trace see what a run in one process shows them."""

from __future__ import annotations

import copy
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from integration import (
    ConfigurationError,
    CoreSettings,
    DeadLetterFilter,
    Envelope,
    Outcome,
    parse_payload,
)
from sim.model.catalogue import Catalogue
from sim.model.measures import Measures
from sim.model.target import Books
from sim.model.truth import StockKey
from sim.run.core_process import Call, CoreProcess
from sim.scenario.document import Scenario

__all__ = [
    "Answer",
    "DeferredMeasures",
    "PipelinedTarget",
    "pipelined",
    "processes_for",
    "flow_ignores_answers",
]

BLOCK = 256  # calls per block sent to the core's process
# Blocks the twin may run ahead of the core's answers. Over 6 days of month_end_3_plants, runs
# at 16 took 1.16 times their CPU time in wall time, at 64 1.11 (three and four runs; 256 gained
# nothing more): the stages' speeds vary, and a longer queue absorbs it rather than one stage
# waiting. What waits is pickled in the queue: 64 blocks cost about 3 MB of peak RSS.
AHEAD = 64
_PENDING = object()


def processes_for(scenario: Scenario, asked: int | None) -> int:
    """How many processes a run of `scenario` on the in-process core uses: `asked` (1 or 2),
    or by default (None) 2 where that can help and the flow does not read the core's answers:
    2+ cores, not itself a worker process (a sweep's workers use the cores already), and
    neither quality holds nor alerting operators in the scenario."""
    if asked is not None:
        if asked == 2 and not flow_ignores_answers(scenario):
            raise ConfigurationError(
                f"{scenario.name} runs in one process: its flow reads the core's answers "
                "(quality holds, alerting operators)"
            )
        return asked
    parallel = (os.cpu_count() or 1) >= 2 and multiprocessing.parent_process() is None
    return 2 if parallel and flow_ignores_answers(scenario) else 1


def flow_ignores_answers(scenario: Scenario) -> bool:
    """Whether nothing in the twin's flow depends on what the core answered: quality holds a
    lot once its receipt has posted; operators read the books and dead letters, and replay."""
    return not scenario.edge_cases.quality_hold_rate and not scenario.operations.alerting


class Answer:
    """What the core will answer to one call, once it has."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = _PENDING

    @property
    def ready(self) -> bool:
        return self.value is not _PENDING


class PipelinedTarget:
    """The `Target` port over the core in a process of its own; `answered` is called each
    time answers come back."""

    def __init__(self, settings: CoreSettings, store_url: str, start: datetime) -> None:
        self._core = CoreProcess(settings, store_url, start)
        self._calls: list[Call] = []
        self._answers: list[Answer] = []
        self._sent: deque[list[Answer]] = deque()  # per block sent, oldest first
        self.answered: Callable[[], None] = lambda: None
        self.core_peak_rss_kb = 0  # the core's process's, once closed

    def submit(self, envelope: Envelope, at: datetime) -> Answer:
        """The envelope is read (serialised and hashed) here, in the twin's process: the
        core's was the busier, and with this the two do about the same work."""
        return self._later(("submit", parse_payload(envelope), at))

    def expire(self, at: datetime) -> list[Answer]:
        """One answer: the list of outcomes the core expired (`DeferredMeasures.resolve`)."""
        return [self._later(("expire", at))]

    def stock(self) -> Answer:
        """The books as the core has them after every call so far (sent at once: a sample
        waits for it)."""
        answer = self._later(("stock",))
        self._send()
        return answer

    def replay(self, selection: DeadLetterFilter, at: datetime) -> list[Outcome]:
        return self._now(("replay", selection, at))

    def discard(self, selection: DeadLetterFilter, reason: str, at: datetime) -> int:
        return self._now(("discard", selection, reason, at))

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        return self._now(("heal", at))

    def books(self) -> Books:
        return self._now(("books",))

    def close(self) -> None:
        """Close the core (committing its last group) and end its process."""
        try:
            if self._core.alive:
                self.core_peak_rss_kb = self._now(("close",))
        finally:
            self._core.stop()

    def drain(self) -> None:
        """Send what is waiting and take every answer."""
        self._send()
        while self._sent:
            self._take(wait=True)

    def _later(self, call: Call) -> Answer:
        answer = Answer()
        self._calls.append(call)
        self._answers.append(answer)
        if len(self._calls) >= BLOCK:
            self._send()
        return answer

    def _now(self, call: Call) -> Any:
        self.drain()
        self._core.send([call])
        (result,) = self._core.receive()
        return result

    def _send(self) -> None:
        if self._calls:
            self._core.send(self._calls)
            self._sent.append(self._answers)
            self._calls, self._answers = [], []
        while self._sent and self._take(wait=len(self._sent) > AHEAD):
            pass

    def _take(self, wait: bool) -> bool:
        """Take the oldest block's answers (waiting for them if `wait`): whether there were."""
        results = self._core.receive(wait)
        if results is None:
            return False
        for answer, result in zip(self._sent.popleft(), results, strict=True):
            answer.value = result
        self.answered()
        return True


class DeferredMeasures:
    """The run's `Measures` as the twin sees them in a pipelined run: every call is applied
    in order, a call that needs an answer (`answered`, `resolve`, `sample_books`) and all after
    it once the answer is back. Reading what the core answered is refused: a flow that does
    must run in one process."""

    def __init__(self, measures: Measures) -> None:
        self.measures = measures
        self.incidents = measures.incidents
        self._calls: deque[tuple[Answer | None, Callable[..., None], tuple]] = deque()

    def flush(self) -> None:
        """Apply the calls whose answers are back, in order, up to the first that waits."""
        calls = self._calls
        while calls:
            answer, method, args = calls[0]
            if answer is not None and answer.value is _PENDING:
                return
            calls.popleft()
            if answer is None:
                method(*args)
            else:
                method(answer.value, *args)

    def settled(self) -> None:
        """Raise unless every call has been applied (once every answer is back)."""
        if self._calls:
            raise RuntimeError(f"{len(self._calls)} calls on the measures still wait")

    def _later(self, answer: Answer | None, method: Callable[..., None], *args) -> None:
        # After a flush the first call waiting (if any) waits for its answer, which flushes
        # again when it comes: a call is applied now only if none waits and it needs no
        # answer or already has it (a `stock()` may be answered before its sample is made).
        if self._calls:
            self._calls.append((answer, method, args))
        elif answer is None:
            method(*args)
        elif answer.ready:
            method(answer.value, *args)
        else:
            self._calls.append((answer, method, args))

    # --- calls that need no answer -----------------------------------------------------------
    def happened(self, event) -> None:
        self._later(None, self.measures.happened, event)

    def reported(self, event) -> None:
        self._later(None, self.measures.reported, event)

    def sent(self, envelope, event, now: float) -> None:
        self._later(None, self.measures.sent, envelope, event, now)

    def cover(self, edge_case: str, times: int = 1) -> None:
        self._later(None, self.measures.cover, edge_case, times)

    def costed(self, item: str, costs: dict[str, Decimal]) -> None:
        self._later(None, self.measures.costed, item, costs)

    def heal_ended(self, unsent: int, in_flight: int) -> None:
        self._later(None, self.measures.heal_ended, unsent, in_flight)

    def healed(self, expired: list[Outcome], replayed: list[Outcome], now: float) -> None:
        self._later(None, self.measures.healed, expired, replayed, now)

    # --- calls on the core's answers ---------------------------------------------------------
    def answered(self, envelope, outcome: Answer, event, now: float, queued: float) -> None:
        self._later(outcome, self._answered, envelope, event, now, queued)

    def _answered(self, outcome: Outcome, envelope, event, now: float, queued: float) -> None:
        self.measures.answered(envelope, outcome, event, now, queued)

    def resolve(self, expired: Answer, now: float) -> None:
        """`expired` answers `PipelinedTarget.expire`: each outcome it lists is resolved."""
        self._later(expired, self._resolve_all, now)

    def _resolve_all(self, outcomes: list[Outcome], now: float) -> None:
        for outcome in outcomes:
            self.measures.resolve(outcome, now)

    def sample_books(
        self,
        now: float,
        queue_depth: int,
        truth: dict[StockKey, Decimal],
        catalogue: Catalogue,
        books: Answer,
    ) -> None:
        """A sample of drift: `truth` (a copy taken now) against `books` (`stock()` asked
        now), valued at the standard costs of now."""
        costs = copy.copy(catalogue)
        costs.items = dict(catalogue.items)  # an ECO replaces an item; it never changes one
        self._later(books, self._sample, now, queue_depth, truth, costs)

    def _sample(self, books, now, queue_depth, truth, costs) -> None:
        self.measures.sample_books(now, queue_depth, truth, costs, books)

    # --- what the flow may not read here -----------------------------------------------------
    def _refused(self, *_args) -> Any:
        raise RuntimeError("the twin's flow read the core's answers in a pipelined run")

    applied = unanswered = held = parked_event = _refused


def pipelined(
    settings: CoreSettings, store_url: str, start: datetime, measures: Measures
) -> tuple[PipelinedTarget, DeferredMeasures]:
    """The core in a process of its own, and the measures the twin feeds in its place."""
    deferred = DeferredMeasures(measures)
    target = PipelinedTarget(settings, store_url, start)
    target.answered = deferred.flush
    return target, deferred
