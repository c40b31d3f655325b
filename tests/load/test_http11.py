"""The driver's HTTP/1.1 client against real loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from sim.load.client import RequestFailed
from sim.load.http11 import Http11Client

OK = b'{"status": "POSTED", "message_id": "m-1"}'


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Server:
    """A loopback server whose `handle(reader, writer)` plays each connection; `settle()`
    waits until every connection it accepted is finished and closed."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.accepted = 0
        self.finished = 0

    async def start(self) -> Http11Client:
        self.server = await asyncio.start_server(self._play, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Http11Client(f"http://127.0.0.1:{port}", timeout_s=0.5)

    async def _play(self, reader, writer) -> None:
        self.accepted += 1
        try:
            await self.handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.finished += 1

    async def settle(self) -> None:
        while self.finished < self.accepted:
            await asyncio.sleep(0.01)
        self.server.close()
        await self.server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


def run(coroutine):
    return asyncio.run(coroutine)


def test_requests_reuse_one_keep_alive_connection_and_carry_key_and_body():
    connections, requests = [], []

    async def handle(reader, writer):
        connections.append(writer)
        while True:
            requests.append(await read_request(reader))
            writer.write(answer(OK))
            await writer.drain()

    async def go():
        server = Server(handle)
        client = await server.start()
        replies = [await client.post("/v1/messages", "k-1", b'{"a": 1}') for _ in range(3)]
        await client.close()
        await server.settle()
        return replies

    replies = run(go())
    assert [r.status for r in replies] == [200] * 3 and replies[0].body["status"] == "POSTED"
    assert len(connections) == 1
    assert b"POST /v1/messages HTTP/1.1" in requests[0]
    assert b"Authorization: Bearer k-1" in requests[0] and requests[0].endswith(b'{"a": 1}')


def test_a_connection_the_server_closes_is_replaced_and_chunked_answers_are_read():
    connections = []

    async def handle(reader, writer):
        connections.append(writer)
        await read_request(reader)
        chunks = b"7\r\n" + OK[:7] + b"\r\n" + f"{len(OK) - 7:x}".encode() + b"\r\n"
        chunks += OK[7:] + b"\r\n0\r\n\r\n"
        writer.write(b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n")
        writer.write(b"Retry-After: 2\r\nConnection: close\r\n\r\n" + chunks)
        await writer.drain()

    async def go():
        server = Server(handle)
        client = await server.start()
        replies = [await client.post("/v1/messages", "k", b"{}") for _ in range(2)]
        await client.close()
        await server.settle()
        return replies

    replies = run(go())
    assert [(r.status, r.retry_after, r.body) for r in replies] == [(429, 2.0, json.loads(OK))] * 2
    assert len(connections) == 2


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [("hang", "timeout"), ("reset", "connection"), ("garbage", "connection")],
)
def test_no_answer_is_a_request_failure_of_its_kind(behaviour, kind):
    async def handle(reader, writer):
        await read_request(reader)
        if behaviour == "hang":
            await reader.read()  # until the client gives up and closes
        elif behaviour == "garbage":
            writer.write(b"this is not HTTP\r\n\r\n")
            await writer.drain()

    async def go():
        server = Server(handle)
        client = await server.start()
        with pytest.raises(RequestFailed) as failed:
            await client.post("/v1/messages", "k", b"{}")
        await client.close()
        await server.settle()
        return failed.value.kind

    assert run(go()) == kind


def test_nothing_listening_is_a_connection_failure_and_https_is_refused():
    async def go():
        client = Http11Client("http://127.0.0.1:9", timeout_s=0.5)
        with pytest.raises(RequestFailed) as failed:
            await client.post("/v1/messages", "k", b"{}")
        return failed.value.kind

    assert run(go()) == "connection"
    with pytest.raises(ValueError):
        Http11Client("https://example.test", timeout_s=1)
