"""How the load driver talks HTTP: one small async port and its adapters.

`Client.post(path, key, body)` sends one request and answers a `Reply` (status, JSON body,
Retry-After) or raises `RequestFailed` (no answer: a timeout or a broken connection). Retry
policy lives above this port (`sim.load.driver`), so it is the same for every adapter.

* `Http11Client` (`sim.load.http11`) is the default for `http://` targets: about half of
  aiohttp's CPU per request (README, "Load testing a live target").
* `AiohttpClient` serves `https://` targets and `--client aiohttp`: against a trivial FastAPI
  endpoint on this 2-core machine, aiohttp sends about twice as many requests per second as
  httpx with its aiohttp transport, and many times more than httpx's default transport.
* `HttpxClient` wraps any `httpx.AsyncClient`, so respx can force failures at the client
  boundary in tests, and a team can bring its own transport (proxies, mTLS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sim.run.http_target import retry_after

if TYPE_CHECKING:
    import aiohttp
    import httpx

__all__ = ["Client", "Reply", "RequestFailed", "AiohttpClient", "HttpxClient"]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any  # the parsed JSON body, or None when it was not JSON
    retry_after: float | None = None  # seconds, from a Retry-After header


class RequestFailed(Exception):
    """No answer came: `kind` is "timeout" or "connection"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Client(Protocol):
    async def post(self, path: str, key: str, body: bytes) -> Reply:
        """POST `body` (JSON) to `path` under bearer `key`."""

    async def close(self) -> None: ...


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


class AiohttpClient:
    """aiohttp with one connection pool of `connections` keep-alive connections."""

    def __init__(self, base_url: str, connections: int, timeout_s: float) -> None:
        import aiohttp  # now, not on the first timed request

        self._aiohttp = aiohttp
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        aiohttp = self._aiohttp
        if self._session is None:  # inside the running loop, as aiohttp requires
            connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=0)
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def post(self, path: str, key: str, body: bytes) -> Reply:
        try:
            async with self._open().post(
                self.base_url + path, data=body, headers=_headers(key)
            ) as response:
                raw = await response.read()
                return Reply(response.status, _json(raw), retry_after(response.headers))
        except TimeoutError as error:
            raise RequestFailed("timeout", repr(error)) from error
        except self._aiohttp.ClientError as error:
            raise RequestFailed("connection", repr(error)) from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxClient:
    """Any `httpx.AsyncClient` (its base URL and timeout as configured by the caller)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, key: str, body: bytes) -> Reply:
        import httpx

        try:
            response = await self.client.post(path, content=body, headers=_headers(key))
        except httpx.TimeoutException as error:
            raise RequestFailed("timeout", repr(error)) from error
        except httpx.TransportError as error:
            raise RequestFailed("connection", repr(error)) from error
        return Reply(response.status_code, _json(response.content), retry_after(response.headers))

    async def close(self) -> None:
        await self.client.aclose()
