"""The seed's HTML client, served by a dev server on another loopback port, in real Chromium."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from playwright.async_api import Browser, expect

from tests.console.test_console import browser as browser  # the fixture
from tests.support.system import free_port, service_process

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "examples" / "clients" / "browser_client.html"
WEATHER = ROOT / "examples" / "weather_agent.py"


@contextlib.asynccontextmanager
async def dev_server(port: int) -> AsyncIterator[None]:
    """A front-end dev server (as Vite's on :5173 would) serving the seed's page."""

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_browser_client_from_a_dev_server_gets_its_final_answer(browser: Browser) -> None:
    page_port = free_port()
    # as `make run` starts it: from the repo, so config/server.yaml applies (a loopback bind)
    async with service_process(WEATHER, ROOT) as service_port, dev_server(page_port):
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"http://localhost:{page_port}/")  # Origin: http://localhost:<port>
        await page.fill("#url", f"ws://127.0.0.1:{service_port}/ws")
        await page.click("#connect")
        await expect(page.locator("#send")).to_be_enabled()  # agent.session_created came
        await page.click("#send")  # 查询北京天气, the page's own message
        log = page.locator("#log")
        await expect(log).to_contain_text("tool_call get_weather", timeout=15_000)
        await expect(log).to_contain_text("agent.final_answer 北京的天气：晴朗，25°C")
        assert "closed" not in await log.inner_text()
        assert not errors
