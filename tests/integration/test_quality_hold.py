"""A lot on quality hold: a confirmation drawing on it is refused LOT_ON_HOLD and filed under
that lot, so that once quality releases the lot a replay by code and lot posts it."""

from __future__ import annotations

from integration import ErrorCode, QualityHold, SourceSystem, Status
from integration.store.base import DeadLetterFilter
from tests.builders import confirm, new_core, release

HELD_LOT = DeadLetterFilter(code=ErrorCode.LOT_ON_HOLD, lot="L1")


def test_a_confirmation_on_a_held_lot_is_filed_under_it_and_posts_once_released():
    core, env, _clock = new_core()
    assert core.submit(release(env)).status is Status.POSTED
    hold = QualityHold(plant="P1", item="RAW-L", lot="L1")
    assert core.submit(env(hold, source=SourceSystem.WMS)).status is Status.POSTED
    refused = core.submit(confirm(env))
    assert refused.code is ErrorCode.LOT_ON_HOLD
    (letter,) = core.dead_letters(HELD_LOT)
    assert letter.id == refused.dead_letter_id and letter.ids.work_order == "WO-1"
    assert core.dead_letters(DeadLetterFilter(code=ErrorCode.LOT_ON_HOLD, lot="L2")) == []
    assert [o.code for o in core.replay(HELD_LOT)] == [ErrorCode.LOT_ON_HOLD]  # still held
    released = hold.model_copy(update={"released": True})
    assert core.submit(env(released, source=SourceSystem.WMS)).status is Status.POSTED
    assert [o.status for o in core.replay(HELD_LOT)] == [Status.POSTED]
    assert core.dead_letters() == []
