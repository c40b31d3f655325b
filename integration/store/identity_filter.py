"""What one writer knows of the inbox's identities, so that a batch need not ask the database.

A PostgreSQL batch used to look up every message it expected (its id in its source, its key in
its type) as it opened: about 0.4 ms of the server's time per group of 8, most of it parsing
and planning, for an answer that is almost always "none of them"; and a message it was not told
of (`Core.transaction()`) cost a look-up of its own, a round trip each. `IdentityFilter` is a Bloom
filter of every identity in the inbox: when it says "absent", the identity is absent; when it
says "maybe", the database is asked as before. `KnownIdentities` says when the filter can be
believed: it covers exactly the commits up to one data version, all of them this writer's
own, and a batch that opens at the next version (the data version counts commits) knows that
no other writer came between. The filter is loaded once a writer has seen a few of its own
commits in a row, and dropped when another writer's shows: several writers on one database
look up as before, without the cost of loading a filter each (about 7 µs an identity).

A wrong "absent" cannot post a message twice: the inbox's unique indexes refuse the row and
the batch rolls back (the service then submits its messages again one by one, and the
duplicate is answered as one). Pure: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from hashlib import blake2b

from integration.store.base import Identity

__all__ = ["IdentityFilter", "KnownIdentities"]

# Each key sets `_PROBES` of `_BITS_PER_KEY` bits: about 1 in 600 absent keys is a "maybe". The
# optimum for those bits (17 probes, 1 in 100,000) would cost the core's thread several times
# as long per message, for a look-up saved once in a few hundred batches.
_BITS_PER_KEY = 24
_PROBES = 3
_PLACES = struct.Struct(f"<{_PROBES}I").unpack  # a key's places: 32 bits each of its digest
_DIGEST_BYTES = _PROBES * 4  # so a stage holds at most 2**32 bits
_LEAST_CAPACITY = 1 << 15  # identities
# A writer's own commits in a row, with no other writer's between, before its filter is worth
# loading: writers that take turns see each other's within a few.
_FIRST_STREAK = 4


class IdentityFilter:
    """A Bloom filter of identities, each as two keys: its message id in its source, its
    idempotency key in its type (either one taken means a clash).

    It starts with room for `capacity` identities and, once that is full, adds a filter of
    twice the room each time (a scalable Bloom filter): it never needs the identities again,
    and an absent identity is a "maybe" about three times in 1,000 for every filter it holds.
    """

    def __init__(self, capacity: int) -> None:
        self._stages: list[_Stage] = [_Stage(max(capacity, _LEAST_CAPACITY))]

    def add(self, identity: Identity) -> bool:
        """Add `identity`; whether it may have been added before: False when neither of its
        keys was, True otherwise (and for about three identities in 1,000 that were not)."""
        keys = _keys(identity)
        stages = self._stages
        if stages[-1].added >= stages[-1].capacity:
            stages.append(_Stage(2 * stages[-1].capacity))
        if stages[-1].add(keys):
            return True
        return len(stages) > 1 and any(earlier.holds(keys) for earlier in stages[:-1])

    @property
    def stages(self) -> int:
        return len(self._stages)


class _Stage:
    """One Bloom filter of a fixed size: room for `capacity` identities (two keys each), in
    a power of two bits, so that a place is a key's place under a mask."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.added = 0
        size = 1 << (capacity * 2 * _BITS_PER_KEY - 1).bit_length()
        self._mask = size - 1
        self._bits = bytearray(size >> 3)

    def add(self, keys: _Keys) -> bool:
        """Set both keys' bits; whether either key's were all set already."""
        bits, mask, held = self._bits, self._mask, False
        for places in keys:
            was_set = True
            for place in places:
                place &= mask
                byte, bit = place >> 3, 1 << (place & 7)
                if not bits[byte] & bit:
                    was_set = False
                    bits[byte] |= bit
            held = held or was_set
        self.added += 1
        return held

    def holds(self, keys: _Keys) -> bool:
        """Whether either key's bits are all set."""
        bits, mask = self._bits, self._mask
        return any(
            all(bits[(place & mask) >> 3] & (1 << (place & 7)) for place in places)
            for places in keys
        )


_Keys = tuple[tuple[int, ...], tuple[int, ...]]


def _keys(identity: Identity) -> _Keys:
    """The identity's two keys as their places (before a stage's mask): hashed the same on
    every run and in every process (a Python `hash` would change which absent identities
    are looked up from one run to the next). A key's parts are joined by "\\x1f", which
    validated text cannot hold; were it to, a collision would only answer "maybe"."""
    source, message_id, message_type, key = identity
    return _places(f"id\x1f{source}\x1f{message_id}"), _places(f"key\x1f{message_type}\x1f{key}")


def _places(key: str) -> tuple[int, ...]:
    return _PLACES(blake2b(key.encode(), digest_size=_DIGEST_BYTES).digest())


class KnownIdentities:
    """The filter of one writer's inbox, the data version it is current at, and when it is
    worth loading.

    Say `committed(version)` after each of this writer's commits, and `vouches_at(version)`
    as each batch opens (at `version`, after its own bump): whether the filter may be believed
    in that batch. `wanted` says when to `load` it with every identity in the inbox: once this
    writer has committed `_FIRST_STREAK` times in a row with no other writer's commit between.
    Then `note` every identity this writer may insert before it does (the answer says whether
    the inbox may already hold it). An identity noted and then not inserted only makes its own
    later answer a "maybe".

    A commit of another writer's drops the filter, and it is loaded again only after a streak
    twice as long as the one before. Writers that take turns on one database (scaled-out
    consumers) never load it, and a writer that lost the answer to its own COMMIT, which looks
    the same, gets it back.
    """

    def __init__(self) -> None:
        self._filter: IdentityFilter | None = None
        self._version: int | None = None  # this writer's last commit
        self._alone = 0  # this writer's commits in a row with no other writer's between
        self._streak = _FIRST_STREAK  # how many make the filter worth loading

    @property
    def wanted(self) -> bool:
        """Whether to load the filter now: none is loaded, and this writer has been alone for
        long enough."""
        return self._filter is None and self._alone >= self._streak

    def load(self, identities: Iterable[Identity], count: int) -> None:
        """The filter of the `count` `identities` the inbox holds as of this writer's last
        commit (room for as many again before it grows): read while `wanted`, under the
        lock of a batch that `vouches_at` found no other writer's commit before."""
        fresh = IdentityFilter(2 * count)
        for identity in identities:
            fresh.add(identity)
        self._filter = fresh

    def vouches_at(self, version: int) -> bool:
        """Whether the filter covers every commit before `version` (the data version a
        transaction reads after its own bump): all commits up to `version - 1` were known to
        it. Otherwise another writer committed meanwhile, and the filter is dropped."""
        if not self._follows(version):
            self._interrupted()
            return False
        return self._filter is not None

    def note(self, identity: Identity) -> bool:
        """Add `identity`; whether the inbox may already hold it (True without a filter)."""
        return self._filter is None or self._filter.add(identity)

    def committed(self, version: int) -> None:
        """This writer committed at data `version`: the filter covers it if it covered the
        commit before; otherwise another writer's came between, and the filter is dropped."""
        if self._follows(version):
            self._alone += 1
        else:
            self._interrupted()
        self._version = version

    def _follows(self, version: int) -> bool:
        return self._version == version - 1  # never, before this writer's first commit

    def _interrupted(self) -> None:
        if self._filter is not None:
            self._filter = None
            self._streak *= 2
        self._alone = 0
