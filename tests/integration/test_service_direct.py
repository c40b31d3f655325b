"""The direct submission path (`integration/service/submissions.py`) answers as FastAPI's
routes do.

The same requests go, in the same order, to two apps over two fresh ledgers: one at its root,
where `ServiceApp` answers the two submission paths itself, and one mounted under a prefix,
where the full path does not match and FastAPI's routes answer them. Status, body and the
headers a client acts on must be the same for every request, and so must the metrics; a count
of the requests FastAPI saw proves which path each took.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.routing import Mount

from integration.service import ApiKey, ApiKeys, create_app
from tests.builders import confirm, new_core, release
from tests.integration.served import KEYS, auth

MAX_BODY = 4096
PREFIX = "/mfg"
HEADERS = ("content-type", "retry-after", "www-authenticate")
KEY_RING = ApiKeys(
    (
        ApiKey(name="mes", key=KEYS["MES"], source="MES"),
        ApiKey(name="erp", key=KEYS["ERP"], source="ERP"),
        ApiKey(name="reader", key="reader-key-0123456789abcdef"),
    )
)


@pytest.fixture
def framework_paths(monkeypatch) -> list[str]:
    """The path of every request that reached FastAPI."""
    seen: list[str] = []
    entry = FastAPI.__call__

    async def counted(self, scope, receive, send):
        seen.append(scope.get("path", ""))
        await entry(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", counted)
    return seen


def requests() -> list[tuple[str, bytes, dict[str, str]]]:
    """(path, body, headers): answers of every kind the two endpoints give."""
    _core, env, _clock = new_core()
    posted = confirm(env).model_dump_json().encode()
    batch = b"[" + b",".join(confirm(env).model_dump_json().encode() for _ in range(2)) + b"]"
    mes, erp = auth("MES"), auth("ERP")
    return [
        ("/v1/messages", release(env).model_dump_json().encode(), erp),  # 200 POSTED
        ("/v1/messages", posted, mes),  # 200 POSTED
        ("/v1/messages", posted, mes),  # 200 DUPLICATE
        ("/v1/messages/batch", batch, mes),  # 200, an outcome each
        ("/v1/messages", b"{not json", mes),  # 400 MALFORMED_PAYLOAD, dead-lettered
        ("/v1/messages", b"[]", mes),  # 422 SCHEMA_INVALID
        ("/v1/messages", posted, {}),  # 401
        ("/v1/messages", posted, {"Authorization": f"Basic {KEYS['MES']}"}),  # 401
        ("/v1/messages", posted, {"Authorization": "Bearer reader-key-0123456789abcdef"}),
        ("/v1/messages?at=%00", posted, mes),  # 400: unstorable text in the query
        ("/v1/messages", b" " * (MAX_BODY + 1), mes),  # 413
        ("/v1/messages/batch", b'{"not": "a batch"}', mes),  # 400
        ("/v1/messages/batch", b"[" + b",".join([posted] * 4) + b"]", mes),  # 413: 3 at most
        ("/v1/messages", b"x" * (MAX_BODY - 200), mes),  # 400, kept: near the quota
        ("/v1/messages", b"y" * (MAX_BODY - 200), mes),  # 429 DEAD_LETTER_QUOTA
    ]


def served(prefix: str) -> tuple[FastAPI, httpx.AsyncClient]:
    core, _env, clock = new_core()
    app = create_app(
        core, KEY_RING, max_body_bytes=MAX_BODY, max_batch=3, dead_letter_quota_bytes=MAX_BODY,
        clock=clock,
    )  # fmt: skip
    outer = Starlette(routes=[Mount(prefix, app=app)]) if prefix else app
    transport = httpx.ASGITransport(app=outer)
    return app, httpx.AsyncClient(transport=transport, base_url=f"http://test{prefix}")


async def answers(prefix: str) -> tuple[list[tuple], list[str]]:
    """Every request's (status, body, headers) from one app, then its metrics (of the
    latencies, their counts: the times differ)."""
    app, client = served(prefix)
    found = []
    async with client:
        for path, body, headers in requests():
            answer = await client.post(path.lstrip("/"), content=body, headers=headers)
            kept = {name: answer.headers.get(name) for name in HEADERS}
            found.append((path, answer.status_code, answer.json(), kept))
    metrics = app.state.metrics.exposition().decode().splitlines()
    timed = ("_created", "_seconds_sum", "_seconds_bucket")
    return found, [line for line in metrics if not any(part in line for part in timed)]


def test_the_direct_path_answers_as_the_framework_does(framework_paths):
    direct, direct_metrics = asyncio.run(answers(""))
    assert framework_paths == []  # none reached FastAPI
    routed, routed_metrics = asyncio.run(answers(PREFIX))
    assert len(framework_paths) == len(routed)  # every one did

    assert [answer[:2] for answer in direct] == [
        (path, status)
        for path, status in zip(
            [path for path, _body, _headers in requests()],
            [200, 200, 200, 200, 400, 422, 401, 401, 403, 400, 413, 400, 413, 400, 429],
            strict=True,
        )
    ]
    for mine, theirs in zip(direct, routed, strict=True):
        assert mine == theirs, json.dumps([mine, theirs], indent=1)
    assert direct[2][2]["status"] == "DUPLICATE"
    assert direct[-1][3]["retry-after"] is not None
    assert direct_metrics == routed_metrics


class _Tracer(trace.NoOpTracer):
    def __init__(self, spans: list[str]) -> None:
        self.spans = spans

    def start_span(self, name, *args, **kwargs):
        self.spans.append(name)
        return super().start_span(name, *args, **kwargs)


class _TracerProvider(trace.TracerProvider):
    """An OpenTelemetry tracer provider that records the names of the spans started."""

    def __init__(self) -> None:
        self.spans: list[str] = []

    def get_tracer(self, *args, **kwargs) -> trace.Tracer:
        return _Tracer(self.spans)


def test_with_opentelemetry_configured_submissions_go_through_fastapi_and_are_traced(
    monkeypatch, framework_paths
):
    provider = _TracerProvider()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # restored after the test
    path, body, headers = requests()[0]

    async def submit() -> int:
        _app, client = served("")
        async with client:
            return (await client.post(path.lstrip("/"), content=body, headers=headers)).status_code

    assert asyncio.run(submit()) == 200
    assert framework_paths == [path]
    assert any(name.startswith("POST") for name in provider.spans), provider.spans


def test_a_content_length_of_thousands_of_digits_is_too_large_not_a_failure():
    huge = "9" * 5000  # int() refuses to read it: it once answered 500 INTERNAL

    async def submit() -> httpx.Response:
        _app, client = served("")
        async with client:
            request = client.build_request("POST", "v1/messages", content=b"{}")
            request.headers.update({**auth("MES"), "content-length": huge})
            return await client.send(request)

    answer = asyncio.run(submit())
    assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
