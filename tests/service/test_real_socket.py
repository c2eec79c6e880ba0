"""Through a real TCP socket with the `websockets` library: the seed's Python client flow."""

from __future__ import annotations

import json

import websockets

from examples.clients.python_client import ask
from service.app import create_app
from tests.service.conftest import offline_weather, settings


async def test_seed_python_client_gets_tool_call_and_final_answer(aiohttp_server, capsys) -> None:
    server = await aiohttp_server(create_app(settings(), {"weather": offline_weather}))
    events = await ask(f"ws://127.0.0.1:{server.port}", "查询上海天气", timeout_s=10)
    calls = [e for e in events if e["event"] == "agent.tool_call"]
    assert [c["metadata"]["tool"] for c in calls] == ["get_weather"]
    assert events[-1]["event"] == "agent.final_answer"
    assert "上海的天气" in events[-1]["content"]
    printed = capsys.readouterr().out
    assert "agent.tool_call: get_weather" in printed and "agent.final_answer: 上海的天气" in printed


async def test_websockets_client_resumes_nothing_missing_on_same_connection(aiohttp_server) -> None:
    server = await aiohttp_server(create_app(settings(), {"weather": offline_weather}))
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        assert json.loads(await ws.recv())["event"] == "system.connected"
        await ws.send(json.dumps({"event": "user.create_session", "request_id": "c"}))
        created = json.loads(await ws.recv())
        assert created["request_id"] == "c" and created["seq"] == 1
        await ws.send(json.dumps({"event": "user.ping"}))
        assert json.loads(await ws.recv())["event"] == "system.pong"
