"""One business incident on a served core, and a webhook receiver, for the alerting and
console tests.

With `negative_stock: block`, a confirmation of WO-1 before any stock reached the line is
dead-lettered `BACKFLUSH_SHORTAGE` and stays open (it waits on nothing); the warehouse's
receipts fix the cause, and a replay then posts it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from integration import Envelope
from tests.builders import Envelopes, confirm, master_data, new_core, receipt, release, settings
from tests.integration.pg import fresh_schema, schema_url
from tests.integration.served import OPS_KEY, auth

CORRELATION_ID = "corr-WO-1/shift-2"
BLOCKING = settings(negative_stock="block")  # the served core's settings


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    """A core on a real ledger (a SQLite file, or a PostgreSQL schema) with the test master
    data, WO-1 released, negative stock blocked, on a manual clock."""
    if request.param == "sqlite":
        core, envelopes, clock = new_core(str(tmp_path / "ledger.db"), negative_stock="block")
        assert core.submit(release(envelopes)).status.value == "POSTED"
        yield core, envelopes, clock
        core.close()
        return
    with fresh_schema() as schema:
        core, envelopes, clock = new_core(schema_url(schema), negative_stock="block")
        assert core.submit(release(envelopes)).status.value == "POSTED"
        yield core, envelopes, clock
        core.close()


class Incident:
    """Drives the incident over HTTP against a served core at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.envelopes = Envelopes()

    def post(self, envelope: Envelope) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/v1/messages",
            content=envelope.model_dump_json(),
            headers={**auth(envelope.source_system.value), "Content-Type": "application/json"},
            timeout=10,
        )
        return answer.json()

    def prepare(self) -> None:
        """The test network's master data and WO-1 (and WO-2), posted."""
        for envelope in [*master_data(self.envelopes), release(self.envelopes)]:
            assert self.post(envelope)["status"] == "POSTED"
        assert self.post(release(self.envelopes, "WO-2"))["status"] == "POSTED"

    def fail(self, work_order: str = "WO-1", correlation_id: str = CORRELATION_ID) -> int:
        """A confirmation the line has no stock for; its dead letter's id."""
        envelope = confirm(self.envelopes, work_order=work_order)
        outcome = self.post(envelope.model_copy(update={"correlation_id": correlation_id}))
        assert (outcome["status"], outcome["code"]) == ("REJECTED", "BACKFLUSH_SHORTAGE")
        return outcome["dead_letter_id"]

    def fix(self) -> None:
        """The warehouse receives what the confirmation backflushes, at the line."""
        for goods in (receipt("2", location="LINE"), receipt("1", item="RAW-L", lot="L1",
                                                            location="LINE")):  # fmt: skip
            assert self.post(self.envelopes(goods))["status"] == "POSTED"

    def replay(self, work_order: str = "WO-1", key: str = OPS_KEY) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/dead-letters/replay",
            params={"work_order": work_order},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )


class Receiver:
    """A webhook receiver on loopback: answers 503 to the first `fail_first` requests, 204
    after; keeps every request's JSON body with the status it was answered."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[int, dict[str, Any]]] = []
        received = self.requests
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    status = 503 if len(received) < fail_first else 204
                    received.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self) -> list[dict[str, Any]]:
        """The bodies answered 2xx, in arrival order."""
        return [body for status, body in self.requests if status < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll until `condition()` is truthy; its value. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")
