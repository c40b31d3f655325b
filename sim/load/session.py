"""`twin load` end to end: the schedule, the timed run against the live target, the heal
phase and the read-back, then the same summary, trace and report as `twin run`, with a `load`
section of the driver's own figures. The target is a service over HTTP, or a broker
(`amqp://`, `sim.load.amqp`) whose consumer's ledger is read back (`sim.load.ledger`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from integration import ConfigurationError, Outcome, SourceSystem, Status
from sim.load.amqp import AmqpDriver, broker_driver, is_amqp
from sim.load.client import AiohttpClient, Client
from sim.load.driver import Driver, RetryPolicy, Timeline
from sim.load.figures import LoadFigures
from sim.load.http11 import Http11Client
from sim.load.ledger import LedgerReader
from sim.load.schedule import Schedule, Send, make_schedule
from sim.model.measures import Measures, drift
from sim.model.target import Books, TargetError
from sim.report.output import write_run
from sim.report.trace import Trace
from sim.run.http_target import HttpTarget
from sim.run.runner import run_figures
from sim.run.session import RunOutcome, prepare_run_dir
from sim.run.summary import summarise
from sim.scenario.assertions import AssertionResult, write_junit
from sim.scenario.document import Scenario, load_scenario

__all__ = ["LoadOptions", "load_run"]

MIN_SAMPLE_S = 0.2  # drift is read back at most this often, whatever the speed
READ_TIMEOUT_S = 60.0  # reads of the whole books after the run may take a while
HEAL_ROUNDS = 3
BROKER_STALL_S = 10.0  # outcomes unheard this long: a broker's consumer is not answering


@dataclass(frozen=True)
class LoadOptions:
    """Where and how hard to drive. `timeout_s` None: the scenario's `integration.timeout`,
    in real seconds (a client setting against a real server, not compressed by `speed`); for
    a broker, how long outcomes may stall before the messages still waiting are given up as
    unanswered, None: `BROKER_STALL_S` (a consumer's restart takes seconds)."""

    target: str
    keys: Mapping[SourceSystem, str]
    operate_key: str | None = None
    speed: float = 60.0
    max_in_flight: int = 256
    late_after_s: float = 0.010
    timeout_s: float | None = None
    client: str = "http11"  # or "aiohttp" (https:// targets always use aiohttp)
    # amqp:// targets: the ledger the consumer writes, the topology's prefix, and per source
    # the AMQP user (the key's name and the key)
    ledger: str | None = None
    prefix: str = "mfg"
    users: Mapping[SourceSystem, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if is_amqp(self.target) and self.ledger is None:
            raise ConfigurationError("an amqp:// target needs --ledger URL, the consumer's ledger")


def _identity(outcome: Outcome) -> tuple:
    return (outcome.status, outcome.code, outcome.entry_ids, outcome.committed_at)


class _Books:
    """The run's measures, fed in virtual time by the driver's wall-clock answers."""

    def __init__(self, measures: Measures, timeline: Timeline) -> None:
        self.measures = measures
        self.virtual = timeline.virtual
        self._sent: set[str] = set()
        self._heard: set[str] = set()  # message ids answered at least once
        self._stand_ins: dict[str, tuple] = {}

    def started(self, send: Send, wall: float) -> None:
        """A message's first delivery: counted now, stamped with when its source sent it (in
        the twin, before the network), as `twin run` stamps it."""
        if send.envelope.message_id not in self._sent:  # a duplicate is the same message
            self._sent.add(send.envelope.message_id)
            self.measures.sent(send.envelope, send.event, send.event.sent_at)

    def answered(self, send: Send, outcome: Outcome, wall: float) -> None:
        """An answer. When the first outcome heard of a message is a DUPLICATE, an earlier
        attempt was applied but its answer lost (a timeout, a broken connection) or is still
        on its way: the duplicate's `original` stands in for it, and that answer, should it
        still come, is not counted twice."""
        now = self.virtual(wall)
        message_id = send.envelope.message_id
        if message_id not in self._heard:
            self._heard.add(message_id)
            if outcome.status is Status.DUPLICATE and outcome.original is not None:
                self._stand_ins[message_id] = _identity(outcome.original)
                self.measures.answered(send.envelope, outcome.original, send.event, now, 0.0)
        elif self._stand_ins.get(message_id) == _identity(outcome):
            del self._stand_ins[message_id]  # the late answer the original stood in for
            return
        self.measures.answered(send.envelope, outcome, send.event, now, 0.0)


def _prime(measures: Measures, schedule: Schedule) -> None:
    """What the twin's side knew before the first send: the physical events, the edge cases
    it exercised and the standard costs its ECOs set (all in the trace, for `twin report`)."""
    for event in schedule.events:
        measures.happened(event)
        measures.reported(event)
    for name, times in schedule.coverage.items():
        measures.cover(name, times)
    for item, costs in schedule.changed_costs.items():
        measures.costed(item, costs)


async def _sampling(driver: Driver, reader: Reader, measures: Measures, schedule, every):
    """Drift of the target's stock against the truth at the same virtual moment."""
    loop = asyncio.get_running_loop()
    truth_at, cost = schedule.truth_until(), schedule.catalogue.standard_cost
    while True:
        await asyncio.sleep(every)
        now = driver.timeline.virtual(loop.time())
        try:
            book = await asyncio.to_thread(reader.stock)
        except TargetError:
            continue  # a target too busy to answer a read is seen in its latency, not here
        value, exceptions = drift(truth_at(now), book, cost)
        measures.sample(now, driver.queue_depth(), value, exceptions)


async def _drive(driver: Driver, reader: Reader, measures, schedule, every):
    """The timed run, then resends of what was parked: (still parked, virtual end time)."""
    sampler = asyncio.create_task(_sampling(driver, reader, measures, schedule, every))
    try:
        parked = await driver.run(schedule.sends)
        for _ in range(HEAL_ROUNDS):
            if not parked:
                break
            parked = await driver.resend(parked)
        return parked, driver.timeline.virtual(asyncio.get_running_loop().time())
    finally:
        sampler.cancel()
        await driver.close()


# The driver's retries as the twin's middleware counts the same edge cases.
COVERAGE_OF_RETRY = {
    "timeout": "timeout",
    "rate_limited": "rate_limited",
    "server_error": "target_unavailable",
    "connection": "target_unavailable",
}


def _cover(measures: Measures, figures: LoadFigures) -> None:
    for kind, times in sorted(figures.retries.items()):
        measures.cover(COVERAGE_OF_RETRY[kind], times)
    if figures.parked:
        measures.cover("parked", figures.parked)


def _plan(schedule: Schedule, options: LoadOptions) -> str:
    sends = schedule.sends
    span = (sends[-1].at - sends[0].at) / options.speed if sends else 0.0
    return (
        f"{len(sends)} deliveries over {span:.1f} s of wall time at {options.speed:g}x "
        f"to {options.target}"
    )


def _run_loop(coroutine):
    """Run on uvloop when it is installed (it wakes sleepers on time more reliably)."""
    try:
        from uvloop import new_event_loop
    except ImportError:
        new_event_loop = None
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coroutine)


def make_client(options: LoadOptions, timeout_s: float) -> Client:
    """The client `options.client` names; `http11` for plain http:// targets only."""
    if options.client == "http11" and options.target.startswith("http://"):
        return Http11Client(options.target, timeout_s)
    if options.client not in ("http11", "aiohttp"):
        raise ConfigurationError(f"unknown load client {options.client!r}: http11 or aiohttp")
    return AiohttpClient(options.target, options.max_in_flight, timeout_s)


def _driver(scenario: Scenario, options: LoadOptions, measures, figures, client) -> Driver:
    integration = scenario.integration
    timeline = Timeline(options.speed)
    books = _Books(measures, timeline)
    policy = RetryPolicy(
        integration.max_attempts, integration.backoff.total_seconds() / options.speed
    )
    if is_amqp(options.target):
        return broker_driver(
            options.target, options.users, options.prefix, books, figures, timeline,
            max_in_flight=options.max_in_flight, policy=policy,
            stall_s=options.timeout_s or BROKER_STALL_S,
        )  # fmt: skip
    return Driver(
        client or make_client(options, _timeout(scenario, options)),
        options.keys,
        books,
        figures,
        timeline,
        max_in_flight=options.max_in_flight,
        policy=policy,
    )


Reader = HttpTarget | LedgerReader  # where the books are read back from, and healed


def _reader(options: LoadOptions, schedule: Schedule) -> Reader:
    """The service's read API over HTTP, or for a broker the consumer's ledger."""
    import httpx

    if not is_amqp(options.target):
        return HttpTarget(
            httpx.Client(base_url=options.target, timeout=READ_TIMEOUT_S),
            options.keys,
            operate_key=options.operate_key,
        )
    return LedgerReader(schedule.catalogue.core_settings(), str(options.ledger))


def _timeout(scenario: Scenario, options: LoadOptions) -> float:
    return options.timeout_s or scenario.integration.timeout.total_seconds()


def _heal(reader: Reader, measures: Measures, schedule: Schedule, scenario, at: float):
    """Expire every hold, replay dead letters, take the last sample, read the books back."""
    measures.healed(*reader.heal(scenario.start + timedelta(seconds=at)), at)
    value, exceptions = drift(schedule.truth, reader.stock(), schedule.catalogue.standard_cost)
    measures.sample(at, 0, value, exceptions)
    return reader.books()


def drive_scenario(
    scenario: Scenario,
    options: LoadOptions,
    trace: Trace | None = None,
    announce: Callable[[str], None] | None = None,
    client: Client | None = None,
) -> tuple[dict[str, Any], Measures, Books]:
    """The load run of `scenario` against `options.target`: (summary, measures, books).
    `announce` hears what is about to be driven, once the schedule is made. `client` sends
    the messages (default: `options.client`, the HTTP/1.1 client for `http://` targets; e.g.
    an `HttpxClient` with a transport of your own; not for `amqp://` targets)."""
    started = time.perf_counter()
    schedule = make_schedule(scenario)
    measures = Measures(trace, scenario.measures.warmup.total_seconds())
    _prime(measures, schedule)
    figures = LoadFigures(options.late_after_s)
    driver = _driver(scenario, options, measures, figures, client)
    reader = _reader(options, schedule)
    every = max(scenario.measures.sample_interval.total_seconds() / options.speed, MIN_SAMPLE_S)
    try:
        if announce is not None:
            announce(_plan(schedule, options))
        parked, ended = _run_loop(_drive(driver, reader, measures, schedule, every))
        _cover(measures, figures)
        measures.heal_ended(0, len(parked))
        books = _heal(reader, measures, schedule, scenario, ended)
    finally:
        reader.close()
    cost = schedule.catalogue.standard_cost
    summary = summarise(scenario, measures, schedule.truth, cost, books)
    summary["load"] = {
        "target": options.target,
        "speed": options.speed,
        "max_in_flight": options.max_in_flight,
        "timeout_s": _timeout(scenario, options),
        "client": type(driver.client).__name__,
        **figures.summary(),
    }
    if isinstance(driver, AmqpDriver):
        summary["load"]["broker"] = driver.broker_figures()
    summary["run"] = run_figures(started, measures)
    return summary, measures, books


def load_run(
    path: str | Path,
    options: LoadOptions,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    junit: bool = False,
    announce: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Load-test `options.target` with a scenario file into a run directory (the layout of
    `twin run`, with books.json, what was read back, in place of the ledger)."""
    scenario = load_scenario(path, tuple(overrides))
    out = prepare_run_dir(scenario, out_dir)
    trace = Trace(out / "trace.jsonl.gz")
    try:
        summary, measures, books = drive_scenario(scenario, options, trace, announce)
    finally:
        trace.close()
    (out / "books.json").write_text(json.dumps(books.to_dict(), indent=1) + "\n")
    write_run(out, summary, measures.series, measures.encoded_histograms())
    if junit:
        results = [AssertionResult(**result) for result in summary["assertions"]]
        write_junit(out / "junit.xml", scenario.name, results)
    return RunOutcome(out, summary)
