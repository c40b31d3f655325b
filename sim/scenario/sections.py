"""The sections of a scenario file, written in the types of `sim.scenario.values`; rates are
probabilities per opportunity unless the name says otherwise. `sim.scenario.document.Scenario`
puts the sections together.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, WithJsonSchema, model_validator

from integration import NegativeStockPolicy, OpenOrderPolicy, Plant
from sim.scenario.values import Distribution, Duration, Rate, Spec

__all__ = [
    "Calendar",
    "WorkCentreSpec",
    "PlantSpec",
    "Products",
    "Demand",
    "Reporting",
    "Mes",
    "EdgeCases",
    "System",
    "Outage",
    "Faults",
    "Pattern",
    "Integration",
    "Store",
    "Measures",
    "DEFAULT_METRICS",
    "Sweep",
]

class Calendar(Spec):
    shifts_per_day: int = Field(3, ge=1, le=4)
    """shifts a working day has, the first from 06:00"""
    shift_hours: float = Field(8, gt=0, le=24)
    """length of a shift, in hours"""
    working_days: tuple[Annotated[int, Field(ge=0, le=6)], ...] = Field(
        (0, 1, 2, 3, 4, 5, 6), min_length=1, description="0 = Monday"
    )

    @model_validator(mode="after")
    def _fits_a_day(self) -> Calendar:
        if self.shifts_per_day * self.shift_hours > 24:
            raise ValueError("shifts_per_day x shift_hours is more than a day")
        return self


class WorkCentreSpec(Spec):
    id: str = Field(pattern=r"^[A-Z0-9_-]{1,24}$")
    """work centre id"""
    capacity: int = Field(1, ge=1)
    """operations it runs at once"""
    mtbf: Duration | None = Field(None, description="mean time between failures; none = never")
    mttr: Duration = timedelta(hours=1)
    """mean time to repair"""


def _plant_zone(name: str) -> str:
    """A time zone the core accepts for a plant (`integration.Plant` knows which)."""
    try:
        Plant(id="ZONE", currency="EUR", timezone=name)
    except ValidationError:
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


class PlantSpec(Spec):
    id: str = Field(pattern=r"^[A-Z0-9_-]{1,16}$")
    """plant id"""
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    """ISO 4217 currency of its books"""
    timezone: Annotated[str, AfterValidator(_plant_zone)] = "UTC"
    """IANA time zone (its months are the plant's accounting periods)"""
    work_centres: tuple[WorkCentreSpec, ...] = Field(min_length=1)
    clock_skew: Duration = Field(
        timedelta(0), description="how far this plant's MES clock is ahead"
    )


class Products(Spec):
    count: int = Field(4, ge=1, le=200)
    """finished products in the catalogue"""
    components: int = Field(5, ge=1, le=12, description="BOM lines per product")
    operations: int = Field(3, ge=1, le=6)
    """routing operations per product (each a backflush point)"""
    alternates_share: Rate = Field(
        0.3, description="share of products with a lot-controlled line that has an alternate"
    )
    overlay_share: Rate = Field(0.5, description="share of products with a plant overlay")
    subcontracted: int = Field(
        1, ge=0, description="subassemblies made by a subcontractor, per plant"
    )
    run_time_per_unit: Duration = timedelta(minutes=2)
    """machine time per unit per operation"""
    setup_time: Duration = timedelta(minutes=15)
    """set-up before each operation"""


class Demand(Spec):
    orders_per_day: float = Field(24, gt=0, description="work orders released per plant per day")
    lot_size_min: int = Field(10, ge=1)
    """smallest work order quantity"""
    lot_size_max: int = Field(50, ge=1)
    """largest work order quantity"""
    close_delay: Duration = Field(
        timedelta(hours=24), description="ERP closes orders this long after the last receipt"
    )


class Reporting(StrEnum):
    IMMEDIATE = "immediate"
    BATCHED = "batched"


class Mes(Spec):
    reporting: Reporting = Reporting.IMMEDIATE
    """immediate: as it happens; batched: a share held back until the shift change"""
    batched_share: Rate = Field(
        0.7, description="share of confirmations held back until the shift change when batched"
    )
    report_delay: Distribution = Distribution(kind="exponential", mean=timedelta(seconds=20))
    """from event to message for MES and ERP reports"""
    burst_spread: Duration = Field(
        timedelta(minutes=10), description="the shift-change burst is reported over this window"
    )


class EdgeCases(Spec):
    partial_completion_rate: Rate = Field(
        0.3, description="an operation is confirmed in several parts"
    )
    max_parts: int = Field(3, ge=2)
    """most confirmations one operation is split into"""
    scrap_rate: Rate = Field(0.1, description="a confirmation reports scrap")
    byproduct_rate: Rate = 0.05
    """a confirmation also reports swarf (a by-product)"""
    ecos_per_week: float = Field(1, ge=0)
    """engineering changes released, network-wide"""
    eco_adoption_lag: Duration = Field(
        timedelta(hours=4), description="MES keeps reporting the old revision this long"
    )
    supplier_miss_rate: Rate = Field(
        0.0, description="a part's top-up does not come this cycle (the floor substitutes or waits)"
    )
    receipt_posting_delay: Distribution = Field(
        Distribution(kind="exponential", mean=timedelta(seconds=20)),
        description="the WMS posts a receipt this long after the parts arrived; the floor may "
        "backflush them first (a book shortage)",
    )
    missing_lot_rate: Rate = Field(
        0.01, description="a backflush of a lot-controlled part names no lot"
    )
    quality_hold_rate: Rate = Field(
        0.0,
        description="a received lot is put on quality hold (QC sends QualityHold from the "
        "MES); the floor, not told in time, still draws on it and the core refuses those "
        "backflushes (LOT_ON_HOLD) until the lot is released",
    )
    supplier_interval: Duration = Field(
        timedelta(hours=12), description="replenishment cycle per plant"
    )
    cover_days: float = Field(
        3, gt=0, description="stock a replenishment aims to hold, in days of demand"
    )
    subcontract_interval: Duration = timedelta(days=1)
    """subcontracting cycle per plant"""
    period_close: bool = True
    """FINANCE closes each month that ends within the horizon"""
    close_lag: Duration = Field(
        timedelta(hours=2),
        description="FINANCE closes each plant's month this long after its local midnight",
    )
    eco_open_order_policy: OpenOrderPolicy = Field(
        OpenOrderPolicy.KEEP,
        description="keep: open orders finish on their revision; switch_at_next_operation: "
        "they take the new one from their next operation",
    )


class System(StrEnum):
    """What an outage takes down: a source system, the ERP, or the pipes between them."""

    ERP = "ERP"
    MES = "MES"
    WMS = "WMS"
    PLM = "PLM"
    FINANCE = "FINANCE"
    MIDDLEWARE = "middleware"


PLANT_SYSTEMS = (System.MES, System.WMS)  # the systems that run per plant


class Outage(Spec):
    """A window in which one system is down (README, Faults in the pipes). Without `system`,
    the ERP endpoint answers 503 while the ERP keeps sending its own messages."""

    at: Duration
    """when the system goes down, from the start"""
    duration: Duration
    """how long it stays down"""
    system: System | None = Field(
        None,
        description="ERP, MES, WMS, PLM, FINANCE or middleware; none = the ERP endpoint only",
    )
    plant: str | None = Field(
        None, pattern=r"^[A-Z0-9_-]{1,16}$", description="MES or WMS: only this plant's"
    )

    @model_validator(mode="after")
    def _plant_system(self) -> Outage:
        if self.plant is not None and self.system not in PLANT_SYSTEMS:
            raise ValueError(
                f"plant {self.plant} given for system {self.system}; only MES and WMS "
                "outages name a plant"
            )
        return self


# copies of a duplicated message (2 or more) -> a positive relative weight, in copies order
CopiesWeights = Annotated[
    dict[Annotated[int, Field(ge=2)], Annotated[float, Field(gt=0, allow_inf_nan=False)]],
    Field(min_length=1),
    AfterValidator(lambda weights: dict(sorted(weights.items()))),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": r"^([2-9]|[1-9][0-9]+)$"},
            "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
            "minProperties": 1,
        }
    ),
]


class Faults(Spec):
    network_delay: Distribution = Distribution(kind="exponential", mean=timedelta(milliseconds=50))
    """transit time of each copy; its spread reorders messages"""
    duplicate_rate: Rate = 0.0
    """the network delivers the message more than once"""
    duplicate_copies: CopiesWeights = Field(
        {2: 1.0},
        description="copies a duplicated message gets -> relative weight, e.g. "
        "{2: 0.7, 3: 0.2, 5: 0.1}",
    )
    reorder_rate: Rate = Field(
        0.0,
        description="a message of a stream (a work order's, an item's) is held back until the "
        "next one of its stream has gone: the stream arrives out of order",
    )
    reorder_hold: Duration = Field(
        timedelta(hours=1),
        description="the longest a held-back message waits for the next one of its stream",
    )
    loss_rate: Rate = 0.0
    """a copy is lost and redelivered after `redelivery_after`"""
    redelivery_after: Duration = timedelta(seconds=30)
    """when a lost or unacknowledged message comes again"""
    crash_before_commit_rate: Rate = 0.0
    """a consumer dies before the core commits (redelivered)"""
    crash_after_commit_rate: Rate = 0.0
    """a consumer dies after the commit, before the ack (redelivered: a duplicate)"""
    renumbered_resend_rate: Rate = Field(
        0.0, description="the MES outbox resends a work-order message under a new id and key"
    )
    new_id_retry_share: Rate = Field(
        0.5, description="MES retries sending a new message id, same idempotency key"
    )
    outages: tuple[Outage, ...] = ()
    """windows in which a system (default: the ERP endpoint) is down"""


class Pattern(StrEnum):
    QUEUE = "queue"
    SYNC = "sync"


class Integration(Spec):
    pattern: Pattern = Pattern.QUEUE
    """queue: a broker with consumers; sync: the MES calls the ERP and waits"""
    consumers: int = Field(4, ge=1)
    """queue consumers, or ERP server slots for sync"""
    service_time: Distribution = Distribution(kind="exponential", mean=timedelta(milliseconds=20))
    """ERP time per call"""
    buffer: int = Field(
        100_000, ge=1, description="queue capacity; a full queue refuses and the sender retries"
    )
    rate_limit: float | None = Field(
        None, gt=0, description="ERP calls per second; above it 429 with retry-after"
    )
    timeout: Duration = Field(
        timedelta(seconds=2), description="sync: how long the MES waits for an answer"
    )
    max_attempts: int = Field(5, ge=1)
    """sync: calls before the MES parks a message until the heal phase"""
    backoff: Duration = timedelta(seconds=5)
    """wait before a retry without retry-after"""
    hold_timeout: Duration = timedelta(hours=1)
    """the core dead-letters a message held longer (sequence gap, dependency)"""
    idempotency: bool = Field(True, description="false only for negative-control experiments")
    sequencing: bool = Field(True, description="false only for negative-control experiments")
    negative_stock: NegativeStockPolicy = NegativeStockPolicy.ALLOW
    """allow: post with a stock exception; block: dead-letter as BACKFLUSH_SHORTAGE"""


class Store(Spec):
    url: str = Field(
        "run", description="'run' = a SQLite ledger in the run directory; or any store URL"
    )


class Measures(Spec):
    sample_interval: Duration = Field(timedelta(hours=1), description="drift and series sampling")
    heal: Duration = Field(
        timedelta(hours=2), description="the heal phase: faults off, replay, drain"
    )
    warmup: Duration = Field(
        timedelta(0),
        description="warm-up deletion: latency statistics count only events that occurred at "
        "or after it (duplicates and drift stay whole-run)",
    )


DEFAULT_METRICS = (
    "latency_ms.confirmation.p99",
    "duplicates.posted",
    "drift.max_value",
    "drift.final_value",
    "dead_letters.total",
    "throughput.messages_per_h",
)


class Sweep(Spec):
    """A what-if grid for `twin sweep`: the product of the value lists, each variant run
    `replications` times with common random numbers (replication r uses seed + r)."""

    parameters: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        {}, description="scenario key -> values to try, e.g. faults.loss_rate"
    )
    replications: int = Field(5, ge=1)
    """replications per variant"""
    metrics: tuple[str, ...] = Field(
        DEFAULT_METRICS,
        min_length=1,
        description="summary keys (or throughput.messages_per_h) to compare",
    )
    warmup: Duration = Field(
        timedelta(0), description="if set, overrides measures.warmup in every variant"
    )
