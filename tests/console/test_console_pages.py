"""The console's pages in process (the real app over `httpx.ASGITransport`, on a manual
clock): sign-in and its cookie, the Content-Security-Policy, escaping, idle expiry, CSRF on
sign-out, the governance tiles after an alert round, discarding a dead letter (operate keys
only, with a reason), and p95 from the latency histogram."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pytest

from integration import AlertRule, AlertRules, DeadLetterFilter
from integration.service import ApiKey, ApiKeys, create_app
from integration.service.console import SECURITY_HEADERS
from integration.service.metrics import ServiceMetrics
from tests.builders import confirm, new_core, release
from tests.integration.served import OPS_KEY, READ_ONLY_KEY

HOSTILE = '"><img src=x onerror=alert(1)>'


@pytest.fixture
def console():
    core, envelopes, clock = new_core(negative_stock="block")
    assert core.submit(release(envelopes)).status.value == "POSTED"
    keys = ApiKeys((ApiKey(name="ops", key=OPS_KEY, operate=True),
                    ApiKey(name="reader", key=READ_ONLY_KEY)))  # fmt: skip
    rules = AlertRules(rules=(AlertRule(name="shortages", kind="dead_letters"),))
    app = create_app(core, keys, clock=clock, alert_rules=rules)
    yield app, core, envelopes, clock
    core.close()


def run(app, script):
    """Run `script(client)` against the app, cookies kept between its requests."""

    async def main():
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            return await script(client)

    return asyncio.run(main())


async def sign_in(client: httpx.AsyncClient, key: str = OPS_KEY) -> httpx.Response:
    return await client.post("/console/login", data={"key": key})


def test_sign_in_gives_an_opaque_http_only_strict_cookie_and_pages_carry_the_csp(console):
    app = console[0]

    async def script(client):
        refused = await client.get("/console")
        assert (refused.status_code, refused.headers["location"]) == (303, "/console/login")
        assert (await client.get("/console/live/overview")).status_code == 401
        wrong = await sign_in(client, "not-a-key-0123456789")
        assert wrong.status_code == 401 and "That key is not valid." in wrong.text
        assert "set-cookie" not in wrong.headers
        answer = await sign_in(client)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console")
        cookie = answer.headers["set-cookie"]
        assert re.search(r"HttpOnly", cookie) and re.search(
            r"SameSite=strict", cookie, re.IGNORECASE
        )
        assert "Path=/console" in cookie and OPS_KEY not in cookie
        for path in ("/console", "/console/dead-letters", "/console/story"):
            page = await client.get(path)
            assert page.status_code == 200, path
            for header, value in SECURITY_HEADERS.items():
                assert page.headers[header] == value
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert "'unsafe-inline'" not in page.headers["content-security-policy"]
            scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.DOTALL)
            assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
            assert "style=" not in page.text and "<style" not in page.text
        script_file = await client.get("/console/static/console.js")
        assert (
            script_file.status_code == 200 and "javascript" in script_file.headers["content-type"]
        )

    run(app, script)


def test_every_value_is_escaped(console):
    app, core, envelopes, _clock = console
    hostile = confirm(envelopes).model_copy(update={"correlation_id": HOSTILE})
    assert core.submit(hostile).code.value == "BACKFLUSH_SHORTAGE"

    async def script(client):
        await sign_in(client)
        pages = [
            await client.get("/console/dead-letters"),
            await client.get("/console/story", params={"correlation_id": HOSTILE}),
            await client.get("/console/dead-letters", params={"item": "<b>x</b>"}),
        ]
        for page in pages:
            assert "<img src=x" not in page.text and "<b>x</b>" not in page.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1].text
        assert pages[1].status_code == 200 and "BACKFLUSH_SHORTAGE" in pages[1].text

    run(app, script)


def test_a_session_ends_after_idle_hours_and_sign_out_needs_the_csrf_token(console):
    app, _core, _envelopes, clock = console

    async def script(client):
        await sign_in(client)
        assert (await client.get("/console")).status_code == 200
        clock.advance(timedelta(hours=7))
        page = await client.get("/console")  # used within the idle time: it lives on
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
        forged = await client.post("/console/logout", data={"csrf": "guess"})
        assert forged.status_code == 403 and "did not come from the console" in forged.text
        assert (await client.post("/console/logout", data={"csrf": csrf})).status_code == 303
        assert (await client.get("/console")).status_code == 303  # signed out
        await sign_in(client, READ_ONLY_KEY)
        clock.advance(timedelta(hours=8, seconds=1))
        assert (await client.get("/console")).status_code == 303  # idle too long

    run(app, script)


def test_the_tiles_show_the_ledger_after_an_alert_round_with_the_incident_and_its_age(console):
    app, core, envelopes, clock = console
    assert core.submit(confirm(envelopes)).code.value == "BACKFLUSH_SHORTAGE"

    async def script(client):
        await sign_in(client)
        await app.state.alerts.round()
        clock.advance(timedelta(minutes=5))
        await app.state.alerts.round()
        return (await client.get("/console/live/overview")).text

    tiles = run(app, script)

    def figure(tile: str) -> str:
        return re.search(rf'id="tile-{tile}">.*?class="figure">([^<]*)<', tiles, re.DOTALL)[1]

    # 14 messages: 13 master data and the release posted first time, the confirmation not
    assert (figure("first-pass"), figure("final")) == ("92.86 %", "92.86 %")
    assert (figure("failed"), figure("incidents"), figure("reconciliation")) == ("1", "1", "0")
    assert "oldest open for 5m" in tiles
    assert "shortages" in tiles and "WO-1" in tiles


def test_an_operate_key_discards_with_a_confirmation_and_a_reason_a_read_only_key_cannot(console):
    app, core, envelopes, _clock = console
    letter = core.submit(confirm(envelopes).model_copy(update={"correlation_id": "C-9"}))
    assert letter.code.value == "BACKFLUSH_SHORTAGE"
    chosen = {"id": str(letter.dead_letter_id)}

    async def csrf_of(client) -> str:
        page = await client.get("/console/dead-letters")
        assert 'id="discard-selected"' in page.text
        return re.search(r'name="csrf" value="([^"]+)"', page.text)[1]

    async def script(client):
        await sign_in(client, READ_ONLY_KEY)
        csrf = await csrf_of(client)
        refused = await client.post("/console/discard/confirm", data={**chosen, "csrf": csrf})
        assert refused.status_code == 403 and "may see dead letters but not discard" in refused.text
        forged = {**chosen, "csrf": csrf, "reason": "x"}
        assert (await client.post("/console/discard", data=forged)).status_code == 403
        await sign_in(client)
        csrf = await csrf_of(client)
        guessed = await client.post("/console/discard", data={**chosen, "csrf": "guess"})
        assert guessed.status_code == 403 and "did not come from the console" in guessed.text
        confirming = await client.post("/console/discard/confirm", data={**chosen, "csrf": csrf})
        assert confirming.status_code == 200 and 'id="discard-reason"' in confirming.text
        assert 'action="/console/discard"' in confirming.text
        no_reason = await client.post("/console/discard", data={**chosen, "csrf": csrf})
        assert no_reason.status_code == 400 and "Say why" in no_reason.text
        reason = f"superseded {HOSTILE}"
        done = await client.post(
            "/console/discard", data={**chosen, "csrf": csrf, "reason": reason}
        )
        assert done.status_code == 200 and "1 dead letter discarded" in done.text
        assert "<img src=x" not in done.text and "superseded &#34;&gt;&lt;img" in done.text
        story = await client.get("/console/story", params={"correlation_id": "C-9"})
        assert "discarded (closed by hand)" in story.text and "discarded: superseded" in story.text
        listed = await client.get("/console/dead-letters", params={"status": "discarded"})
        assert f'id="dead-letter-{letter.dead_letter_id}"' in listed.text
        again = await client.post("/console/discard", data={**chosen, "csrf": csrf, "reason": "y"})
        assert "the selection was no longer open" in again.text

    run(app, script)
    (closed,) = core.dead_letters(DeadLetterFilter(status="discarded"))
    assert closed.history[-1]["reason"] == f"superseded {HOSTILE}"
    assert core.dead_letters() == [] and core.replay() == []


def test_p95_interpolates_within_the_bucket_as_prometheus_does():
    metrics = ServiceMetrics()
    for _ in range(100):
        metrics.latency.labels("GoodsReceived").observe(0.003)  # all in (0.002, 0.005]
    metrics.latency.labels("OperationCompleted").observe(10)  # past the last bound
    assert metrics.latency_p95() == {
        "GoodsReceived": pytest.approx(0.002 + 0.003 * 0.95),
        "OperationCompleted": 2.5,
    }
