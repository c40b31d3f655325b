"""Month-end close per plant, in the plant's time zone, through a whole twin run: Monterrey
(UTC-6) and Paris (UTC+1) across the November close. Finance closes each plant's November two
hours after its own local midnight; a confirmation at 23:xx local on 30 November posts into
November, not late — in Monterrey that is 05:xx UTC on 1 December, hours after a close at UTC
midnight would have been."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from sim.run.runner import simulate
from tests.scenarios import harness

ZONES = {"MTY": "America/Monterrey", "PAR": "Europe/Paris"}
# Local midnight on 1 December plus the two-hour close lag.
CLOSED_AT = {
    "MTY": datetime(2026, 12, 1, 8, tzinfo=UTC),
    "PAR": datetime(2026, 12, 1, 1, tzinfo=UTC),
}

TWO_ZONES = {
    **harness.document(),
    "name": "two_zones_close",
    "start": "2026-11-30T12:00:00+00:00",
    "horizon": "1d",
    "plants": [
        {
            "id": plant,
            "timezone": zone,
            "work_centres": [
                {"id": "CUT", "capacity": 3},
                {"id": "WELD", "capacity": 3},
                {"id": "PACK", "capacity": 2},
            ],
        }
        for plant, zone in ZONES.items()
    ],
    "edge_cases": {"period_close": True, "close_lag": "2h"},
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """The ledger of one run of the two-plant scenario."""
    directory = tmp_path_factory.mktemp("two-zones")
    simulate(harness.scenario(base=TWO_ZONES), out=directory)
    connection = sqlite3.connect(directory / "ledger.db")
    yield connection
    connection.close()


def test_each_plant_closes_november_after_its_own_local_midnight(db):
    rows = db.execute(
        "SELECT plant, period, status, envelope FROM inbox WHERE message_type = 'PeriodClosed'"
    ).fetchall()
    closes = {
        plant: (period, status, datetime.fromisoformat(json.loads(envelope)["occurred_at"]))
        for plant, period, status, envelope in rows
    }
    assert len(rows) == len(closes)  # one close per plant
    assert closes == {plant: ("2026-11", "POSTED", at) for plant, at in CLOSED_AT.items()}


@pytest.mark.parametrize("plant", sorted(ZONES))
def test_a_confirmation_late_on_the_last_local_evening_posts_into_that_month(db, plant):
    rows = db.execute(
        "SELECT occurred_at, period, late FROM journal_entry"
        " WHERE plant = ? AND event_type = 'OperationCompleted'",
        (plant,),
    ).fetchall()
    zone = ZoneInfo(ZONES[plant])
    evening = [
        (period, late)
        for occurred_at, period, late in rows
        if (local := datetime.fromisoformat(occurred_at).astimezone(zone)).day == 30
        and local.hour == 23
    ]
    assert evening, "no confirmation between 23:00 and midnight local on 30 November"
    assert set(evening) == {("2026-11", 0)}
