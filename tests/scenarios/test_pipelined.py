"""The twin and the core in two processes (`sim.run.pipelined`): a pipelined run's summary and
series are those of a run in one process, for every library scenario and several seeds; the
same comparison catches a pipeline that drops an answer or samples the wrong books; a
scenario whose flow reads the core's answers runs in one process; a failing core's process
surfaces as an error and leaves no process behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from integration import ConfigurationError
from sim.cli import twin
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.report.trace import Trace
from sim.run import pipelined, runner
from sim.run.core_process import CoreProcess, CoreProcessError
from sim.run.pipelined import DeferredMeasures, PipelinedTarget, processes_for
from sim.run.runner import Run, simulate
from sim.scenario.document import Scenario, load_scenario
from tests.scenarios import harness

LIBRARY = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))
SEEDS = (1, 7)
# Short horizons: 12 h (the outage scenarios' windows end at 8h25), the month end's cut to 3 h
# (about 4,000 messages).
HORIZONS = {"month_end_3_plants": "3h"}


def library(path: Path, seed: int) -> Scenario:
    return load_scenario(path, [f"seed={seed}", f"horizon={HORIZONS.get(path.stem, '12h')}"])


def seen(run: Run) -> tuple[str, str]:
    """What must not depend on the processes: the summary outside `run`, and the series."""
    return harness.without_run(run.summary), json.dumps(run.series, sort_keys=True, default=str)


@cache
def one_process(path: Path, seed: int) -> Run:
    return simulate(library(path, seed), processes=1)


def pipelined_run(scenario: Scenario) -> Run:
    run = simulate(scenario, processes=2)
    assert run.summary["run"]["processes"] == 2
    return run


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", LIBRARY, ids=lambda path: path.stem)
def test_a_pipelined_run_equals_a_run_in_one_process(path: Path, seed: int) -> None:
    scenario = library(path, seed)
    expected = one_process(path, seed)
    assert expected.summary["run"]["processes"] == 1
    if not pipelined.flow_ignores_answers(scenario):  # operations_oncall: holds, operators
        auto = simulate(scenario)
        assert auto.summary["run"]["processes"] == 1
        assert seen(auto) == seen(expected)
        return
    if (os.cpu_count() or 1) >= 2:
        assert processes_for(scenario, None) == 2  # the default where it can help
    assert seen(pipelined_run(scenario)) == seen(expected)


def test_a_pipelined_run_writes_the_same_trace(tmp_path: Path) -> None:
    """The measures see the same calls in the same order: the traces are the same, line for
    line (the reordering scenario: holds released and expired, duplicates)."""
    scenario = library(next(path for path in LIBRARY if path.stem == "out_of_order"), SEEDS[0])
    traces = []
    for processes in (1, 2):
        trace = Trace(tmp_path / f"trace-{processes}.jsonl.gz")
        try:
            simulate(scenario, trace=trace, processes=processes)
        finally:
            trace.close()
        traces.append(harness.read_trace(tmp_path / f"trace-{processes}.jsonl.gz"))
    assert len(traces[0]) > 1000
    assert traces[0] == traces[1]


def test_the_library_comparisons_see_every_kind_of_answer() -> None:
    """Holds, dead letters and duplicates come back through the pipeline in the comparisons
    above (a library without them would leave the deferred resolves untested)."""
    outcomes: Counter[str] = Counter()
    for name in ("out_of_order", "backflush_errors", "duplicate_storm"):
        path = next(path for path in LIBRARY if path.stem == name)
        outcomes.update(one_process(path, SEEDS[0]).summary["outcomes"])
    assert {"POSTED", "HELD", "REJECTED", "DUPLICATE"} <= set(outcomes), outcomes


# --- the comparison sees a broken pipeline ---------------------------------------------------
QUEUE = next(path for path in LIBRARY if path.stem == "erp_outage_queue")  # 5-minute samples


def test_negative_control_one_answer_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = library(QUEUE, SEEDS[0])
    applied = DeferredMeasures._answered
    calls = Counter[str]()

    def all_but_the_hundredth(self, outcome, *args) -> None:
        calls["answered"] += 1
        if calls["answered"] != 100:
            applied(self, outcome, *args)

    monkeypatch.setattr(DeferredMeasures, "_answered", all_but_the_hundredth)
    run = pipelined_run(scenario)
    assert calls["answered"] > 100
    assert seen(run) != seen(one_process(QUEUE, SEEDS[0]))  # the comparison of the library


def test_negative_control_sample_against_the_wrong_books(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each drift sample gets the books asked for the sample before (off by one marker)."""
    scenario = library(QUEUE, SEEDS[0])
    asked = PipelinedTarget.stock
    previous: list = []

    def stale_stock(self):
        answer = asked(self)
        previous.append(answer)
        return previous[-2] if len(previous) > 1 else answer

    monkeypatch.setattr(PipelinedTarget, "stock", stale_stock)
    run = pipelined_run(scenario)
    assert seen(run) != seen(one_process(QUEUE, SEEDS[0]))  # the comparison of the library


def test_negative_control_sample_against_the_live_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The truth as it is when the books come back, not the copy taken at the sample."""
    scenario = library(QUEUE, SEEDS[0])

    def live_truth(world, middleware, target) -> None:
        world.measures.sample_books(
            world.env.now, middleware.queue_depth(), world.truth.stock, world.catalogue,
            target.stock(),
        )  # fmt: skip

    monkeypatch.setattr(runner, "_sample", live_truth)
    run = pipelined_run(scenario)
    assert seen(run) != seen(one_process(QUEUE, SEEDS[0]))  # the comparison of the library


# --- when a run uses one process -------------------------------------------------------------
HOLDS = ("products.alternates_share=1", "edge_cases.quality_hold_rate=1")  # lots, all held


def test_a_flow_that_reads_answers_runs_in_one_process() -> None:
    oncall = next(path for path in LIBRARY if path.stem == "operations_oncall")
    assert processes_for(load_scenario(oncall), None) == 1
    held = harness.scenario(HOLDS)
    assert processes_for(held, None) == 1
    assert processes_for(harness.scenario(), 1) == 1
    with pytest.raises(ConfigurationError, match="reads the core's answers"):
        simulate(held, processes=2)


def test_a_flow_reading_answers_in_a_pipelined_run_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the choice wrong, the flow's read of an answer would fail, not go stale."""
    monkeypatch.setattr(pipelined, "flow_ignores_answers", lambda _scenario: True)
    held = harness.scenario(HOLDS)
    with pytest.raises(RuntimeError, match="read the core's answers in a pipelined run"):
        simulate(held, processes=2)
    assert not _core_processes()


# --- failures ------------------------------------------------------------------------------
def _core_processes() -> list[Any]:
    return [child for child in multiprocessing.active_children() if child.name == "twin-core"]


def test_a_failing_core_surfaces_with_its_traceback_and_no_process_is_left(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no such directory" / "ledger.db"
    scenario = harness.scenario([f"store.url={missing}"])
    with pytest.raises(CoreProcessError, match="the core's process failed") as failed:
        simulate(scenario, processes=2)
    assert "cannot open SQLite database" in str(failed.value)  # the core's own traceback
    assert not _core_processes()


def test_a_core_killed_while_answering_is_reported_dead_not_waited_for() -> None:
    """The core's process dies halfway through writing an answer (killed while its answer,
    larger than a pipe holds, waits for the twin to read): the twin's next read ends in
    `CoreProcessError`, not in a wait for the rest."""
    scenario = harness.scenario()
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    core = CoreProcess(settings, ":memory:", scenario.start)
    try:
        core.send([("stock",)] * 200_000)  # the answer: 400 KB pickled, six pipes full
        assert core._answers._reader.poll(60)  # noqa: SLF001 - its first bytes are there
        os.kill(core._process.pid, signal.SIGKILL)  # noqa: SLF001
        raised: list[BaseException] = []
        reader = threading.Thread(target=_receive_into, args=(core, raised), daemon=True)
        reader.start()
        reader.join(30)  # a bound on waiting, not a speed figure
        assert raised, "the twin still waits for the rest of the answer"
        assert isinstance(raised[0], CoreProcessError) and "died" in str(raised[0])
    finally:
        core.stop()


def _receive_into(core: CoreProcess, raised: list[BaseException]) -> None:
    try:
        core.receive()
    except BaseException as error:  # noqa: BLE001 - what the test looks at
        raised.append(error)


KILLED = """
import multiprocessing, sys
from sim.run.runner import simulate
from tests.scenarios import harness

def told(_virtual_s, _messages):
    if not told.done:
        told.done = print(*(p.pid for p in multiprocessing.active_children()), flush=True)
told.done = False
if __name__ == "__main__":
    simulate(harness.scenario(["horizon=30d"]), processes=2, progress=told)
"""


# A twin killed halfway through sending a block: the block's length and its first bytes are in
# the pipe, the rest never comes. The core's process holds a write end of that pipe too, so a
# read of the block would wait for the rest for ever.
KILLED_MID_BLOCK = """
import os, struct, time
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.run.core_process import CoreProcess
from tests.scenarios import harness

if __name__ == "__main__":
    scenario = harness.scenario()
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    core = CoreProcess(settings, ":memory:", scenario.start)
    pipe = core._requests._writer.fileno()
    os.write(pipe, struct.pack("!i", 1 << 20) + bytes(100))
    print(core._process.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("script", [KILLED, KILLED_MID_BLOCK], ids=["running", "mid_block"])
def test_a_killed_twin_leaves_no_process_behind(tmp_path: Path, script: str) -> None:
    """The core's process ends once the twin is gone without a word (killed), whatever it
    was doing."""
    path = tmp_path / "killed.py"
    path.write_text(script, encoding="utf-8")
    root = Path(__file__).parents[2]
    environment = {**os.environ, "PYTHONPATH": str(root)}
    with subprocess.Popen(
        [sys.executable, str(path)], cwd=root, env=environment, stdout=subprocess.PIPE, text=True
    ) as twin_process:
        try:
            children = [int(pid) for pid in twin_process.stdout.readline().split()]
        finally:
            twin_process.kill()
    assert children  # the core's process was running
    deadline = time.monotonic() + 30  # a bound on waiting, not a speed figure
    while any(_exists(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _exists(pid)]


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # not a zombie


# --- the command line ------------------------------------------------------------------------
def test_twin_run_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--processes 1` and `--processes 2` run as asked, to the same summary; 2 is refused for
    a scenario whose flow reads the core's answers."""
    chosen: list[int] = []

    def recorded(scenario: Scenario, asked: int | None) -> int:
        chosen.append(processes_for(scenario, asked))
        return chosen[-1]

    monkeypatch.setattr(runner, "processes_for", recorded)
    scenario = harness.write_scenario(tmp_path / "small.yaml", harness.document())
    summaries = []
    for processes in ("1", "2"):
        out = tmp_path / processes
        result = CliRunner().invoke(
            twin, ["run", str(scenario), "--quiet", "--out", str(out), "--processes", processes]
        )
        assert result.exit_code == 0, result.output
        summaries.append(json.loads((out / "summary.json").read_text(encoding="utf-8")))
    assert chosen == [1, 2]
    assert harness.without_run(summaries[0]) == harness.without_run(summaries[1])
    oncall = next(path for path in LIBRARY if path.stem == "operations_oncall")
    refused = CliRunner().invoke(twin, ["run", str(oncall), "--quiet", "--processes", "2"])
    assert refused.exit_code == 2
    assert "reads the core's answers" in refused.output
