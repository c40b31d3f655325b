"""Rebuild a run's summary from its raw data: replay the trace into fresh measures and read
the books from the run's ledger. `twin report RUN_DIR` uses it, so a run that was cut off, or
made by an older build, can still be reported."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from integration import ConfigurationError, ErrorCode, Outcome, Status
from sim.model.catalogue import Catalogue
from sim.model.measures import Measures
from sim.model.streams import Streams
from sim.model.target import Books
from sim.model.truth import PhysicalEvent, StockKey
from sim.report.trace import read_trace
from sim.run.runner import Run
from sim.run.summary import summarise
from sim.run.targets import InProcessTarget
from sim.scenario.document import load_scenario

__all__ = ["rebuild"]


class _Message(NamedTuple):
    type: str


class _Sent(NamedTuple):
    """What the measures read of a sent envelope."""

    message: _Message


class _Delivered(NamedTuple):
    """What the measures read of a delivered envelope."""

    stream: str | None
    source_seq: int | None


def _outcome(record: dict[str, Any]) -> Outcome:
    code = ErrorCode(record["code"]) if record["code"] else None
    return Outcome(Status(record["status"]), record["message_id"], code=code, late=record["late"])


class _Replay:
    def __init__(self, catalogue: Catalogue, warmup_s: float = 0.0) -> None:
        self.catalogue = catalogue
        self.measures = Measures(warmup_s=warmup_s)
        self.events: dict[int, PhysicalEvent] = {}
        self.truth: dict[StockKey, Decimal] = defaultdict(Decimal)

    def apply(self, record: dict[str, Any]) -> None:
        kind, measures = record["kind"], self.measures
        if kind == "truth":
            self._truth(record)
        elif kind == "message":
            sent = _Sent(_Message(record["type"]))
            measures.sent(sent, self.events[record["event"]], record["t"])
        elif kind == "answer":
            delivered = _Delivered(record["stream"], record["seq"])
            event = self.events[record["event"]]
            measures.answered(delivered, _outcome(record), event, record["t"], record["queued"])
        elif kind == "resolution":
            measures.resolve(_outcome(record), record["t"])
        elif kind == "cover":
            measures.cover(record["name"], record["n"])
        elif kind == "cost":
            costs = {plant: Decimal(cost) for plant, cost in record["costs"].items()}
            self.catalogue.set_standard_costs(record["item"], costs)
        elif kind == "detected":
            measures.incidents.detect(record["event"], record["t"], record["rule"])
        elif kind == "alert":
            measures.incidents.fired(record["rule"], record["t"])
        elif kind == "fixed":
            incidents = measures.incidents
            incidents.fixed(record["event"], record["class"], record["replayed"], record["t"])
        elif kind == "heal_ended":
            measures.heal_ended(record["unsent"], record["in_flight"])
        elif kind == "sample":
            drift = Decimal(record["drift_value"])
            measures.sample(record["t"], record["queue_depth"], drift, record["drift_exceptions"])

    def _truth(self, record: dict[str, Any]) -> None:
        event = PhysicalEvent(record["event"], record["workflow"], record["t"], record["plant"])
        for plant, item, location, qty in record["deltas"]:
            event.deltas[(plant, item, location)] = Decimal(qty)
            self.truth[(plant, item, location)] += Decimal(qty)
        self.events[event.id] = event
        self.measures.happened(event)
        self.measures.reported(event)  # a truth record is written when its source reports it


def _books(catalogue: Catalogue, ledger: Path, start) -> Books:
    """The books of a copy of the ledger: opening a core may resume what a cut-off run left
    waiting, and the audited ledger must stay as the run left it."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "ledger.db"
        shutil.copyfile(ledger, copy)
        target = InProcessTarget(catalogue.core_settings(), str(copy), start)
        try:
            return target.books()
        finally:
            target.close()


def _read_books(run_dir: Path, catalogue: Catalogue, start) -> Books:
    """The ledger's books, or for a load run (whose ledger is the target's) what it read back."""
    if (run_dir / "ledger.db").exists():
        return _books(catalogue, run_dir / "ledger.db", start)
    return Books.from_dict(json.loads((run_dir / "books.json").read_text()))


def rebuild(run_dir: Path) -> Run:
    """The run's summary and series from scenario.yaml, trace.jsonl.gz and ledger.db (or the
    books.json of a load run). The `run` and `load` sections (wall time, memory, the driver's
    figures) are kept from summary.json when there is one."""
    for name in ("scenario.yaml", "trace.jsonl.gz"):
        if not (run_dir / name).exists():
            raise ConfigurationError(f"{run_dir} has no {name}: not a run directory")
    if not (run_dir / "ledger.db").exists() and not (run_dir / "books.json").exists():
        raise ConfigurationError(f"{run_dir} has no ledger.db or books.json: not a run directory")
    scenario = load_scenario(run_dir / "scenario.yaml")
    catalogue = Catalogue.generate(scenario, Streams(scenario.seed))
    replay = _Replay(catalogue, scenario.measures.warmup.total_seconds())
    for record in read_trace(run_dir / "trace.jsonl.gz"):
        replay.apply(record)
    books = _read_books(run_dir, catalogue, scenario.start)
    truth = {key: qty for key, qty in replay.truth.items()}
    summary = summarise(scenario, replay.measures, truth, catalogue.standard_cost, books)
    previous = run_dir / "summary.json"
    kept = json.loads(previous.read_text()) if previous.exists() else {}
    if "load" in kept:
        summary["load"] = kept["load"]
    summary["run"] = kept.get("run", {})
    return Run(summary, replay.measures.series, replay.measures)
