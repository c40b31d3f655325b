"""The console in a real browser: Debian's Chromium driven by Playwright against `twin serve`
in a subprocess on loopback (never Playwright's own browser download).

An operator signs in, filters the dead letters by work order, opens a correlation id's story,
fixes the cause (the warehouse receives the stock) and replays the dead letter, confirming it,
and sees it resolved; a read-only key sees the same pages but is refused the replay, even when
it forges the form. The overview's figures refresh without a reload. A failure leaves a
screenshot in reports/test-artifacts/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.conftest import FAILED
from tests.integration.incident import BLOCKING, CORRELATION_ID, Incident
from tests.integration.served import OPS_KEY, READ_ONLY_KEY, Served

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "reports" / "test-artifacts"
RULES = "rules:\n  - {name: shortages, kind: dead_letters, code: BACKFLUSH_SHORTAGE}\n"


def _chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM}: apt-get install -y chromium (make test does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    options = ("--alerts", str(rules), "--alert-interval", "200ms")
    running = Served(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, BLOCKING, options=options)
    yield running.start()
    running.stop()


@pytest.fixture
def page(request):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        context = browser.new_context()
        context.set_default_timeout(10_000)
        opened = context.new_page()
        try:
            yield opened
        finally:
            if request.node.stash.get(FAILED, False):
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()
            browser.close()


def sign_in(page, url: str, key: str) -> None:
    page.goto(f"{url}/console")
    assert page.url.endswith("/console/login")  # no session: the sign-in form
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console")


def test_an_operator_filters_reads_the_story_and_replays_a_fixed_dead_letter(served, page):
    from playwright.sync_api import expect

    incident = Incident(served.url)
    incident.prepare()
    letter = incident.fail("WO-1")
    incident.fail("WO-2", correlation_id="corr-WO-2")

    page.goto(f"{served.url}/console/login")
    page.fill("#key", "not-a-key-0123456789")
    page.click("button[type=submit]")
    expect(page.locator("#sign-in-error")).to_have_text("That key is not valid.")

    sign_in(page, served.url, OPS_KEY)
    expect(page.locator("#signed-in")).to_have_text("ops (operate)")
    expect(page.locator("#tile-failed .figure")).to_have_text("2")
    expect(page.locator("#tile-incidents .figure")).to_have_text("1")
    expect(page.locator("#incidents")).to_contain_text("WO-1")
    incident.fail("WO-2", correlation_id="corr-WO-2b")  # live: the tile follows, no reload
    expect(page.locator("#tile-failed .figure")).to_have_text("3", timeout=10_000)

    page.click("text=Dead letters")
    page.fill("input[name=work_order]", "WO-1")
    page.click("#filters button[type=submit]")
    rows = page.locator("#dead-letters tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("BACKFLUSH_SHORTAGE")
    assert "work_order=WO-1" in page.url

    page.click(f"a.story:has-text('{CORRELATION_ID}')")
    expect(page.locator("h1")).to_have_text("Correlation story")
    expect(page.locator("#story-messages")).to_contain_text("REJECTED")
    expect(page.locator("#story-dead-letters")).to_contain_text("BACKFLUSH_SHORTAGE")
    expect(page.locator("#story-entries")).to_contain_text("No journal entry.")

    incident.fix()
    page.goto(f"{served.url}/console/dead-letters?work_order=WO-1")
    page.check(f"#dead-letter-{letter} input[name=id]")
    page.click("#replay-selected")
    expect(page.locator("#to-replay")).to_contain_text(str(letter))
    page.click("#confirm-replay")
    expect(page.locator("#replay-outcomes .status")).to_have_text(["POSTED"])
    expect(page.locator(f"#dead-letter-{letter} .status")).to_have_text("replayed")

    page.goto(f"{served.url}/console/story?correlation_id={CORRELATION_ID}")
    expect(page.locator("#story-messages .status")).to_have_text(["POSTED"])
    expect(page.locator("#story-entries")).to_contain_text("OperationCompleted")
    expect(page.locator("#story-dead-letters")).to_contain_text("posted by a replay")
    open_ones = httpx.get(
        f"{served.url}/v1/dead-letters", headers={"Authorization": f"Bearer {OPS_KEY}"}
    ).json()["dead_letters"]
    assert {one["work_order"] for one in open_ones} == {"WO-2"}  # WO-1's alone was replayed


def test_a_read_only_key_sees_the_dead_letters_but_is_refused_the_replay(served, page):
    from playwright.sync_api import expect

    incident = Incident(served.url)
    incident.prepare()
    letter = incident.fail("WO-1")
    incident.fix()  # a replay would post: only the key stands in the way

    sign_in(page, served.url, READ_ONLY_KEY)
    expect(page.locator("#signed-in")).to_have_text("reader (read-only)")
    page.goto(f"{served.url}/console/dead-letters?work_order=WO-1")
    expect(page.locator("#dead-letters tbody tr")).to_have_count(1)
    expect(page.locator("#replay-selected")).to_be_disabled()
    expect(page.locator("#read-only-note")).to_contain_text("read-only")

    csrf = page.locator("#replay-selection input[name=csrf]").get_attribute("value")
    for path in ("/console/replay/confirm", "/console/replay"):  # forged with its own session
        answer = page.request.post(
            f"{served.url}{path}", form={"csrf": csrf, "id": str(letter)}, max_redirects=0
        )
        assert answer.status == 403
        assert re.search(
            r"reader is read-only: it may see dead letters but not replay", answer.text()
        )
    answer = page.request.post(  # an operator's CSRF rule holds for everyone: no token, no replay
        f"{served.url}/console/replay", form={"id": str(letter)}, max_redirects=0
    )
    assert answer.status == 403 and "did not come from the console" in answer.text()
    page.goto(f"{served.url}/console/dead-letters?work_order=WO-1")
    expect(page.locator(f"#dead-letter-{letter} .status")).to_have_text("open")
