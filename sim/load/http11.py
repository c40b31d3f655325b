"""A small keep-alive HTTP/1.1 client for the load driver: asyncio protocols and httptools'
C parser, nothing else on the path of a request.

Why it exists: on this 2-core machine, against a trivial endpoint, aiohttp spent about twice
the CPU per request of this client (about 450 µs against 250 µs) and kept its schedule to a
lower rate (3,000/s against 5,000/s with < 1 % late sends; benchmarks/load_driver.py compares
them). It speaks
only what the driver needs: `POST` over plain `http://`, `Content-Length` or chunked answers,
one request at a time per connection, connections reused until the server closes them.
`https://` targets go through `AiohttpClient` instead (`make_client`).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

from sim.load.client import Reply, RequestFailed
from sim.run.http_target import retry_after

__all__ = ["Http11Client"]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes a request, parses its answer into `answer`."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._parse_error = httptools.HttpParserError
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[None] | None = None
        self.closed = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def request(self, head: bytes, body: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.headers, self.body = {}, []
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        return self.answer

    def _fail(self, detail: str) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(RequestFailed("connection", detail))

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except self._parse_error as error:
            self.closed = True
            self._fail(repr(error))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(repr(exc) if exc else "the server closed the connection")

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self._parser.should_keep_alive():
            self.closed = True
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(None)


class Http11Client:
    """`Client` over keep-alive HTTP/1.1 connections to one `http://host:port` target."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"Http11Client speaks plain http://host:port, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as error:
            raise RequestFailed("connection", repr(error)) from error
        self._open.add(connection)
        return connection

    def _head(self, path: str, key: str, length: int) -> bytes:
        return (
            f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode("latin-1")

    async def post(self, path: str, key: str, body: bytes) -> Reply:
        connection = await self._connection()
        answer = connection.request(self._head(path, key, len(body)), body)
        timer = asyncio.get_running_loop().call_later(self.timeout_s, _expire, answer)
        try:
            await answer
        except RequestFailed:
            self._drop(connection)
            raise
        finally:
            timer.cancel()
        if connection.closed:
            self._drop(connection)
        else:
            self._idle.append(connection)
        raw = b"".join(connection.body)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Reply(connection.status, parsed, retry_after(connection.headers))

    def _drop(self, connection: _Connection) -> None:
        self._open.discard(connection)
        if connection.transport is not None:
            connection.transport.close()

    async def close(self) -> None:
        for connection in list(self._open):
            self._drop(connection)
        self._idle.clear()


def _expire(answer: asyncio.Future[None]) -> None:
    if not answer.done():
        answer.set_exception(RequestFailed("timeout", "no answer in time"))
