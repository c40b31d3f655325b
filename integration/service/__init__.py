"""The core as an HTTP service: `build_app` from a store URL, core settings and API keys."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from integration.alerting import load_rules
from integration.clock import SystemClock
from integration.core import Core, open_store
from integration.errors import ConfigurationError
from integration.service.admission import DEFAULT_DEAD_LETTER_QUOTA_BYTES, DEFAULT_MAX_WAIT_S
from integration.service.alerts import DEFAULT_ALERT_INTERVAL_S
from integration.service.app import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, create_app
from integration.service.keys import ApiKey, ApiKeys, load_keys
from integration.settings import CoreSettings

__all__ = [
    "ApiKey",
    "ApiKeys",
    "load_keys",
    "load_settings",
    "create_app",
    "build_app",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_WAIT_S",
    "DEFAULT_DEAD_LETTER_QUOTA_BYTES",
    "DEFAULT_ALERT_INTERVAL_S",
]


def load_settings(path: str | Path) -> CoreSettings:
    """Core settings (plants, locations, policies) from a JSON or YAML file."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return CoreSettings.model_validate(yaml.safe_load(text))
        return CoreSettings.model_validate_json(text)
    except ValueError as error:
        raise ConfigurationError(f"unreadable core settings {path}: {error}") from error


def build_app(
    db_url: str,
    settings_path: str | Path,
    keys_path: str | Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    dead_letter_quota_bytes: int = DEFAULT_DEAD_LETTER_QUOTA_BYTES,
    alerts_path: str | Path | None = None,
    alert_interval_s: float = DEFAULT_ALERT_INTERVAL_S,
    webhook_url: str | None = None,
) -> FastAPI:
    """The service over a store URL (`sqlite:///…` or `postgresql://…`), on the wall clock:
    submissions refused (429) past `max_wait_s` of expected wait or past a key's
    `dead_letter_quota_bytes` of rejected payloads an hour; the alert rules of `alerts_path`
    evaluated every `alert_interval_s`, their notices POSTed to `webhook_url`."""
    clock = SystemClock()
    rules = None if alerts_path is None else load_rules(alerts_path)
    core = Core(load_settings(settings_path), open_store(db_url), clock)
    return create_app(
        core,
        load_keys(keys_path),
        max_body_bytes=max_body_bytes,
        max_wait_s=max_wait_s,
        dead_letter_quota_bytes=dead_letter_quota_bytes,
        clock=clock,
        alert_rules=rules,
        alert_interval_s=alert_interval_s,
        webhook_url=webhook_url,
    )
