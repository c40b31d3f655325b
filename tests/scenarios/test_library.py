"""The scenario library (scenarios/*.yaml): every scenario runs as `twin run --check` would, every
`assert:` line holds, and the edge case the scenario exists for really happened (a scenario whose
edge case never happened has tested nothing). month_end_3_plants is the benchmark scale (minutes,
a million messages) and runs from benchmarks/, not here."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest

from sim.model.catalogue import STORES, Catalogue
from sim.model.streams import Streams
from sim.model.truth import quantity
from sim.run.session import RunOutcome, run_scenario
from sim.scenario.document import load_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
TOO_BIG_FOR_CI = {"month_end_3_plants"}

# scenario -> the coverage key of the edge case it demonstrates. multi_plant_overlays has no
# coverage counter of its own: the ledger shows the overlay quantity was backflushed (below).
EDGE_CASE: dict[str, str | None] = {
    "baseline": "partial_completion",
    "shift_change_burst": "shift_change_burst",
    "partial_completions": "partial_completion",
    "eco_during_open_orders": "eco_open_order",
    "backflush_errors": "backflush_shortage",
    "lot_substitution": "lot_substitution",
    "subcontract_receipts": "subcontract_receipt",
    "period_close": "late_posting",
    "multi_plant_overlays": None,
    "duplicate_storm": "duplicate_delivered",
    "out_of_order": "reorder",
    "erp_outage_sync": "timeout",
    "erp_outage_queue": "outage",
    "operations_oncall": "backflush_shortage",
}
SAFETY = ("duplicates.posted == 0", "drift.final_unexplained == 0", "ledger.balanced == true")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Runs each library scenario once per module (per xdist worker), into its own directory."""
    runs: dict[str, RunOutcome] = {}

    def run(name: str) -> RunOutcome:
        if name not in runs:
            out = tmp_path_factory.mktemp(name)
            runs[name] = run_scenario(
                LIBRARY / f"{name}.yaml", out_dir=out, progress=False, junit=True
            )
        return runs[name]

    return run


def test_every_library_scenario_names_its_edge_case():
    names = {path.stem for path in LIBRARY.glob("*.yaml")}
    assert names - TOO_BIG_FOR_CI == set(EDGE_CASE)


@pytest.mark.parametrize("name", sorted(EDGE_CASE))
def test_scenario_file_says_what_it_demonstrates_and_asserts_safety(name):
    path = LIBRARY / f"{name}.yaml"
    assert path.read_text(encoding="utf-8").startswith("#")  # a header comment
    scenario = load_scenario(path)
    assert scenario.name == name
    assert scenario.description
    lines = [" ".join(line.split()) for line in scenario.assertions]
    assert set(SAFETY) <= set(lines)
    if EDGE_CASE[name] is not None:  # `coverage.X > 0`, or a stronger `> N`
        assert any(line.startswith(f"coverage.{EDGE_CASE[name]} > ") for line in lines)


@pytest.mark.parametrize("name", sorted(EDGE_CASE))
def test_scenario_passes_its_check_and_exercises_its_edge_case(name, library):
    outcome = library(name)
    summary = outcome.summary
    assert outcome.failed_assertions() == []
    assert len(summary["assertions"]) == len(load_scenario(LIBRARY / f"{name}.yaml").assertions)
    suite = ET.parse(outcome.out / "junit.xml").getroot()
    assert suite.get("failures") == "0"
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True
    if EDGE_CASE[name] is not None:
        assert summary["coverage"][EDGE_CASE[name]] > 0


def _series(outcome: RunOutcome) -> list[dict]:
    return json.loads((outcome.out / "series.json").read_text(encoding="utf-8"))


def test_the_same_outage_costs_sync_timeouts_and_duplicates_and_the_queue_only_a_backlog(
    library,
):
    sync, queue = library("erp_outage_sync").summary, library("erp_outage_queue").summary
    # The same plant, the same physical events (common random numbers): only the pattern differs.
    assert sync["events"]["truth"] == queue["events"]["truth"]
    assert sync["outcomes"]["POSTED"] == queue["outcomes"]["POSTED"]
    # Sync: every waiting caller meets the outage, then the herd times out, retries (some with a
    # new message id) and commits the same event again; the core refuses every extra copy.
    assert sync["coverage"]["outage"] > 50 * queue["coverage"]["outage"]
    assert sync["coverage"]["timeout"] > 0 == queue["coverage"].get("timeout", 0)
    assert sync["events"]["messages"] > sync["events"]["truth"]
    assert queue["events"]["messages"] == queue["events"]["truth"]
    assert sync["duplicates"]["delivered"] > 0 == queue["duplicates"]["delivered"]
    assert sync["duplicates"]["detected"] == sync["duplicates"]["delivered"]
    # While the ERP is down the queue holds the backlog; the sync MES holds it itself (its
    # callers wait out the Retry-After) and piles it onto the ERP all at once when it returns.
    outage = load_scenario(LIBRARY / "erp_outage_queue.yaml").faults.outages[0]
    begin, end = outage.at.total_seconds(), (outage.at + outage.duration).total_seconds()

    def depth(name: str, after: float, before: float) -> int:
        samples = _series(library(name))
        return max(s["queue_depth"] for s in samples if after < s["t_s"] <= before)

    assert depth("erp_outage_queue", begin, end) > 50
    assert depth("erp_outage_sync", begin, end) == 0
    assert depth("erp_outage_sync", end, end + 3600) > 0


def test_multi_plant_overlays_backflush_the_overlay_quantity_at_the_overlay_plant(library):
    """Each posted confirmation at the overlay plant consumed exactly the overlay quantity of an
    overlaid component (the twin's own plant BOM), never the base BOM's."""
    path = LIBRARY / "multi_plant_overlays.yaml"
    scenario = load_scenario(path)
    catalogue = Catalogue.generate(scenario, Streams(scenario.seed))
    plant = scenario.plants[-1].id
    overlaid = {
        product: {
            change.component for o in bom.overlays if o.plant == plant for change in o.changes
        }
        for (product, revision), bom in catalogue.boms.items()
        if revision == "A" and product in catalogue.products
    }
    assert all(overlaid.values())  # overlay_share 1: every product has one at the last plant
    with sqlite3.connect(library("multi_plant_overlays").out / "ledger.db") as db:
        product_of = dict(
            db.execute(
                "SELECT work_order, item FROM inbox WHERE message_type = 'WorkOrderReleased'"
            )
        )
        moves = db.execute(
            "SELECT i.envelope, m.item, m.qty FROM inbox i"
            " JOIN journal_entry e ON e.inbox_id = i.inbox_id"
            " JOIN stock_move m ON m.entry_id = e.entry_id"
            " WHERE i.message_type = 'OperationCompleted' AND i.status = 'POSTED'"
            " AND m.plant = ? AND m.location = ?",
            (plant, STORES),
        ).fetchall()
    checked = 0
    for envelope, item, qty in moves:
        message = json.loads(envelope)["message"]
        product = product_of[message["work_order"]]
        if message["bom_revision"] != "A" or item not in overlaid[product]:
            continue
        units = Decimal(message["good_qty"]) + Decimal(message["scrap_qty"])
        line = next(ln for ln in catalogue.plant_bom(product, "A", plant) if ln.component == item)
        base = next(ln for ln in catalogue.boms[(product, "A")].lines if ln.component == item)
        assert line.qty_per != base.qty_per
        assert -Decimal(qty) == quantity(line.qty_per * units * (1 + line.scrap_factor))
        checked += 1
    assert checked > 0


def test_a_bom_released_before_its_alternate_item_waits_for_it(tmp_path):
    # Seed 1 of lot_substitution: the PLM's ItemCreated for an alternate is overtaken by the
    # BOM that names it.
    outcome = run_scenario(
        LIBRARY / "lot_substitution.yaml", ["seed=1"], out_dir=tmp_path, progress=False
    )
    assert outcome.summary["dead_letters"]["total"] == 0
    assert outcome.failed_assertions() == []


def test_subassemblies_sharing_a_component_ship_under_distinct_keys(tmp_path):
    # Seed 5 of subcontract_receipts: both subassemblies of the plant need the same component.
    outcome = run_scenario(
        LIBRARY / "subcontract_receipts.yaml", ["seed=5"], out_dir=tmp_path, progress=False
    )
    assert "DUPLICATE" not in outcome.summary["outcomes"]  # no duplicate faults in this scenario
    assert outcome.failed_assertions() == []
