"""The public API is pinned: adding or removing a name is a deliberate, reviewed change."""

import integration

PUBLIC = {
    "Core",
    "CoreSettings",
    "Sender",
    "NegativeStockPolicy",
    "open_store",
    "Outcome",
    "Status",
    "Clock",
    "ManualClock",
    "SystemClock",
    "Envelope",
    "SourceSystem",
    "ParsedPayload",
    "parse_payload",
    "BusinessIds",
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
    "OpenOrderPolicy",
    "ItemCreated",
    "BomReleased",
    "EcoReleased",
    "WorkOrderReleased",
    "MaterialIssued",
    "OperationCompleted",
    "ScrapDeclared",
    "ByProductReported",
    "FinishedGoodsReceived",
    "WorkOrderClosed",
    "GoodsReceived",
    "AsnLine",
    "AsnReceived",
    "SubcontractShipped",
    "SubcontractReceived",
    "InventoryTransferred",
    "AdjustmentReason",
    "StockAdjusted",
    "PeriodClosed",
    "MachineEvent",
    "QualityHold",
    "Message",
    "MESSAGE_TYPES",
    "period_of",
    "period_end",
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
    "Duration",
    "parse_duration",
    "format_duration",
    "ErrorCode",
    "Problem",
    "IntegrationError",
    "MessageRejected",
    "StoreError",
    "ConfigurationError",
    "NotFound",
}


def test_the_public_api_is_exactly_the_pinned_names():
    assert set(integration.__all__) == PUBLIC
    assert len(integration.__all__) == len(PUBLIC)  # no name listed twice


def test_every_public_name_resolves():
    for name in integration.__all__:
        assert getattr(integration, name) is not None, name


def test_every_exception_is_an_integration_error_with_a_stable_code():
    for name in ("MessageRejected", "StoreError", "ConfigurationError", "NotFound"):
        error_type = getattr(integration, name)
        assert issubclass(error_type, integration.IntegrationError)
        assert isinstance(error_type.code, integration.ErrorCode)


def test_the_core_never_imports_the_twin_simpy_or_psycopg():
    import subprocess
    import sys

    check = "import integration, sys; print(sorted({'sim', 'simpy', 'psycopg'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


SIM_PUBLIC = {
    "Scenario",
    "load_scenario",
    "scenario_schema",
    "simulate",
    "Run",
    "run_scenario",
    "RunOutcome",
    "Target",
    "Books",
    "InProcessTarget",
    "NullTarget",
    "HttpTarget",
}


def test_the_twin_exports_exactly_its_public_api():
    import sim

    assert set(sim.__all__) == SIM_PUBLIC
    assert all(hasattr(sim, name) for name in sim.__all__)


LOAD_PUBLIC = {
    "LoadOptions",
    "load_run",
    "drive_scenario",
    "make_schedule",
    "Schedule",
    "Send",
    "Http11Client",
    "AiohttpClient",
    "HttpxClient",
}


def test_the_load_driver_exports_exactly_its_public_api():
    import sim.load

    assert set(sim.load.__all__) == LOAD_PUBLIC
    assert all(hasattr(sim.load, name) for name in sim.load.__all__)


BROKER_PUBLIC = {
    "Topology",
    "routing_key",
    "outcome_routing_key",
    "HEADER_CODE",
    "HEADER_PROBLEMS",
    "HEADER_REASON",
    "HEADER_DEAD_LETTER_ID",
    "HEADER_SOURCE",
    "Consumer",
    "ConsumerOptions",
    "ConsumerMetrics",
    "run_consumer",
}


def test_the_broker_adapter_exports_exactly_its_public_api():
    import integration.broker

    assert set(integration.broker.__all__) == BROKER_PUBLIC
    assert all(hasattr(integration.broker, name) for name in integration.broker.__all__)


def test_the_twin_uses_only_the_cores_public_api():
    """sim/ imports `integration` names only from the package root (its `__all__`) or the
    service and broker packages' own public APIs."""
    import re
    from pathlib import Path

    offenders = []
    for path in sorted(Path("sim").rglob("*.py")):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from|import) integration\.(?!(service|broker) )", line):
                offenders.append(f"{path}: {line.strip()}")
    assert offenders == []
