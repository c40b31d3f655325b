"""The names a summary is made of, shared by the measures that count them and the assertions
that read them: the edge cases, the parts of a latency and its percentiles."""

__all__ = ["EDGE_CASES", "PARTS", "PERCENTILES"]

PARTS = ("report", "transport", "queue", "hold")
# Every edge case the twin counts, always in `coverage` (0 when it never happened), so a
# scenario shows what it never exercised and a misspelt `coverage.x` assertion fails.
EDGE_CASES = (
    "backflush_shortage",
    "breakdown",
    "buffer_full",
    "byproduct",
    "crash",
    "duplicate_delivered",
    "eco_open_order",
    "late_posting",
    "loss",
    "lot_substitution",
    "material_shortage",
    "missing_lot",
    "outage",
    "parked",
    "partial_completion",
    "period_close",
    "plant_overlay",
    "rate_limited",
    "renumbered_resend",
    "reorder",
    "retry",
    "scrap",
    "shift_change_burst",
    "stale_revision",
    "subcontract_receipt",
    "subcontract_skipped",
    "target_unavailable",
    "timeout",
)
PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99_9": 99.9}
