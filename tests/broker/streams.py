"""Message streams for the broker tests, from the shared builders: a shop floor's setup, then
sequenced MES confirmations of many work orders, interleaved across work orders."""

from __future__ import annotations

import random
from datetime import timedelta

from integration import Envelope
from tests.builders import START, Envelopes, confirm, master_data, receipt, release

SETUP_KEY = "setup"  # one routing key for the setup: one queue, so it arrives in order


def work_order(n: int) -> str:
    return f"WO-{n:03d}"


def setup(envelopes: Envelopes, work_orders: int) -> list[Envelope]:
    """Master data, stock on the line, and the release of each work order (for 100)."""
    return [
        *master_data(envelopes),
        envelopes(receipt("1000", location="LINE")),
        envelopes(receipt("1000", item="RAW-L", lot="L1", location="LINE")),
        *(release(envelopes, work_order(n), qty="100") for n in range(1, work_orders + 1)),
    ]


def applied_seqs(ledger) -> dict[str, list[int]]:
    """Each stream's POSTED source sequence numbers in the order the ledger applied them."""
    applied: dict[str, list[int]] = {}
    for stream_name, seq in ledger.rows(
        "SELECT stream, source_seq FROM inbox WHERE stream IS NOT NULL AND status = 'POSTED'"
        " ORDER BY inbox_id"
    ):
        applied.setdefault(stream_name, []).append(seq)
    return applied


def confirmations(
    envelopes: Envelopes, work_orders: int, per_order: int, first_seq: int = 1, seed: int = 0
) -> list[Envelope]:
    """`per_order` confirmations of one part on each work order's MES stream, from
    `first_seq` on, interleaved across work orders at random (seeded) while each stream keeps
    its own order."""
    pending = {n: [first_seq + k for k in range(per_order)] for n in range(1, work_orders + 1)}
    draw = random.Random(seed)
    stream: list[Envelope] = []
    while pending:
        n = draw.choice(sorted(pending))
        seq = pending[n].pop(0)
        if not pending[n]:
            del pending[n]
        at = START + timedelta(minutes=len(stream) + 1)
        stream.append(confirm(envelopes, seq=seq, work_order=work_order(n), occurred_at=at))
    return stream
