"""Console sessions: an API key signs in once; the browser then holds an opaque token.

The token (256 random bits) is the cookie's only content; the server keeps what it stands for
(the key, a CSRF token, an idle deadline by the service clock), under the token's SHA-256, in
memory: a restart signs everyone out. The cookie is HttpOnly and SameSite=Strict (Secure over
HTTPS); every state-changing form also carries the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from integration.clock import Clock
from integration.service.keys import ApiKey

__all__ = ["COOKIE", "Session", "Sessions"]

COOKIE = "mfg_console"
IDLE = timedelta(hours=8)
CAPACITY = 10_000  # sessions kept; the longest idle goes first


@dataclass
class Session:
    key: ApiKey
    csrf: str
    expires: datetime

    def csrf_matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), presented.encode())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    """Open sessions by token digest."""

    def __init__(self, clock: Clock, idle: timedelta = IDLE, capacity: int = CAPACITY) -> None:
        self.clock, self.idle, self.capacity = clock, idle, capacity
        self._open: dict[bytes, Session] = {}

    def open(self, key: ApiKey) -> str:
        """A new session for `key`; its token (the cookie value)."""
        if len(self._open) >= self.capacity:
            oldest = min(self._open, key=lambda digest: self._open[digest].expires)
            del self._open[oldest]
        token = secrets.token_urlsafe(32)
        expires = self.clock.now() + self.idle
        self._open[_digest(token)] = Session(key, secrets.token_urlsafe(32), expires)
        return token

    def find(self, token: str) -> Session | None:
        """The live session of `token` (its idle deadline moved on), or None."""
        if not token:
            return None
        digest = _digest(token)
        session = self._open.get(digest)
        now = self.clock.now()
        if session is None or session.expires <= now:
            self._open.pop(digest, None)
            return None
        session.expires = now + self.idle
        return session

    def close(self, token: str) -> None:
        self._open.pop(_digest(token), None)
