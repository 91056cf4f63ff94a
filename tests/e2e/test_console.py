"""The operator console (`/console`) in a real browser: Debian's chromium driven by
Playwright, against a whole gateway (api, inbound, workers, SMSC and modem simulators) run
as processes.

One walk through it: a refused sign-in says so; signing in keeps the key in sessionStorage
and out of every URL; routes show live state; the part/encoding counter follows the text;
a message sent from the form turns `delivered` in the list through the live stream; an
incoming SMS injected at the SMSC simulator appears; USSD/balance and webhooks (a dead
delivery, redelivered) show for a key allowed to, and are hidden for one that is not; the
page fits a phone's width; nothing breaks the Content-Security-Policy.

`UPDATE_CONSOLE_SCREENSHOT=1` also saves the screenshot to docs/console.png (the README's).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.debian import debian_tool
from tests.e2e.stack import Stack, wait_routes_connected

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SLOW = 60_000  # ms: what goes through the workers and simulators on a busy 2-core host


@pytest.fixture(scope="session")
def chromium() -> str:
    return debian_tool(CHROMIUM, "chromium", "drive the console in a browser", recommends=True)


async def _dead_delivery(client: httpx.AsyncClient, webhook_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        r = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"status": "dead"})
        if r.json()["data"]:
            got: dict[str, Any] = r.json()["data"][0]
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no dead delivery")
        await asyncio.sleep(0.2)


async def sign_in(page: Page, key: str) -> None:
    await page.fill("#key", key)
    await page.click("#signin-form button")


@pytest.mark.timeout(400)  # the gateway's start and one long walk, on a busy host
async def test_console_in_a_real_browser(
    chromium: str, stack: Stack, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await wait_routes_connected(client)
    for asset, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        r = await client.get(f"/console/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in r.headers["content-security-policy"]
    assert not [p for p in (await client.get("/openapi.json")).json()["paths"] if "console" in p]
    r = await client.post(
        "/v1/keys", json={"name": "desk" + uuid.uuid4().hex[:6], "scopes": ["send", "read"]}
    )
    assert r.status_code == 201, r.text
    desk_key = r.json()["secret"]
    # A webhook whose receiver is down: its deliveries die, for the console to redeliver.
    r = await client.post(
        "/v1/webhooks",
        json={
            "url": "http://127.0.0.1:9/down",
            "events": ["message.status.delivered"],
            "description": "CRM (down)",
        },
    )
    assert r.status_code == 201, r.text
    webhook_id = r.json()["id"]

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        urls: list[str] = []
        console_errors: list[str] = []
        page.on("request", lambda req: urls.append(req.url))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        try:
            answer = await page.goto(stack.api_url + "/console")
            assert answer is not None and answer.status == 200
            csp = answer.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp

            # A refused sign-in says so, and keeps nothing.
            await sign_in(page, "sgw_wrong_" + uuid.uuid4().hex)
            await expect(page.locator("#signin-error")).to_contain_text("Sign-in refused")
            assert await page.evaluate("sessionStorage.length") == 0
            await expect(page.locator("#app")).to_be_hidden()

            # The admin key: every section.
            await sign_in(page, stack.api_key)
            await expect(page.locator("#app")).to_be_visible()
            stored = await page.evaluate("sessionStorage.getItem('smsgw.console.key')")
            assert stored == stack.api_key
            await expect(page.locator("#live")).to_have_attribute("data-live", "true")
            for route in ("modem:m1", "modem:m2", "smpp:b1"):
                row = page.locator(f'#routes-body tr[data-route="{route}"]')
                await expect(row).to_have_attribute("data-connected", "true")
            await expect(page.locator('#routes-body tr[data-route="modem:m1"]')).to_contain_text(
                "dBm"
            )
            await expect(page.locator("#modems")).to_be_visible()
            await expect(page.locator("#webhooks")).to_be_visible()

            # The counter follows the text.
            await page.fill("#send-text", "Hello")
            await expect(page.locator("#counter")).to_contain_text("GSM-7")
            await expect(page.locator("#counter")).to_contain_text("1 part ")
            await page.fill("#send-text", "Привет, это длинное сообщение. " * 3)
            await expect(page.locator("#counter")).to_contain_text("UCS-2")
            await expect(page.locator("#counter")).to_have_attribute("data-parts", "2")

            # Send from the form; the list shows it reach `delivered` through the stream.
            await page.fill("#send-to", "+79160001234")
            await page.fill("#send-text", "Hello from the console")
            await page.click("#send-form button[type=submit]")
            await expect(page.locator("#send-result")).to_contain_text("Accepted 1")
            first = page.locator("#messages-body tr").first
            await expect(first).to_contain_text("Hello from the console")
            mid = await first.get_attribute("data-id")
            assert mid
            await expect(first.locator("[data-state]")).to_have_attribute(
                "data-state", "delivered", timeout=SLOW
            )
            assert (await client.get(f"/v1/messages/{mid}")).json()["status"] == "delivered"

            # An incoming SMS injected at the SMSC simulator appears.
            text = "Incoming " + uuid.uuid4().hex[:6]
            async with httpx.AsyncClient(base_url=stack.smsc_control, timeout=30) as sim:
                r = await sim.post(
                    "/inject", json={"from": "+79215557777", "to": "1234", "text": text}
                )
                assert r.status_code in (200, 201), r.text
            await expect(page.locator("#inbound-body")).to_contain_text(text, timeout=SLOW)
            await expect(page.locator("#inbound-body tr").first).to_contain_text("+79215557777")

            # Balance through the modem worker.
            await page.click("#balance")
            await expect(page.locator("#ussd-result")).to_contain_text("m1: ", timeout=SLOW)
            await expect(page.locator("#ussd-result")).not_to_have_class("result error")
            await page.select_option("#ussd-modem", "m2")
            await page.fill("#ussd-code", "*100#")
            await page.click("#ussd-form button[type=submit]")
            await expect(page.locator("#ussd-result")).to_contain_text("m2: ", timeout=SLOW)
            await expect(page.locator("#ussd-result")).not_to_have_class("result error")

            # The webhook's dead delivery, redelivered from the console.
            dead = await _dead_delivery(client, webhook_id)
            await page.click("#webhooks-list button:text('Refresh')")
            row = page.locator(f'tr[data-delivery="{dead["id"]}"]')
            await expect(row.locator("[data-state]")).to_have_attribute("data-state", "dead")
            await row.locator("button").click()
            await expect(
                page.locator(f'tr[data-delivery="{dead["id"]}"] [data-state]')
            ).to_have_attribute("data-state", "pending")

            await page.fill("#send-to", "+79160001234")
            await page.fill("#send-text", "Ваш код: 1234")
            await expect(page.locator("#counter")).to_contain_text("UCS-2")
            shot = tmp_path / "console.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("UPDATE_CONSOLE_SCREENSHOT") == "1":
                shutil.copy(shot, ROOT / "docs" / "console.png")

            # A phone's width: nothing wider than the screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            wide = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"the page is {wide}px wider than a phone"

            # A send+read key: no USSD/balance, no webhooks.
            await page.click("#signout")
            await expect(page.locator("#signin")).to_be_visible()
            assert await page.evaluate("sessionStorage.length") == 0
            await sign_in(page, desk_key)
            await expect(page.locator("#send")).to_be_visible()
            await expect(page.locator("#messages")).to_be_visible()
            await expect(page.locator("#routes-body tr[data-route]")).to_have_count(3)
            await expect(page.locator("#send-route option")).to_have_count(6)  # auto, 2 pools, 3
            await expect(page.locator("#modems")).to_be_hidden()
            await expect(page.locator("#webhooks")).to_be_hidden()
            # Reloading the tab keeps the session (sessionStorage), still out of the URL.
            await page.reload()
            await expect(page.locator("#send")).to_be_visible()
        finally:
            await browser.close()

    keys = (stack.api_key, desk_key)
    assert not [u for u in urls if any(k in u for k in keys)], "a key went into a URL"
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
