"""Load in the suite (RELIABILITY L1, L3): many sockets and runs at once, counted exactly."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from myagent import create_react_agent
from myagent.offline import OfflineLLM
from service.app import create_app
from tests.service.conftest import UNLIMITED, WeatherTool, create_session, receive_until, settings

TOKEN = "load-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def gauge(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


async def counts(client) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    health = await (await client.get("/health")).json()
    metrics = await (await client.get("/metrics")).text()
    return health["active_connections"], gauge(metrics, "myagent_ws_active_connections")


async def test_200_idle_authenticated_sockets_stay_open_and_are_counted(aiohttp_client) -> None:
    limits = {**UNLIMITED, "connections_per_identity": 1000}
    config = settings(auth={"enabled": True, "tokens": [TOKEN]}, rate_limit=limits)
    client = await aiohttp_client(create_app(config, {"weather": lambda: None}))  # no runs here
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # no pool cap
    url = client.make_url("/ws")
    sockets = await asyncio.gather(*(http.ws_connect(url, headers=AUTH) for _ in range(200)))
    for ws in sockets:
        assert (await ws.receive_json())["event"] == "system.connected"
    assert await counts(client) == (200, 200)
    for ws in sockets:
        await ws.send_json({"event": "user.ping"})
    for ws in sockets:  # every socket is still open and answers
        assert (await ws.receive_json())["event"] == "system.pong"
    await asyncio.gather(*(ws.close() for ws in sockets))
    await http.close()
    assert all(ws.close_code == 1000 for ws in sockets)
    for _ in range(500):  # the handlers' cleanup runs just after the close handshake
        if await counts(client) == (0, 0):
            break
        await asyncio.sleep(0.01)
    assert await counts(client) == (0, 0)


async def test_200_sessions_running_at_once_keep_seq_order_and_time(aiohttp_client) -> None:
    def agent():  # type: ignore[no-untyped-def]
        return create_react_agent("weather", tools=[WeatherTool()], llm=OfflineLLM(chunk_chars=1))

    client = await aiohttp_client(create_app(settings(), {"weather": agent}))
    sockets = [await client.ws_connect("/ws") for _ in range(50)]
    for ws in sockets:
        await ws.receive_json()
    sessions = [(ws, await create_session(ws)) for ws in sockets for _ in range(4)]
    for ws, sid in sessions:
        await ws.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})

    async def collect(ws) -> list[dict]:  # type: ignore[no-untyped-def]
        frames: list[dict] = []
        while sum(f["event"] == "agent.final_answer" for f in frames) < 4:
            frames += await receive_until(ws, "agent.final_answer", within_s=30)
        return frames

    per_socket = await asyncio.gather(*(collect(ws) for ws in sockets))
    total = 0
    for ws, frames in zip(sockets, per_socket, strict=True):
        for sid in {f["session_id"] for f in frames}:
            mine = [f for f in frames if f["session_id"] == sid]
            total += len(mine)
            assert [f["seq"] for f in mine] == list(range(2, 2 + len(mine)))
            assert mine[-1]["event"] == "agent.final_answer"
            assert "北京的天气" in mine[-1]["content"]
            stamps = [f["timestamp"] for f in mine]
            assert stamps == sorted(stamps)
        await ws.close()
    assert total > 200 * 10
