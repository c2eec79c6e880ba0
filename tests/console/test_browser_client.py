"""The seed's HTML client, served by a dev server on another loopback port, in real Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import Browser, expect

from tests.console.test_console import browser as browser  # the fixture
from tests.support.system import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "examples" / "clients" / "browser_client.html"


@contextlib.asynccontextmanager
async def make_run(port: int) -> AsyncIterator[None]:
    """The server as `make run` starts it: the repo's config, the weather agent, loopback."""
    script = Path(sys.executable).parent / "myagent-ws"
    start = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENT_WS_", "OPENAI_"))}
    process = await asyncio.create_subprocess_exec(
        *start, "server", "examples/weather_agent.py", "--host", "127.0.0.1", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status == 200:
                        break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "the server exited"
                    await asyncio.sleep(0.05)  # still starting
        yield
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


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
    service_port, page_port = free_port(), free_port()
    async with make_run(service_port), dev_server(page_port):
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
