"""mfg-twin's integration core: canonical messages in, exactly one correct ledger effect out.

The public API is this module's `__all__`; everything else is private to the package.
"""

from integration.alerting import (
    AlertBook,
    AlertEvaluation,
    AlertKind,
    AlertNotice,
    AlertRule,
    AlertRules,
    AlertSignals,
    AlertState,
    AlertSubject,
    evaluate_alert,
)
from integration.clock import Clock, ManualClock, SystemClock
from integration.core import Core, open_store
from integration.durations import Duration, format_duration, parse_duration
from integration.envelope import BusinessIds, Envelope, ParsedPayload, SourceSystem, parse_payload
from integration.errors import (
    ConfigurationError,
    ErrorCode,
    IntegrationError,
    MessageRejected,
    NotFound,
    Problem,
    StoreError,
)
from integration.ledger import Account
from integration.master import (
    Alternate,
    BomLine,
    BomRevision,
    BomStatus,
    Item,
    ItemType,
    Location,
    LocationKind,
    Operation,
    OverlayAdd,
    OverlayQuantity,
    OverlayRemove,
    OverlaySubstitute,
    Plant,
    PlantOverlay,
    Routing,
    UomConversion,
)
from integration.messages import *  # noqa: F403 - the message types are public by design
from integration.messages import __all__ as _message_names
from integration.outcome import Outcome, Status
from integration.periods import period_end, period_of
from integration.reconcile import Check, Finding, Reconciliation
from integration.settings import CoreSettings, NegativeStockPolicy
from integration.store.base import DeadLetter, DeadLetterFilter, LedgerStore, StockBalance
from integration.store.postgres import PostgresStore  # imports psycopg only when opened
from integration.store.sqlite import SqliteStore
from integration.validation import Sender

__all__ = [
    # the facade
    "Core",
    "CoreSettings",
    "NegativeStockPolicy",
    "open_store",
    "Outcome",
    "Status",
    "Sender",
    # clocks
    "Clock",
    "ManualClock",
    "SystemClock",
    # envelope and master data
    "Envelope",
    "SourceSystem",
    "BusinessIds",
    "ParsedPayload",
    "parse_payload",
    "Item",
    "ItemType",
    "UomConversion",
    "Plant",
    "Location",
    "LocationKind",
    "BomStatus",
    "BomLine",
    "Alternate",
    "BomRevision",
    "PlantOverlay",
    "OverlaySubstitute",
    "OverlayQuantity",
    "OverlayAdd",
    "OverlayRemove",
    "Operation",
    "Routing",
    *_message_names,
    # accounting periods: calendar months in the plant's time zone
    "period_of",
    "period_end",
    # ledger, stores, reconciliation
    "Account",
    "LedgerStore",
    "SqliteStore",
    "PostgresStore",
    "StockBalance",
    "DeadLetter",
    "DeadLetterFilter",
    "Reconciliation",
    "Finding",
    "Check",
    # alert rules: one language for the service and the twin's operators
    "AlertRule",
    "AlertRules",
    "AlertKind",
    "AlertSubject",
    "AlertSignals",
    "AlertEvaluation",
    "evaluate_alert",
    "AlertBook",
    "AlertState",
    "AlertNotice",
    # durations as people write them (15m, 2h)
    "Duration",
    "parse_duration",
    "format_duration",
    # errors
    "ErrorCode",
    "Problem",
    "IntegrationError",
    "MessageRejected",
    "StoreError",
    "ConfigurationError",
    "NotFound",
]
