"""`sim.run.progress`: progress lines without a terminal (every tenth, or after 30 s of wall
time, with an ETA), a bar with an ETA on one."""

from __future__ import annotations

import io

import pytest

from sim.run.progress import ProgressDisplay, span


class Clock:
    """Wall time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_span(seconds, text):
    assert span(seconds) == text


def test_without_a_terminal_a_line_every_tenth_with_an_eta():
    out, clock = io.StringIO(), Clock()
    with ProgressDisplay("job", 200, stream=out, clock=clock) as shown:
        for done in range(1, 201):
            clock.now += 0.1  # 20 s in all: the tenths decide
            shown.update(done, f"{done} done")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "job: 10%, 20 done, 2s elapsed, ETA 18s"
    assert lines[4] == "job: 50%, 100 done, 10s elapsed, ETA 10s"
    assert lines[-1] == "job: 100%, 200 done, 20s elapsed, ETA 0s"


def test_a_slow_job_still_says_something_every_30_seconds():
    out, clock = io.StringIO(), Clock()
    with ProgressDisplay("slow", 1000, stream=out, clock=clock) as shown:
        for done in range(1, 41):  # 4 % of the work in 200 s
            clock.now += 5
            shown.update(done, f"{done} done")
    lines = out.getvalue().splitlines()
    assert [line.split(", ")[1] for line in lines] == [f"{n} done" for n in (6, 12, 18, 24, 30, 36)]
    assert lines[0] == "slow: 1%, 6 done, 30s elapsed, ETA 1h22m"  # 30 s x 994 / 6 = 4970 s


def test_before_anything_is_done_the_eta_is_unknown():
    out, clock = io.StringIO(), Clock()
    with ProgressDisplay("wait", 4, stream=out, clock=clock) as shown:
        clock.now += 31
        shown.update(0, "0 of 4")
    assert out.getvalue() == "wait: 0%, 0 of 4, 31s elapsed, ETA unknown\n"


def test_on_a_terminal_a_bar_with_an_eta_and_no_lines():
    out = Terminal()
    with ProgressDisplay("bar", 10, stream=out) as shown:
        shown.update(5, "five of ten")
        shown._bar.refresh()  # draw now, not at the next tick of rich's refresh thread
        drawn = out.getvalue()
    assert "five of ten" in drawn and "ETA" in drawn and "━" in drawn
    assert "bar: 50%" not in drawn
