"""`twin load` against `twin serve` in a subprocess on loopback, on SQLite and PostgreSQL:
the books read back agree with the twin's truth, a slow server shows coordinated omission, and
a target that double-posts is caught."""

from __future__ import annotations

import json
from typing import Any

import httpx

from integration import SourceSystem
from sim import load_scenario, simulate
from sim.load import HttpxClient, LoadOptions, drive_scenario, load_run
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.run.session import report_run
from tests.integration.pg import PG_URL, fresh_schema
from tests.integration.served import KEYS, OPS_KEY, Served
from tests.scenarios import harness
from tests.scenarios.harness import write_scenario

# Six hours of the small plant: duplicated and reordered deliveries, confirmations missing
# their lot (dead letters), partial completions, scrap.
DOCUMENT: dict[str, Any] = {
    **harness.document(),
    "name": "load-small",
    "seed": 11,
    "horizon": "6h",
    "edge_cases": {"missing_lot_rate": 0.2},
    "faults": {
        "duplicate_rate": 0.05,
        "network_delay": {"kind": "lognormal", "mean": "20s", "sd": "40s"},
    },
    "assert": ["duplicates.posted == 0", "drift.final_unexplained == 0"],
}
KEY_BY_SOURCE = {SourceSystem(source): key for source, key in KEYS.items()}
SPEED = 20_000.0  # six virtual hours in about a second


def document(**changes: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(DOCUMENT))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = copy
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return copy


def serve(tmp_path, db_url: str, doc: dict[str, Any]) -> Served:
    scenario = load_scenario(doc)
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    return Served(db_url, tmp_path, settings).start()


def run_load(tmp_path, served: Served, doc: dict[str, Any], **options: Any):
    path = write_scenario(tmp_path / "scenario.yaml", doc)
    settings = {"speed": SPEED, **options}
    return load_run(
        path,
        LoadOptions(served.url, KEY_BY_SOURCE, OPS_KEY, **settings),
        out_dir=tmp_path / "run",
    )


class LosesFirstAnswers(httpx.AsyncBaseTransport):
    """The real server applies every request, but the first answer to each message id never
    reaches the driver (as when a response is lost to a timeout)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        message_id = json.loads(request.content)["message_id"]
        if message_id in self.seen:
            return response
        self.seen.add(message_id)
        await response.aread()
        raise httpx.ReadTimeout("the answer was lost", request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def assert_books_agree_with_the_truth(summary: dict[str, Any]) -> None:
    assert summary["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True
    assert summary["ledger"]["reconciled"] is True
    assert summary["dead_letters"]["remaining"] > 0  # the missing lots, named
    assert summary["heal"] == {"unsent": 0, "in_flight": 0}
    assert all(result["passed"] for result in summary["assertions"])
    load = summary["load"]
    assert load["sends"]["scheduled"] == load["sends"]["started"] == load["sends"]["answered"]
    assert load["parked"] == 0 and load["refused"] == {}


def test_a_load_run_on_sqlite_reads_back_books_that_agree_with_the_truth(tmp_path):
    served = serve(tmp_path, f"sqlite:///{tmp_path}/ledger.db", DOCUMENT)
    try:
        outcome = run_load(tmp_path, served, DOCUMENT)
    finally:
        served.stop()
    summary = outcome.summary
    assert_books_agree_with_the_truth(summary)
    # the same traffic as the simulated run of the same scenario and seed
    simulated = simulate(load_scenario(DOCUMENT)).summary
    assert summary["events"] == simulated["events"]
    assert summary["duplicates"]["delivered"] == simulated["duplicates"]["delivered"]
    assert summary["coverage"]["reorder"] == simulated["coverage"]["reorder"] > 0
    assert set(summary["latency_ms"]) == set(simulated["latency_ms"])
    # the run directory is a run directory: `twin report` rebuilds the same summary
    for name in ("summary.json", "books.json", "trace.jsonl.gz", "report.md", "report.html"):
        assert (outcome.out / name).exists(), name
    rebuilt = report_run(outcome.out).summary
    assert rebuilt == summary


def test_a_load_run_on_postgresql_reads_back_books_that_agree_with_the_truth(tmp_path):
    with fresh_schema() as schema:
        served = serve(tmp_path, f"{PG_URL}?schema={schema}", DOCUMENT)
        try:
            summary = run_load(tmp_path, served, DOCUMENT).summary
        finally:
            served.stop()
    assert_books_agree_with_the_truth(summary)


def test_a_slow_target_shows_corrected_latency_far_above_uncorrected(tmp_path):
    """One request in flight against a schedule faster than the server: each request is
    quick once sent (uncorrected), but sends queue behind each other, and the latency from
    the intended send time (corrected) shows the wait: coordinated omission, measured."""
    served = serve(tmp_path, f"sqlite:///{tmp_path}/ledger.db", DOCUMENT)
    try:
        summary = run_load(tmp_path, served, DOCUMENT, speed=2_000_000.0, max_in_flight=1).summary
    finally:
        served.stop()
    load = summary["load"]
    assert load["fell_behind"] is True
    assert load["sends"]["late_share"] > 0.5
    for workflow in ("confirmation", "wo_release", "fg_receipt"):
        figures = load["latency_ms"][workflow]
        assert figures["corrected"]["p50"] > 5 * figures["uncorrected"]["p50"], workflow
    assert summary["duplicates"]["posted"] == 0  # slow, but still correct


def test_a_target_that_posts_duplicates_is_caught_by_the_read_back(tmp_path):
    """Negative control: the served core with idempotency and sequencing switched off (either
    alone refuses the copies: the stream sequence catches what the inbox lets through)."""
    doc = document(
        integration__idempotency=False, integration__sequencing=False, faults__duplicate_rate=0.2
    )
    served = serve(tmp_path, f"sqlite:///{tmp_path}/ledger.db", doc)
    try:
        summary = run_load(tmp_path, served, doc).summary
    finally:
        served.stop()
    assert summary["duplicates"]["posted"] > 0
    assert any(not r["passed"] for r in summary["assertions"] if "duplicates" in r["expr"])


def test_answers_lost_after_the_server_applied_them_are_recovered_from_the_duplicates(tmp_path):
    """Every message's first answer is lost after the server applied it; the retry (same id)
    is answered DUPLICATE with the `original` outcome, from which the measures learn what
    happened, so dead letters stay explained and nothing looks posted twice."""
    served = serve(tmp_path, f"sqlite:///{tmp_path}/ledger.db", DOCUMENT)
    transport = LosesFirstAnswers()
    client = HttpxClient(httpx.AsyncClient(base_url=served.url, transport=transport))
    options = LoadOptions(served.url, KEY_BY_SOURCE, OPS_KEY, speed=SPEED)
    try:
        summary, _measures, _books = drive_scenario(load_scenario(DOCUMENT), options, client=client)
    finally:
        served.stop()
    load = summary["load"]
    assert load["retries"] == {"timeout": len(transport.seen)}
    # Each retry is answered DUPLICATE. Not one per scheduled send: the scenario delivers one
    # message twice at once, and which of the two answers is lost depends on which comes
    # back first (when the POSTED one gets through, that send is not counted DUPLICATE).
    assert summary["outcomes"]["DUPLICATE"] >= len(transport.seen)
    assert summary["dead_letters"]["remaining"] > 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"  # each dead letter is named
    assert summary["duplicates"]["posted"] == 0
