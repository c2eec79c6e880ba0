"""One huge user.message must not freeze the server: a bystander's ping stays fast meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from service.settings import ServerSettings
from tests.support.system import service_process

ROOT = Path(__file__).resolve().parents[2]
WEATHER = ROOT / "examples" / "weather_agent.py"
MAX_BYTES = ServerSettings().max_message_bytes
PING_LIMIT_S = 0.1  # the threshold for a bystander's round trip
MAX_PINGS = 2000  # bounded: the big message's work is over long before this


def big_message(session_id: str) -> str:
    """A user.message frame of max_message_bytes - 1 bytes that names the weather tool."""
    frame = {"event": "user.message", "session_id": session_id, "content": "天气 "}
    size = len(json.dumps(frame, ensure_ascii=False).encode())
    frame["content"] += "x" * (MAX_BYTES - 1 - size)
    text = json.dumps(frame, ensure_ascii=False)
    assert len(text.encode()) == MAX_BYTES - 1
    return text


async def connect(http: aiohttp.ClientSession, port: int) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws", max_msg_size=0)
    assert (await ws.receive_json())["event"] == "system.connected"
    return ws


async def new_session(ws: aiohttp.ClientWebSocketResponse) -> str:
    await ws.send_json({"event": "user.create_session"})
    while (frame := await ws.receive_json())["event"] != "agent.session_created":
        pass
    return str(frame["session_id"])


async def ping(ws: aiohttp.ClientWebSocketResponse) -> float:
    started = time.perf_counter()
    await ws.send_json({"event": "user.ping"})
    while (await ws.receive_json())["event"] != "system.pong":
        pass
    return time.perf_counter() - started


async def test_huge_message_naming_a_tool_keeps_a_bystanders_ping_fast(tmp_path: Path) -> None:
    async with (
        service_process(WEATHER, tmp_path) as port,
        aiohttp.ClientSession() as http,
        asyncio.timeout(30),
    ):
        sender, bystander = await connect(http, port), await connect(http, port)
        frame = big_message(await new_session(sender))
        await ping(bystander)  # warm
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def watch_sender() -> None:
            """Until the big message's CPU-bound work is done: its tool result, or a refusal."""
            await sender.send_str(frame)
            while True:
                event = json.loads(await sender.receive_str())
                if event["event"] in ("agent.tool_result", "agent.error"):
                    outcome.set_result(event.get("code") or event["metadata"]["status"])
                    return

        watcher = asyncio.create_task(watch_sender())
        rtts = []
        while not outcome.done() and len(rtts) < MAX_PINGS:
            rtts.append(await ping(bystander))
        rtts.append(await ping(bystander))  # and once the work is done
        await watcher
    assert outcome.result() in ("success", "message_too_large"), outcome.result()
    assert max(rtts) < PING_LIMIT_S, f"slowest of {len(rtts)} pings: {max(rtts):.3f} s"
