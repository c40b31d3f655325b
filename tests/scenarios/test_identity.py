"""The harness never hands the core the physical-event identity (docs/architecture.md, Faults and
Measures): the core sees envelopes only, and it finds duplicates by message id and idempotency
key (and the stream sequence) alone. The harness joins envelopes to physical events through its
own trace."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from integration import Envelope, Status
from tests.scenarios import harness

DOCUMENTED_FIELDS = {
    "message_id",
    "idempotency_key",
    "correlation_id",
    "source_system",
    "stream",
    "source_seq",
    "occurred_at",
    "sent_at",
    "schema_version",
    "message",
}

# Every way one physical event reaches the core more than once: network duplicates, crashes
# after commit, losses, sync timeouts with same-id and new-id retries, renumbered resends.
FAULTS = (
    "integration.pattern=sync",
    "integration.consumers=2",
    "integration.timeout=1s",
    "integration.service_time={kind: exponential, mean: 500ms}",
    "faults.new_id_retry_share=0.5",
    "faults.duplicate_rate=0.1",
    "faults.crash_after_commit_rate=0.05",
    "faults.loss_rate=0.05",
    "faults.renumbered_resend_rate=0.05",
    # A round trip well under the timeout: with one above it every call times out and the
    # MES retries for the whole heal phase (tens of thousands of messages).
    "faults.network_delay={kind: lognormal, mean: 100ms, sd: 200ms}",
)


@pytest.fixture(scope="module")
def recorded():
    return harness.recorded(FAULTS)


def test_the_envelope_has_exactly_the_documented_fields():
    assert set(Envelope.model_fields) == DOCUMENTED_FIELDS
    assert Envelope.model_config.get("extra") == "forbid"  # nothing can ride along


def test_the_target_sees_every_message_and_only_envelopes(recorded):
    run, target, trace = recorded
    assert target.submitted
    assert all(type(env) is Envelope for _at, env, _o in target.submitted)
    statuses = defaultdict(int)
    for _at, _env, outcome in target.submitted:
        statuses[outcome.status.value] += 1
    assert statuses["DUPLICATE"] == run.summary["outcomes"]["DUPLICATE"] > 0
    known = trace.event_of()
    assert all(env.message_id in known for _at, env, _o in target.submitted)


def test_every_duplicate_shares_a_message_id_or_key_with_an_earlier_submission(recorded):
    _run, target, _trace = recorded
    ids, keys = set(), set()
    duplicates = 0
    for _at, env, outcome in target.submitted:
        if outcome.status is Status.DUPLICATE:
            duplicates += 1
            assert env.message_id in ids or env.idempotency_key in keys, env.message_id
        ids.add(env.message_id)
        keys.add(env.idempotency_key)
    assert duplicates > 0


def test_new_id_retries_are_caught_by_the_key_alone(recorded):
    """A retry under a new message id is a DUPLICATE although its id was never seen."""
    _run, target, _trace = recorded
    ids = set()
    by_key_only = 0
    for _at, env, outcome in target.submitted:
        if outcome.status is Status.DUPLICATE and env.message_id not in ids:
            by_key_only += 1
        ids.add(env.message_id)
    assert by_key_only > 0


def test_stream_duplicates_are_caught_by_the_stream_sequence_alone(recorded):
    """A renumbered resend (new id, new key) is refused as SEQUENCE_STALE: its stream
    position was taken by an earlier submission."""
    _run, target, _trace = recorded
    positions, stale = set(), 0
    for _at, env, outcome in target.submitted:
        if outcome.code is not None and outcome.code.value == "SEQUENCE_STALE":
            stale += 1
            assert (env.stream, env.source_seq) in positions
        if env.stream is not None:
            positions.add((env.stream, env.source_seq))
    assert stale > 0


def _differences(a: Envelope, b: Envelope) -> set[str]:
    return {name for name in DOCUMENTED_FIELDS if getattr(a, name) != getattr(b, name)}


def test_copies_of_one_event_differ_only_in_their_ids(recorded):
    """What the core is given about one physical event: identical copies, or copies that
    differ in the message id (a new-id retry), or in the message id and key (a renumbered
    resend, same stream position). Never in content or anything else."""
    _run, target, trace = recorded
    event_of = trace.event_of()
    copies: dict[int, list[Envelope]] = defaultdict(list)
    for _at, env, _o in target.submitted:
        copies[event_of[env.message_id]].append(env)
    seen = {"identical": 0, "new id": 0, "renumbered": 0}
    for envelopes in copies.values():
        first = envelopes[0]
        for other in envelopes[1:]:
            differs = _differences(first, other)
            if not differs:
                seen["identical"] += 1
            elif differs == {"message_id"}:
                seen["new id"] += 1
            else:
                assert differs == {"message_id", "idempotency_key"}, differs
                assert other.idempotency_key != first.idempotency_key
                seen["renumbered"] += 1
    assert all(seen.values()), seen


def test_different_events_never_share_an_idempotency_key(recorded):
    _run, target, trace = recorded
    event_of = trace.event_of()
    owner: dict[str, int] = {}
    for _at, env, _o in target.submitted:
        event = event_of[env.message_id]
        assert owner.setdefault(env.idempotency_key, event) == event, env.idempotency_key


def test_no_envelope_carries_the_physical_event_id(recorded):
    """Ids and keys come from the source systems' own counters: the truth's event numbers
    show up in them no more often than by coincidence."""
    _run, target, trace = recorded
    event_of = trace.event_of()
    carrying = 0
    for _at, env, _o in target.submitted:
        event = str(event_of[env.message_id])
        tokens = set(
            re.findall(r"\d+", f"{env.message_id} {env.idempotency_key} {env.correlation_id}")
        )
        carrying += event in tokens
    assert carrying <= len(target.submitted) * 0.05, (carrying, len(target.submitted))
