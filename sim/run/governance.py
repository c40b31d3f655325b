"""The `governance` section of the summary: the figures an operations team is judged by,
computed from the incidents the measures kept against the truth (docs/architecture.md,
Governance).

Detection: the first alert evaluation that covered the incident (`Incidents.detect`), else
the heal phase, which finds everything still failing when it starts (at the horizon; an
incident that opens during it, when it opens). An incident that closed before the horizon
without an alert covering it was never detected, and counts in no MTTD. MTTD is detection −
opening; MTTR is opening → closing (the event's effect in the books), over closed incidents."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sim.model.incidents import Incident
from sim.model.measures import Measures
from sim.model.target import Books

__all__ = ["HEAL", "governance"]

HEAL = "heal"  # the detector of what no alert covered


def _detection(incident: Incident, horizon: float) -> tuple[float, str] | None:
    """(when, by what) the incident was detected, or None if it never was."""
    if incident.detected_at is not None:
        return incident.detected_at, incident.detected_by
    if incident.closed_at is None or incident.closed_at > horizon:
        return max(incident.opened_at, horizon), HEAL
    return None


def _figures(seconds: list[float]) -> dict[str, Any]:
    """count, mean and p90 (nearest rank) in seconds; mean and p90 None without values."""
    if not seconds:
        return {"count": 0, "mean_s": None, "p90_s": None}
    ranked = sorted(seconds)
    p90 = ranked[math.ceil(0.9 * len(ranked)) - 1]
    return {
        "count": len(ranked),
        "mean_s": round(sum(ranked) / len(ranked), 3),
        "p90_s": round(p90, 3),
    }


def _group(incidents: Iterable[Incident], horizon: float) -> dict[str, Any]:
    incidents = list(incidents)
    detections = [(i, _detection(i, horizon)) for i in incidents]
    return {
        "incidents": len(incidents),
        "open_at_end": sum(i.closed_at is None for i in incidents),
        "mttd": _figures([found[0] - i.opened_at for i, found in detections if found]),
        "mttr": _figures([i.closed_at - i.opened_at for i in incidents if i.closed_at is not None]),
    }


def _by(incidents: list[Incident], key, horizon: float) -> dict[str, Any]:
    groups: dict[str, list[Incident]] = {}
    for incident in incidents:
        groups.setdefault(key(incident), []).append(incident)
    return {name: _group(groups[name], horizon) for name in sorted(groups)}


def governance(
    measures: Measures, books: Books, horizon_s: float, exceptions: int
) -> dict[str, Any]:
    """The section; `exceptions` are the final reconciliation exceptions (stock keys where the
    books and the truth differ)."""
    tracked = measures.incidents
    incidents = tracked.every()
    detectors = [found[1] for i in incidents if (found := _detection(i, horizon_s))]
    truth = max(measures.truth_events, 1)
    overall = _group(incidents, horizon_s)
    return {
        "success_rate": {
            "first_pass": round(measures.first_pass / truth, 4),
            "final": round(measures.applied_events() / truth, 4),
        },
        "incidents": {
            "total": len(incidents),
            "detected_by_alert": sum(d != HEAL for d in detectors),
            "detected_by_heal": detectors.count(HEAL),
            "undetected": len(incidents) - len(detectors),
            "closed": len(tracked.closed),
        },
        "open_incidents": len(tracked.open),
        "mttd": overall["mttd"],
        "mttr": overall["mttr"],
        "by_workflow": _by(incidents, lambda i: i.event.workflow, horizon_s),
        "by_code": _by(incidents, lambda i: i.code, horizon_s),
        "failed_volume": tracked.failed_messages,
        "replays": {"total": books.dead_letters_replayed, "by_operators": tracked.operator_replays},
        "reconciliation_exceptions": exceptions,
        "alerts": dict(sorted(tracked.alerts.items())),
        "fixes": dict(sorted(tracked.fixes.items())),
    }
