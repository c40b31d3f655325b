"""What the console and the alert rounds cost on a twin run's ledger, printed as JSON.

    python benchmarks/console_reads.py RUN_DIR [--repeat 5]

RUN_DIR is a `twin run --set store.url=run` directory (its `ledger.db` and `scenario.yaml`).
Times, median of `--repeat` (milliseconds): one alert round (`evaluate_round`: a rule of each
kind plus the governance figures, reconciliation included), the dead letters page's read (open
ones), the same filtered by a correlation id, and a correlation id's story (`Core.story`,
which scans the inbox).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from checkout import ROOT, source_revision

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from integration import AlertRules, Core, ManualClock, open_store
from integration.service.alerts import evaluate_round
from integration.store.base import DeadLetterFilter
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.scenario.document import load_scenario

RULES = AlertRules.model_validate(
    {
        "rules": [
            {"name": "dead", "kind": "dead_letters", "window": "1h"},
            {"name": "holds", "kind": "hold_age", "older_than": "30m"},
            {"name": "books", "kind": "reconciliation_exceptions"},
            {"name": "rate", "kind": "success_rate", "window": "1d"},
        ]
    }
)


def _median_ms(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    scenario = load_scenario(options.run_dir / "scenario.yaml")
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    store = open_store(options.run_dir / "ledger.db")
    [[last]] = store.connection.execute("SELECT MAX(received_at) FROM inbox").fetchall()
    clock = ManualClock(datetime.fromisoformat(last))  # the run's end
    core = Core(settings, store, clock)
    figures = {
        "ledger": {
            "messages": store.first_pass(None).received,
            "dead_letters": sum(store.dead_letter_counts().values()),
            "entries": store.entry_count(),
        },
        "alert_round_ms": _median_ms(
            lambda: evaluate_round(core, RULES, clock.now()), options.repeat
        ),
        "open_dead_letters_ms": _median_ms(lambda: core.dead_letters(), options.repeat),
        "dead_letters_by_correlation_ms": _median_ms(
            lambda: core.dead_letters(DeadLetterFilter(status=None, correlation_id="corr-x")),
            options.repeat,
        ),
        "story_ms": _median_ms(lambda: core.story("corr-x"), options.repeat),
        "revision": source_revision(),
    }
    core.close()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
