"""The console's approval card, end to end in real headless Chromium: the business agent of
config/business.yaml, whose send_email waits for a person."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.console.test_console import SHOTS, ask, browser, shown_seqs
from tests.support.system import service_process

__all__ = ["browser"]  # the fixture
ROOT = Path(__file__).resolve().parents[2]
BUSINESS = ROOT / "config" / "business.yaml"


async def test_console_approval_card_approves_a_call_and_the_answer_appears(
    browser: Browser, tmp_path: Path
) -> None:
    async with service_process(None, tmp_path, config=BUSINESS) as port:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"http://127.0.0.1:{port}/")
        await expect(page.locator("#agent")).to_have_value("business-assistant")
        await expect(page.get_by_text("new session with business-assistant")).to_be_visible()
        await ask(page, "Please send an email to bob@example.com about the meeting")
        card = page.locator(".approval")
        await expect(card).to_be_visible()
        await expect(card.locator(".approval-title")).to_have_text("approve send_email?")
        await expect(card.locator(".approval-args")).to_contain_text('"to": "bob@example.com"')
        await expect(card.locator(".approval-time")).to_contain_text("left")
        tool = page.locator(".tool")
        await expect(tool).to_have_attribute("data-status", "awaiting")
        await expect(tool.locator(".tool-status")).to_have_text("waiting for approval")
        await page.screenshot(path=SHOTS / "approval.png", full_page=True)
        await card.locator("button.approve").click()
        await expect(tool).to_have_attribute("data-status", "success")
        await expect(card).to_have_count(0)
        answer = page.locator(".answer:not(.streaming)")
        await expect(answer).to_contain_text("Email sent to bob@example.com")
        await expect(page.locator("#run-state")).to_have_text("idle")
        await page.click("#log-pane summary")  # the frames the page sent, as its log shows them
        await expect(page.locator("#log")).not_to_be_empty()
        lines = (await page.locator("#log").text_content() or "").splitlines()
        sent = [json.loads(line[2:]) for line in lines if line.startswith("> ")]
        assert [f["approved"] for f in sent if f["event"] == "user.approve"] == [True]
        await page.click("#log-pane summary")  # closed again
        seqs = await shown_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1))
        await ask(page, "Send an email to eve@example.com right now")
        second = page.locator(".approval")
        await expect(second).to_be_visible()
        await second.locator(".approval-reason").fill("not to eve")
        await second.locator("button.refuse").click()
        refused = page.locator(".tool").nth(1)
        await expect(refused).to_have_attribute("data-status", "denied")
        await expect(refused.locator(".tool-status")).to_have_text("refused")
        await expect(refused.locator(".tool-result")).to_contain_text("not to eve")
        await page.screenshot(path=SHOTS / "approval-refused.png", full_page=True)
        assert not errors
