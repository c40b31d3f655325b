"""The filter of the inbox's identities: never "absent" for what was added, rarely "maybe" for
what was not, and believed only while the data versions say no other writer came between."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from integration.store.base import Identity
from integration.store.identity_filter import _FIRST_STREAK, IdentityFilter, KnownIdentities

texts = st.text(min_size=1, max_size=12)
identities = st.builds(Identity, texts, texts, texts, texts)


def numbered(n: int, tag: str = "") -> Identity:
    return Identity("MES", f"M-{tag}{n}", "GoodsReceived", f"K-{tag}{n}")


def absent(known: IdentityFilter, count: int) -> int:
    """How many of `count` identities never added the filter answers "maybe" for (each is
    added by asking: the filter's one question is "add; was it there?")."""
    return sum(known.add(numbered(n, "absent-")) for n in range(count))


@given(st.lists(identities, max_size=60), identities)
def test_what_was_added_is_never_ruled_out(added, other):
    known = IdentityFilter(capacity=16)
    for identity in added:
        known.add(identity)
    assert all(known.add(identity) for identity in added)
    known.add(other)
    assert known.add(other)


def test_a_shared_id_or_a_shared_key_alone_is_enough_to_ask():
    known = IdentityFilter(capacity=16)
    assert not known.add(Identity("MES", "M-1", "GoodsReceived", "K-1"))
    assert known.add(Identity("MES", "M-1", "GoodsReceived", "another key"))
    assert known.add(Identity("WMS", "another id", "GoodsReceived", "K-1"))
    assert not known.add(Identity("WMS", "M-1", "GoodsReceived", "K-2"))  # an id per source
    assert not known.add(Identity("MES", "M-2", "ScrapDeclared", "K-1"))  # a key per type


def test_about_one_absent_identity_in_a_few_hundred_is_a_maybe():
    known = IdentityFilter(capacity=1 << 15)
    for n in range(1 << 15):  # full
        known.add(numbered(n))
    maybes = absent(known, 20_000)
    assert maybes < 20_000 * 0.004
    assert maybes > 0  # a Bloom filter, not a set: the answer is "maybe", and sometimes wrong


def test_a_full_filter_grows_a_stage_twice_as_large_and_keeps_every_answer():
    known = IdentityFilter(capacity=1 << 15)
    added = [numbered(n) for n in range(3 * (1 << 15) + 1)]
    for identity in added:
        known.add(identity)
    assert known.stages == 3  # room for 1, then 2, then 4 times the first
    assert all(known.add(identity) for identity in added[::97])  # in every stage
    assert absent(known, 10_000) < 10_000 * 0.006


def alone(known: KnownIdentities, first: int, commits: int) -> int:
    """`commits` of this writer's own in a row from data version `first`: the next version."""
    for version in range(first, first + commits):
        known.committed(version)
    return first + commits


def loaded(version: int) -> KnownIdentities:
    """A filter loaded as of `version`, after the streak of own commits that made it wanted."""
    known = KnownIdentities()
    following = alone(known, version - _FIRST_STREAK, _FIRST_STREAK + 1)
    assert known.wanted and following == version + 1
    known.load([numbered(1)], count=1)
    return known


def test_nothing_is_ruled_out_before_a_load():
    known = KnownIdentities()
    assert not known.wanted  # no commit of this writer's seen yet
    assert known.note(numbered(1)) and not known.vouches_at(1)


def test_the_filter_is_wanted_after_a_streak_of_own_commits():
    known = KnownIdentities()
    following = alone(known, 10, _FIRST_STREAK)
    assert not known.wanted  # the first commit follows nothing known
    alone(known, following, 1)
    assert known.wanted


def test_writers_that_take_turns_never_want_the_filter():
    known = KnownIdentities()
    for version in range(1, 200, 2):  # every other commit is another writer's
        assert not known.vouches_at(version)
        known.committed(version)
        assert not known.wanted


def test_a_loaded_filter_vouches_for_the_next_version_and_follows_its_own_commits():
    known = loaded(version=4)
    assert known.note(numbered(1)) and not known.note(numbered(2))
    assert known.vouches_at(5)
    known.committed(5)
    assert known.vouches_at(6) and known.note(numbered(2))


def test_another_writers_commit_drops_the_filter_until_a_streak_twice_as_long():
    known = loaded(version=4)
    assert not known.vouches_at(7)  # versions 5 and 6 were not this writer's
    assert not known.wanted and known.note(numbered(2))  # nothing is ruled out any more
    known.committed(7)
    following = alone(known, 8, 2 * _FIRST_STREAK - 1)
    assert not known.wanted
    alone(known, following, 1)
    assert known.wanted


def test_a_commit_the_filter_did_not_follow_drops_it():
    """A lost answer to this writer's own COMMIT looks the same: the next commit it sees is
    not the one after its last."""
    known = loaded(version=4)
    known.committed(6)  # 5 was someone else's, or this writer's whose answer it lost
    assert not known.vouches_at(7) and not known.wanted
