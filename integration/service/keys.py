"""Bearer API keys: each names one source system and what its holder may do.

A keys file (or the `MFG_TWIN_API_KEYS` environment variable) holds JSON:

    {"keys": [
        {"name": "mes-line-1", "key": "…", "source": "MES"},
        {"name": "plm", "key": "…", "source": "PLM", "message_types": ["BomReleased"]},
        {"name": "ops", "key": "…", "operate": true}
    ]}

A key with a `source` may submit that source's message types (optionally only
`message_types`); every key may read; `operate` allows replaying dead letters.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integration.envelope import SourceSystem
from integration.errors import ConfigurationError
from integration.validation import Sender

__all__ = ["ApiKey", "ApiKeys", "load_keys", "KEYS_ENVIRONMENT_VARIABLE"]

KEYS_ENVIRONMENT_VARIABLE = "MFG_TWIN_API_KEYS"


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    key: str = Field(min_length=16, repr=False)
    source: SourceSystem | None = None
    message_types: tuple[str, ...] | None = None
    operate: bool = False

    @property
    def sender(self) -> Sender | None:
        if self.source is None:
            return None
        types = frozenset(self.message_types) if self.message_types is not None else None
        return Sender(self.source, types)


class _KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: tuple[ApiKey, ...] = Field(min_length=1)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ApiKeys:
    """Finds the key a bearer token belongs to, in constant time over all keys, so neither
    the answer's timing nor its content reveals which keys exist."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        names = [key.name for key in keys]
        if len(set(names)) != len(names):
            raise ConfigurationError("API key names must be unique")
        self._keys = [(_digest(key.key), key) for key in keys]
        self._by_name = {key.name: key for key in keys}

    def find(self, token: str) -> ApiKey | None:
        presented = _digest(token)
        found = None
        for digest, key in self._keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, presented):
                found = key
        return found

    def named(self, name: str) -> ApiKey | None:
        """The key called `name`: a broker user is the key of the same name (the broker has
        checked its password, the key)."""
        return self._by_name.get(name)


def load_keys(path: str | Path | None = None) -> ApiKeys:
    """Keys from a JSON file, or else from the MFG_TWIN_API_KEYS environment variable."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    elif KEYS_ENVIRONMENT_VARIABLE in os.environ:
        text = os.environ[KEYS_ENVIRONMENT_VARIABLE]
    else:
        raise ConfigurationError(
            f"no API keys: pass a keys file or set {KEYS_ENVIRONMENT_VARIABLE}"
        )
    try:
        return ApiKeys(_KeysFile.model_validate(json.loads(text)).keys)
    except (ValueError, ValidationError) as error:
        raise ConfigurationError(f"unreadable API keys: {error}") from error
