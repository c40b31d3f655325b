"""Scale-out with order: two `twin consume` members (`--members 2`) share the four queues. Each
subscribes at once to its own share (queue index % 2 == its number) and, after the standby
delay, to the other's, so each is the active consumer of its own share and stands by for the
rest. Killing one (SIGKILL, mid-stream) hands its queues to the other: every message posted
exactly once, each stream applied in source order, no hold for a gap the broker made.

Which member served a queue is read from its `mfg_twin_broker_queue_deliveries_total{queue}`.
"""

from __future__ import annotations

from tests.broker.streams import SETUP_KEY, applied_seqs, confirmations, setup
from tests.broker.test_exactly_once import ids, wait_until
from tests.builders import Envelopes
from tests.integration.test_service_crash import LedgerSql, Reference

WORK_ORDERS = 40  # streams enough that every queue gets some
# Each member subscribes to its own share at once and to the other's only this long after:
# longer than the two members' start-ups may differ on a loaded machine, or the first one up
# becomes the active consumer of the other's share as well.
STANDBY_DELAY_S = 4.0


def deliveries(consumer, queue: str) -> float:
    return consumer.metric(f'mfg_twin_broker_queue_deliveries_total{{queue="{queue}"}}')


def test_two_members_share_the_queues_in_order_and_take_over_from_each_other(
    rabbit, consumers, tmp_path
):
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    queues = rabbit.topology.inbound_queues
    share = {0: queues[0::2], 1: queues[1::2]}
    envelopes = Envelopes()
    ready = setup(envelopes, WORK_ORDERS)
    first = confirmations(envelopes, WORK_ORDERS, 3, seed=7)
    second = confirmations(envelopes, WORK_ORDERS, 3, first_seq=4, seed=8)
    third = confirmations(envelopes, WORK_ORDERS, 3, first_seq=7, seed=9)
    members = [
        consumers(db_url, "--members", "2", "--member", str(number),
                  "--standby-delay", str(STANDBY_DELAY_S), wait=False)
        for number in (0, 1)
    ]  # fmt: skip
    for member in members:
        member.wait_logged("standing by for 2 queues")
    rabbit.publish(ready, key=SETUP_KEY)
    # The setup's queue is one member's, the confirmations are both's: published at once,
    # a confirmation can reach the core before its work order's release and be held.
    rabbit.wait_outcomes(ids(ready))
    rabbit.publish(first)
    rabbit.wait_outcomes(ids(first))

    for number, member in enumerate(members):
        served = {queue for queue in queues if deliveries(member, queue)}
        assert served == set(share[number]), f"member {number} served {served}"

    # SIGKILL member 0 while the second batch is consumed: its queues (and whatever it held
    # unacked) go to member 1, already subscribed to them as standby.
    ledger = LedgerSql(db_url)
    rabbit.publish(second)
    wait_until(lambda: set(ids(second)) & ledger.posted(), what="the second batch consumed")
    before = {queue: deliveries(members[1], queue) for queue in share[0]}
    members[0].kill()
    rabbit.publish(third)
    rabbit.wait_outcomes(ids(second + third), statuses=("POSTED", "DUPLICATE"))
    taken = {queue for queue in share[0] if deliveries(members[1], queue) > before[queue]}
    assert taken == set(share[0]), "member 1 took member 0's queues over"

    everything = ready + first + second + third
    ledger.assert_exactly_once(everything, Reference(everything))
    assert {o["status"] for o in rabbit.outcomes} <= {"POSTED", "DUPLICATE"}, "no HELD"
    applied = applied_seqs(ledger)
    assert len(applied) == WORK_ORDERS
    assert all(seqs == list(range(1, 10)) for seqs in applied.values()), applied
