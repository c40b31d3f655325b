"""The load driver's keys, from the same keys file `twin serve --keys` reads: for each source
system the key it sends with (and its name, the AMQP user), and an `operate` key for the heal
phase (replays, expiries)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from integration import ConfigurationError, SourceSystem

__all__ = ["SourceUsers", "read_source_users"]

ENVIRONMENT_VARIABLE = "MFG_TWIN_API_KEYS"  # as `twin serve` reads it

# per source system (the name, the key) of the key it sends with; the first `operate` key
SourceUsers = tuple[dict[SourceSystem, tuple[str, str]], str | None]


def read_source_users(path: str | Path | None) -> SourceUsers:
    """Per source system its first key allowed every message type of the source (else its
    first key) as (name, key): the bearer key over HTTP, the AMQP user and password for a
    broker (`sim.load.amqp`); and the first `operate` key."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    elif ENVIRONMENT_VARIABLE in os.environ:
        text = os.environ[ENVIRONMENT_VARIABLE]
    else:
        raise ConfigurationError(f"no API keys: pass --keys FILE or set {ENVIRONMENT_VARIABLE}")
    try:
        entries = json.loads(text)["keys"]
        by_source: dict[SourceSystem, tuple[str, str]] = {}
        for entry in sorted(entries, key=lambda e: e.get("message_types") is not None):
            if entry.get("source") is not None:
                by_source.setdefault(SourceSystem(entry["source"]), (entry["name"], entry["key"]))
        operate = next((e["key"] for e in entries if e.get("operate")), None)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigurationError(f"unreadable API keys: {error!r}") from error
    return by_source, operate
