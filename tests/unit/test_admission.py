"""What the service refuses before the core sees it (`integration.service.admission`), on an
injected clock and timer: the admission bound and the dead-letter quota."""

from datetime import timedelta

import pytest

from integration.clock import ManualClock
from integration.service.admission import Admission, DeadLetterQuota, Refused
from tests.builders import START

HOUR = timedelta(hours=1)


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def busy_admission(seconds_per_message: float, backlog: int) -> tuple[Admission, Timer]:
    """An admission that has learnt `seconds_per_message` and holds `backlog` messages."""
    timer = Timer()
    admission = Admission(max_wait_s=0.5, timer=timer)
    admission.admit(100)
    timer.now += 100 * seconds_per_message
    admission.answered(100)
    admission.admit(backlog)
    return admission, timer


def test_a_queue_ahead_past_half_the_bound_is_refused_with_its_wait():
    admission, _ = busy_admission(0.01, backlog=30)  # 0.3 s ahead > 0.25 s
    with pytest.raises(Refused) as refused:
        admission.admit(1)
    assert refused.value.code == "OVERLOADED" and refused.value.retry_after_s == 1
    assert admission.backlog == 30  # nothing of it counted


def test_a_batch_larger_than_the_bound_passes_behind_a_short_queue():
    admission, _ = busy_admission(0.01, backlog=10)  # 0.1 s ahead; the batch itself is 2 s
    admission.admit(200)
    assert admission.backlog == 210


def test_the_quota_refuses_past_its_bytes_and_says_when_enough_leave_the_hour():
    clock = ManualClock(START)
    quota = DeadLetterQuota(clock, bytes_per_hour=100)
    quota.settle(quota.reserve("mes", 60), 60)
    clock.advance(timedelta(minutes=10))
    for _ in range(1000):  # answered, kept nothing: they cost nothing and are not kept
        quota.settle(quota.reserve("mes", 30), 0)
    quota.settle(quota.reserve("mes", 30), 30)
    assert len(quota._kept["mes"].entries) <= 3 and quota._kept["mes"].used == 90
    with pytest.raises(Refused) as refused:
        quota.reserve("mes", 20)
    assert refused.value.code == "DEAD_LETTER_QUOTA"
    assert refused.value.retry_after_s == 50 * 60  # when the first 60 bytes leave the hour
    quota.reserve("erp", 100)  # another key's quota is its own
    clock.advance(timedelta(minutes=50))
    quota.reserve("mes", 20)


def test_a_reservation_settled_after_it_left_the_hour_does_not_count_again():
    clock = ManualClock(START)
    quota = DeadLetterQuota(clock, bytes_per_hour=100)
    slow = quota.reserve("mes", 80)
    clock.advance(HOUR + timedelta(seconds=1))
    quota.reserve("mes", 10)
    quota.settle(slow, 80)
    assert quota._kept["mes"].used == 10
