"""The names a summary is made of, shared by the measures that count them and the assertions
that read them: the edge cases, the parts of a latency and its percentiles."""

__all__ = ["EDGE_CASES", "ERROR_CLASSES", "PARTS", "PERCENTILES", "error_class"]

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
    "quality_hold",
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

# What an operator does about a failure depends on its class (sim/model/operators.py); a code
# not listed here is of class `flow`.
ERROR_CLASSES = {
    "master_data": (
        "UNKNOWN_ITEM",
        "UNKNOWN_LOCATION",
        "UOM_NO_CONVERSION",
        "PLANT_NOT_APPLICABLE",
        "REVISION_UNKNOWN",
        "REVISION_NOT_RELEASED",
        "REVISION_NOT_EFFECTIVE",
        "REVISION_MISMATCH",
        "COMPONENT_NOT_ON_BOM",
        "LOT_REQUIRED",
    ),
    "stock": ("BACKFLUSH_SHORTAGE",),
    "quality": ("LOT_ON_HOLD",),
    "flow": (),
}
_CLASS_OF = {code: name for name, codes in ERROR_CLASSES.items() for code in codes}


def error_class(code: str) -> str:
    """The class of an error code: master_data, stock, quality or flow."""
    return _CLASS_OF.get(code, "flow")
