"""mfg-twin's digital twin and harness: SimPy plants that drive the integration core and measure
latency, duplicate postings and reconciliation drift.

The public API is this module's `__all__`; the `twin` command line is `sim.cli`.
"""

from sim.model.target import Books, Target
from sim.run.http_target import HttpTarget
from sim.run.runner import Run, simulate
from sim.run.session import RunOutcome, run_scenario
from sim.run.targets import InProcessTarget, NullTarget
from sim.scenario.document import Scenario, load_scenario, scenario_schema

__all__ = [
    "Scenario",
    "load_scenario",
    "scenario_schema",
    "simulate",
    "Run",
    "run_scenario",
    "RunOutcome",
    "Target",
    "Books",
    "InProcessTarget",
    "NullTarget",
    "HttpTarget",
]
