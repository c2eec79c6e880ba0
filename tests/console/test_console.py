"""The web console at `/`, end to end in real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from tests.support.system import require, service_process

ROOT = Path(__file__).resolve().parents[2]
WEATHER = ROOT / "examples" / "weather_agent.py"
SLOW = ROOT / "tests" / "deploy" / "slow_agent.py"  # its tool sleeps SLOW_TOOL_S seconds
PREAMBLE = Path(__file__).parent / "preamble_agent.py"  # its model speaks before the tool call
MARKDOWN_AGENT = Path(__file__).parent / "markdown_agent.py"  # its model answers in Markdown
SHOTS = ROOT / "test-artifacts" / "console"
CHROMIUM_ARGS = [  # no sandbox as root; nothing that phones home on a closed network
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = require("chromium", "/usr/bin/chromium")
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


SESSION_ID = "sessionStorage.getItem('myagent.session_id')"


async def ask(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.keyboard.press("Enter")


async def logged_frames(page: Page) -> list[dict[str, Any]]:
    """The frames the page received, as its event log pane shows them (opened if need be)."""
    if not await page.locator("#log-pane").evaluate("(pane) => pane.open"):
        await page.click("#log-pane summary")
        await expect(page.locator("#log")).not_to_be_empty()  # filled on the toggle event
    lines = (await page.locator("#log").text_content() or "").splitlines()
    return [json.loads(line[2:]) for line in lines if line.startswith("< ")]


async def shown_seqs(page: Page) -> list[int]:
    """The seqs of the current session's events, in the order the page took them."""
    session_id = await page.evaluate(SESSION_ID)
    frames = await logged_frames(page)
    return [f["seq"] for f in frames if "seq" in f and f.get("session_id") == session_id]


async def partial_answers(page: Page) -> int:
    frames = await logged_frames(page)
    return sum(f["event"] == "agent.partial_answer" for f in frames)


@contextlib.asynccontextmanager
async def console(
    browser: Browser,
    agent: Path,
    tmp_path: Path,
    *,
    viewport: ViewportSize | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Page]:
    """The console page of a service serving `agent`, with `env` added to its environment."""
    async with service_process(agent, tmp_path, **(env or {})) as port:
        page = await browser.new_page(viewport=viewport)
        await page.goto(f"http://127.0.0.1:{port}/")  # the page itself never needs a token
        yield page


async def test_console_asks_the_weather_agent(browser: Browser, tmp_path: Path) -> None:
    async with service_process(WEATHER, tmp_path) as port:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"http://127.0.0.1:{port}/")
        await expect(page.locator("#conn")).to_have_text("connected")
        await expect(page.locator("#agent")).to_have_value("weather-assistant")
        await expect(page.get_by_text("new session with weather-assistant")).to_be_visible()
        await ask(page, "查询北京天气")
        card = page.locator(".tool")
        await expect(card).to_have_count(1)
        await expect(card.locator(".tool-head")).to_contain_text("get_weather")
        await expect(card).to_have_attribute("data-status", "success")
        await expect(card.locator(".tool-args")).to_contain_text('"city":"北京"')
        answer = page.locator(".answer:not(.streaming)")
        await expect(answer).to_contain_text("北京的天气：晴朗，25°C")
        await expect(page.locator("#run-state")).to_have_text("idle")
        await ask(page, "**bold** <img src=x onerror=alert(1)> [link](javascript:alert(1))")
        await expect(page.locator(".answer strong")).to_have_text("bold")
        assert await page.locator(".answer img, .answer a").count() == 0  # text, never HTML
        seqs = await shown_seqs(page)
        assert seqs == list(range(1, len(seqs) + 1))
        assert await partial_answers(page) > 1  # the answer streamed in deltas first
        await page.screenshot(path=SHOTS / "answer.png", full_page=True)
        await page.fill("#input", "北京")  # Enter that confirms an IME composition must not send
        await page.dispatch_event("#input", "keydown", {"key": "Enter", "isComposing": True})
        assert await page.locator(".bubble.user").count() == 2
        assert not errors


MARKDOWN = """# Title
line one
line two <img src=x onerror=alert(1)> <script>alert(2)</script>
- a *b*
- [ok](https://example.com/) [bad](javascript:alert(3))
1. one
2. two
```
<b>code</b>
```"""


async def test_console_markdown_is_rendered_as_text_and_safe_elements(
    browser: Browser, tmp_path: Path
) -> None:
    async with console(browser, WEATHER, tmp_path) as page:
        html = await page.evaluate(
            """async (text) => {
                const { renderMarkdown } = await import("/static/markdown.js");
                const div = document.createElement("div");
                div.append(renderMarkdown(text));
                return div.innerHTML;
            }""",
            MARKDOWN,
        )
    assert html == (  # markdown-it's output; agent text escaped, the javascript: link left as text
        "<h1>Title</h1>\n<p>line one<br>\nline two &lt;img src=x onerror=alert(1)&gt; "
        "&lt;script&gt;alert(2)&lt;/script&gt;</p>\n"
        '<ul>\n<li>a <em>b</em></li>\n<li><a href="https://example.com/" rel="noopener noreferrer" '
        'target="_blank">ok</a> [bad](javascript:alert(3))</li>\n</ul>\n'
        "<ol>\n<li>one</li>\n<li>two</li>\n</ol>\n<pre><code>&lt;b&gt;code&lt;/b&gt;\n</code></pre>\n"
    )


async def test_console_renders_a_markdown_answer_as_table_lists_and_quote(
    browser: Browser, tmp_path: Path
) -> None:
    async with console(browser, MARKDOWN_AGENT, tmp_path) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await ask(page, "weather?")
        answer = page.locator(".answer:not(.streaming)")
        await expect(answer).to_have_count(1)
        await expect(answer.locator("table thead th")).to_have_text(["city", "sky"])
        await expect(answer.locator("table tbody tr")).to_have_count(2)
        await expect(answer.locator("table tbody tr").first.locator("td")).to_have_text(
            ["Beijing", "sunny"]
        )
        await expect(answer.locator("ul > li > ul > li")).to_have_text(["Beijing", "Tokyo"])
        await expect(answer.locator("blockquote")).to_have_text("Take an umbrella in Paris.")
        assert await answer.locator("script").count() == 0
        await expect(answer).to_contain_text("<script>alert(1)</script>")  # shown as text
        await expect(answer).to_contain_text("[click me](javascript:alert(2))")
        links = answer.locator("a")
        await expect(links).to_have_count(1)  # only the http(s) one
        await expect(links).to_have_attribute("href", "https://example.com/")
        await page.screenshot(path=SHOTS / "markdown.png", full_page=True)
        assert not errors


async def test_console_shows_the_answer_below_the_tool_card_it_used(
    browser: Browser, tmp_path: Path
) -> None:
    async with console(browser, PREAMBLE, tmp_path) as page:
        await ask(page, "weather in Beijing?")
        await expect(page.locator(".answer:not(.streaming)")).to_have_text(
            "It is sunny in Beijing."
        )
        parts = page.locator(".run > *")
        await expect(parts).to_have_count(3)
        assert await parts.evaluate_all("(els) => els.map((e) => e.className)") == [
            "interim",
            "tool",
            "answer",
        ]
        await expect(parts.first).to_have_text("Let me look that up.")  # what it said is kept


async def test_console_keeps_the_run_state_and_composer_in_view_on_a_phone(
    browser: Browser, tmp_path: Path
) -> None:
    async with console(browser, WEATHER, tmp_path, viewport={"width": 390, "height": 844}) as page:
        await expect(page.get_by_text("new session with weather-assistant")).to_be_visible()
        for asked in range(1, 6):  # more than a screen of chat
            await ask(page, "查询北京天气")
            await expect(page.locator(".answer:not(.streaming)")).to_have_count(asked)
        await page.screenshot(path=SHOTS / "phone.png")
        assert await page.evaluate("document.documentElement.scrollHeight") == 844  # no page scroll
        assert await page.evaluate("document.documentElement.scrollWidth") == 390
        for selector in ("#conn", "#run-state", "#input", "#send", "#stop"):
            box = await page.locator(selector).bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844, selector
        last = await page.locator(".answer").last.bounding_box()
        composer = await page.locator("#status").bounding_box()
        assert last is not None and composer is not None
        assert last["y"] + last["height"] <= composer["y"]  # the newest answer scrolled into view


async def test_console_refused_message_leaves_the_run_idle(
    browser: Browser, tmp_path: Path
) -> None:
    limits = {
        "MYAGENT_WS_RATE_LIMIT__MESSAGES_PER_S": "0.01",
        "MYAGENT_WS_RATE_LIMIT__MESSAGES_BURST": "1",
    }
    async with console(browser, WEATHER, tmp_path, env=limits) as page:
        await ask(page, "查询北京天气")
        await expect(page.locator(".answer:not(.streaming)")).to_have_count(1)
        await ask(page, "查询上海天气")
        await expect(page.locator(".bubble.error")).to_contain_text("[rate_limited]")
        await expect(page.locator("#run-state")).to_have_text("idle")
        await expect(page.locator("#stop")).to_be_disabled()


async def test_console_stop_interrupts_a_slow_tool(browser: Browser, tmp_path: Path) -> None:
    async with console(browser, SLOW, tmp_path, env={"SLOW_TOOL_S": "30"}) as page:
        await expect(page.get_by_text("new session with slow")).to_be_visible()
        await ask(page, "slow report on 天气")
        await expect(page.locator(".tool")).to_have_attribute("data-status", "running")
        await expect(page.locator("#run-state")).to_have_text("running")
        await page.screenshot(path=SHOTS / "running.png", full_page=True)
        await page.click("#stop")
        await expect(page.locator("#run-state")).to_have_text("interrupted")
        await expect(page.locator(".tool-status")).to_have_text("cancelled")
        await expect(page.locator(".interrupted")).to_be_visible()
        await page.screenshot(path=SHOTS / "interrupted.png", full_page=True)
        await ask(page, "slow report on rain")
        await expect(page.locator(".tool").last).to_have_attribute("data-status", "running")
        old = await page.evaluate(SESSION_ID)
        await page.click("#log-pane summary")  # the event log, as a person would read it
        await page.click("#new-session")  # closes the old session: its run is cancelled
        await page.wait_for_function(
            "(old) => document.getElementById('log').textContent.split('\\n').some((line) =>"
            " line.startsWith('< ') && ((f) => f.event === 'agent.session_closed'"
            " && f.session_id === old)(JSON.parse(line.slice(2))))",
            arg=old,
        )
        await expect(page.get_by_text("new session with slow")).to_be_visible()
        await expect(page.locator("#run-state")).to_have_text("idle")
        assert await page.locator(".tool, .interrupted").count() == 0  # nothing of the old run
        for _ in range(17):  # more than sessions.max_per_connection: each closes the one before
            before = await page.evaluate(SESSION_ID)
            await page.click("#new-session")
            await page.wait_for_function(
                f"(before) => ![null, before].includes({SESSION_ID})", arg=before
            )
        await expect(page.locator(".bubble.error")).to_have_count(0)


async def proxy(listen_port: int, target_port: int, cut: asyncio.Event) -> None:
    """A TCP proxy to the service whose open connections all drop when `cut` is set."""
    live: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        live.update((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", listen_port)
    async with server:
        while True:
            await cut.wait()
            cut.clear()
            for writer in list(live):  # the server side drops every socket, no close frame
                writer.transport.abort()
            live.clear()


async def test_console_resumes_after_the_socket_drops_without_losing_an_event(
    browser: Browser, tmp_path: Path
) -> None:
    from tests.support.system import free_port

    async with service_process(SLOW, tmp_path, SLOW_TOOL_S="1.5") as port:
        front, cut = free_port(), asyncio.Event()
        relay = asyncio.create_task(proxy(front, port, cut))
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{front}/")
            await expect(page.get_by_text("new session with slow")).to_be_visible()
            await ask(page, "slow report on 天气")
            await expect(page.locator(".tool")).to_have_attribute("data-status", "running")
            cut.set()  # mid-run: the tool is still sleeping on the server
            await expect(page.locator("#conn")).not_to_have_text("connected")
            await page.screenshot(path=SHOTS / "dropped.png", full_page=True)
            await expect(page.get_by_text("session resumed")).to_be_visible(timeout=15000)
            await expect(page.locator(".answer:not(.streaming)")).to_contain_text("report on")
            await expect(page.locator(".tool")).to_have_count(1)
            await expect(page.locator(".answer")).to_have_count(1)
            seqs = await shown_seqs(page)
            assert seqs == list(range(1, len(seqs) + 1))  # every event once, in order
            await page.screenshot(path=SHOTS / "resumed.png", full_page=True)
            await page.reload()  # a reload resumes the same session and shows it again, once
            await expect(page.get_by_text("session resumed")).to_be_visible()
            await expect(page.locator(".answer:not(.streaming)")).to_contain_text("report on")
            await expect(page.locator(".tool")).to_have_count(1)
            assert await shown_seqs(page) == seqs  # the whole held session, each event once
            await expect(page.locator(".bubble.user")).to_have_text(["slow report on 天气"])
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay


async def test_console_needs_the_token_when_the_server_has_one(
    browser: Browser, tmp_path: Path
) -> None:
    async with console(browser, WEATHER, tmp_path, env={"MYAGENT_WS_TOKENS": "s3cret"}) as page:
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await expect(page.get_by_text("connection refused").first).to_be_visible()
        await page.screenshot(path=SHOTS / "refused.png", full_page=True)
        await page.fill("#token", "s3cret")
        await page.click("#token-form button")
        await expect(page.locator("#conn")).to_have_text("connected")
        await ask(page, "查询上海天气")
        await expect(page.locator(".answer:not(.streaming)")).to_contain_text("上海的天气")
        assert "token=s3cret" in sockets[-1]  # the socket that connected
        assert await page.evaluate("sessionStorage.getItem('myagent.token')") == "s3cret"
        await page.screenshot(path=SHOTS / "with-token.png", full_page=True)
    assert os.environ.get("MYAGENT_WS_TOKENS") is None  # the token stayed in the child
    await expect(page.get_by_text("the server cannot be reached")).to_be_visible(timeout=20000)
    await expect(page.locator("#conn")).to_contain_text("unreachable")
    assert await page.get_by_text("connection refused").count() == 1  # said once, not per retry
