"""What the core refuses leaves the inbound queues once, for the dead-letter queue with the
core's verdict in headers: a payload that cannot be read (raw, byte for byte), an envelope the
rules reject, a sender authenticated as another source, and a publisher with no key at all.
Nothing is redelivered, and the core's own dead letter replays once the master data is fixed.
"""

from __future__ import annotations

import json
import time

from integration import (
    Core,
    DeadLetterFilter,
    ItemCreated,
    ItemType,
    Location,
    SystemClock,
    open_store,
)
from integration.broker import (
    HEADER_CODE,
    HEADER_DEAD_LETTER_ID,
    HEADER_PROBLEMS,
    HEADER_REASON,
    HEADER_SOURCE,
)
from tests.broker.rabbit import user
from tests.broker.streams import SETUP_KEY
from tests.broker.test_exactly_once import wait_until
from tests.builders import (
    LOCATIONS,
    Envelopes,
    confirm,
    item,
    master_data,
    receipt,
    release,
    settings,
)

UNREADABLE = b"\xff\xfe{not json at all\x00"


def dead_by_code(rabbit, count: int, timeout: float = 20.0) -> dict[str, list]:
    """Wait for `count` dead letters in the DLQ; then check for a moment that no more come."""
    found = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        found += rabbit.drain(rabbit.topology.dead)
        time.sleep(0.1)
    time.sleep(1.0)  # a redelivery loop would add more meanwhile
    found += rabbit.drain(rabbit.topology.dead)
    by_code: dict[str, list] = {}
    for letter in found:
        by_code.setdefault(letter.headers[HEADER_CODE], []).append(letter)
    return by_code


def test_poison_messages_reach_the_dead_letter_queue_once_and_replay_after_the_fix(
    rabbit, consumers, tmp_path
):
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    consumer = consumers(db_url)
    envelopes = Envelopes()
    rabbit.publish(master_data(envelopes), key=SETUP_KEY)
    nowhere = envelopes(receipt("3", location="NOWHERE"))
    waiting = envelopes(receipt("4", item="RAW-NEW"))  # held until its item exists
    rabbit.publish_raw(user("MES"), [(UNREADABLE, "poison", "poison-1")])
    rabbit.publish([nowhere, waiting])

    rabbit.wait_outcomes([waiting.message_id], statuses=("HELD",))
    dead_depth = f'mfg_twin_broker_queue_depth{{queue="{rabbit.topology.dead}"}}'
    wait_until(lambda: consumer.metric(dead_depth) == 2, what="the DLQ's depth polled")
    assert consumer.metric("mfg_twin_broker_lag_seconds_count") == len(master_data(Envelopes())) + 3
    by_code = dead_by_code(rabbit, 2)
    assert sorted(by_code) == ["MALFORMED_PAYLOAD", "UNKNOWN_LOCATION"]
    [malformed], [rejected] = by_code["MALFORMED_PAYLOAD"], by_code["UNKNOWN_LOCATION"]
    assert malformed.body == UNREADABLE, "the raw payload, byte for byte"
    assert rejected.body == nowhere.model_dump_json().encode()
    for letter, source in ((malformed, "MES"), (rejected, "WMS")):
        assert letter.headers[HEADER_REASON] == "rejected"
        assert letter.headers[HEADER_SOURCE] == source
        assert isinstance(letter.headers[HEADER_DEAD_LETTER_ID], int)
    problems = json.loads(rejected.headers[HEADER_PROBLEMS])
    assert [p["code"] for p in problems] == ["UNKNOWN_LOCATION"]
    assert rejected.correlation_id == f"corr-{nowhere.message_id}"
    assert sum(rabbit.ready().values()) == 0, "nothing left to redeliver"
    assert [o["status"] for o in rabbit.by_message()[nowhere.message_id]] == ["REJECTED"]
    rabbit.wait_outcomes(["poison-1"], statuses=("REJECTED",))  # unreadable: the delivery's id
    answers = {answer["message_id"]: answer for answer in rabbit.answers}
    for message_id, source in ((nowhere.message_id, "WMS"), ("poison-1", "MES")):
        assert answers[message_id]["correlation_id"] == f"corr-{message_id}"
        assert answers[message_id]["source"] == source
    assert consumer.metric('mfg_twin_broker_dead_lettered_total{code="UNKNOWN_LOCATION"}') == 1

    # The held receipt was acked: the item's creation releases it, in its own outcome.
    fix = envelopes(ItemCreated(item=item("RAW-NEW", ItemType.RAW, "1.00")))
    rabbit.publish([fix])
    [created] = rabbit.wait_outcomes([fix.message_id])[fix.message_id]
    assert [(r["message_id"], r["status"]) for r in created["released"]] == [
        (waiting.message_id, "POSTED")
    ]

    # Stop the consumer (SIGTERM: a clean exit), add the location, and replay the core's dead
    # letters: the receipt posts, the unreadable payload cannot.
    assert consumer.stop() == 0
    fixed = settings(locations=(*LOCATIONS, Location(id="NOWHERE", plant="P1")))
    core = Core(fixed, open_store(db_url), SystemClock())
    try:
        replayed = core.replay()
        assert sorted((o.message_id or "", o.status.value) for o in replayed) == [
            ("", "REJECTED"),
            (nowhere.message_id, "POSTED"),
        ]
        assert [d.code.value for d in core.dead_letters(DeadLetterFilter())] == [
            "MALFORMED_PAYLOAD"
        ]
    finally:
        core.close()


def test_only_an_authenticated_source_gets_through(rabbit, consumers, tmp_path):
    """A user whose key is another source's is refused by the core (and kept in its dead
    letters); a publisher with no key, or no user_id, by the consumer before the core."""
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    consumers(db_url)
    envelopes = Envelopes()
    rabbit.publish([*master_data(envelopes), release(envelopes)], key=SETUP_KEY)
    posing = confirm(envelopes, seq=1)  # an MES message published by the WMS's user
    keyless = confirm(envelopes, seq=1, work_order="WO-1", message_id="keyless")
    anonymous = confirm(envelopes, seq=1, work_order="WO-1", message_id="anonymous")
    rabbit.publish([posing], user=user("WMS"))
    rabbit.publish_raw("guest", [(keyless.model_dump_json().encode(), "WO-1", "keyless")])
    rabbit.publish_raw(
        "guest", [(anonymous.model_dump_json().encode(), "WO-1", "anonymous")], user_id=None
    )

    by_code = dead_by_code(rabbit, 3)
    assert list(by_code) == ["UNAUTHORISED_SOURCE"]
    letters = {letter.message_id: letter for letter in by_code["UNAUTHORISED_SOURCE"]}
    assert sorted(letters) == sorted([posing.message_id, "keyless", "anonymous"])
    assert letters[posing.message_id].headers[HEADER_REASON] == "rejected"
    assert letters[posing.message_id].headers[HEADER_SOURCE] == "WMS"
    for refused in ("keyless", "anonymous"):
        assert letters[refused].headers[HEADER_REASON] == "unauthorised"
        assert HEADER_DEAD_LETTER_ID not in letters[refused].headers
    core = Core(settings(), open_store(db_url), SystemClock())
    try:
        kept = core.dead_letters(DeadLetterFilter())
        assert [(d.message_id, d.code.value) for d in kept] == [
            (posing.message_id, "UNAUTHORISED_SOURCE")
        ], "only the authenticated rejection is kept by the core, as over HTTP"
        assert core.work_order_status("WO-1")["good_by_operation"] == {}
    finally:
        core.close()
