"""The `twin` pytest plugin as a user meets it: installed with the package (entry point
`pytest11: mfg_twin`), a test that asks for the `twin` fixture runs a scenario in process and
asserts on the typed result; a failed run is a failed test.

The user's pytest runs in a subprocess, as a user's would: pytester's in-process mode restores
`sys.modules` after each run, and C extensions the twin's report uses (numpy) cannot be loaded
twice in one process."""

from __future__ import annotations

from importlib.metadata import entry_points

pytest_plugins = ["pytester"]

USER_ARGS = ("-W", "error", "-p", "no:cacheprovider")  # the plugin itself raises no warning
TIMEOUT = 120  # seconds; a run takes about one

# One plant for six hours: enough for duplicates to be delivered, well under a second to run.
TINY = """
name: tiny
seed: 3
start: 2026-11-02T06:00:00+00:00
horizon: 6h
plants:
  - id: LYON
    work_centres:
      - {id: CUT, capacity: 3}
      - {id: WELD, capacity: 3}
products: {count: 3, components: 3, operations: 2}
demand: {orders_per_day: 60, lot_size_min: 5, lot_size_max: 15}
assert:
  - duplicates.posted == 0
  - drift.final_unexplained == 0
  - ledger.balanced == true
"""

PASSING = """
from datetime import timedelta
from decimal import Decimal

def test_the_core_refuses_every_duplicate(twin):
    overrides = {"faults.duplicate_rate": 0.3, "faults.redelivery_after": timedelta(seconds=45)}
    result = twin.run("tiny.yaml", set=overrides, seed=5)
    assert result.passed, result.failures
    assert result.summary["seed"] == 5
    assert result.duplicates.delivered > 0 == result.duplicates.posted
    assert result.duplicates.detected == result.duplicates.delivered
    assert result.drift.final_unexplained_value == Decimal("0.00")
    assert 0 < result.latency("confirmation").p99 < 15 * 60_000
    assert result.coverage["duplicate_delivered"] > 0
    assert result.coverage["an_edge_case_that_never_happened"] == 0
    assert result.dead_letters.by_code["NO_SUCH_CODE"] == 0
    assert result.dead_letters.by_first_code["NO_SUCH_CODE"] == 0
    assert result.drift.final_undelivered_value == Decimal(
        result.summary["drift"]["final_undelivered_value"]
    )
    assert result.drift.final_undelivered_messages == 0 == result.held_at_end
    assert [a.expr for a in result.assertions][0] == "duplicates.posted == 0"
    assert (result.out / "summary.json").is_file()
    assert (result.out / "ledger.db").is_file()
    assert "redelivery_after: 45s" in (result.out / "scenario.yaml").read_text()
"""

# A core without idempotency (the negative control): duplicate goods receipts post twice, the
# books drift from the truth with no dead letter to explain it, the scenario's own
# `drift.final_unexplained == 0` fails, and so does the user's test.
FAILING = """
def test_a_core_without_idempotency_posts_duplicates(twin):
    result = twin.run(
        "tiny.yaml",
        set={"faults.duplicate_rate": 0.3, "integration.idempotency": False},
    )
    assert result.passed, result.failures
"""


def test_the_plugin_is_installed_as_a_pytest11_entry_point():
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("mfg_twin") == "sim.pytest_plugin"


def test_a_users_test_runs_a_scenario_with_overrides_and_a_seed(pytester):
    pytester.makefile(".yaml", tiny=TINY)
    pytester.makepyfile(test_user=PASSING)
    result = pytester.runpytest_subprocess(*USER_ARGS, timeout=TIMEOUT)
    result.assert_outcomes(passed=1)


def test_a_run_whose_assertions_fail_fails_the_users_test(pytester):
    pytester.makefile(".yaml", tiny=TINY)
    pytester.makepyfile(test_user=FAILING)
    result = pytester.runpytest_subprocess(*USER_ARGS, timeout=TIMEOUT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: [[]*drift.final_unexplained == 0 (value *"])


def test_a_test_that_never_asks_for_the_twin_runs_nothing(pytester):
    pytester.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*USER_ARGS, "--fixtures")
    result.stdout.fnmatch_lines(["*twin*"])  # offered to every test, used by none here
    assert not list(pytester.path.glob("**/summary.json"))
