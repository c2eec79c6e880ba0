"""SIGTERM drains: 503 on /health, system.shutdown, runs end, close 1001, exit 0 in time.

And heartbeats: a peer that stops answering pings is closed, its session kept for resume.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import websockets
from aiohttp import WSMsgType

from service.app import create_app
from service.keys import sessions_key
from tests.service.conftest import create_session, offline_weather, settings
from tests.support.system import free_port

AGENT = Path(__file__).with_name("slow_agent.py")
GRACE_S = 1.5


async def start_server(tmp_path: Path, tool_s: float) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {**os.environ, "SLOW_TOOL_S": str(tool_s), "MYAGENT_WS_SERVER__SHUTDOWN_GRACE_S":
           str(GRACE_S), "MYAGENT_WS_LOGGING__FORMAT": "json"}  # fmt: skip
    env.pop("OPENAI_API_KEY", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "server", str(AGENT), "--port", str(port),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).status == 200:
                    return process, port
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # still starting


@pytest.mark.parametrize(("tool_s", "ending", "signum"), [
    (0.3, "agent.final_answer", signal.SIGTERM),
    (30, "agent.interrupted", signal.SIGTERM),
    (30, "agent.interrupted", signal.SIGINT),  # Ctrl-C: the same drain
])  # fmt: skip
async def test_sigterm_drains_runs_then_closes_1001_and_exits_0(
    tmp_path: Path, tool_s: float, ending: str, signum: signal.Signals
) -> None:
    process, port = await start_server(tmp_path, tool_s)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert json.loads(await ws.recv())["event"] == "system.connected"
            await ws.send(json.dumps({"event": "user.create_session"}))
            sid = json.loads(await ws.recv())["session_id"]
            await ws.send(json.dumps({"event": "user.message", "session_id": sid,
                                      "content": "slow report on 天气"}))  # fmt: skip
            while json.loads(await ws.recv())["event"] != "agent.tool_call":
                pass
            started = time.monotonic()
            process.send_signal(signum)
            async with aiohttp.ClientSession() as http:
                health = await http.get(f"http://127.0.0.1:{port}/health")
                assert (health.status, await health.json()) == (503, {"status": "draining"})
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"ws://127.0.0.1:{port}/ws")
                assert refused.value.status == 503  # new clients go elsewhere
            events = []
            with pytest.raises(websockets.ConnectionClosedOK):
                while True:
                    events.append(json.loads(await ws.recv())["event"])
            assert ws.close_code == 1001
        names = [e for e in events if e != "agent.partial_answer"]
        assert names[0] == "system.shutdown" and names[-1] == ending, events
        assert await asyncio.wait_for(process.wait(), GRACE_S + 8) == 0
        assert time.monotonic() - started < GRACE_S + 3  # the grace, then at most the close
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_peer_that_stops_answering_pings_is_closed_and_session_kept(aiohttp_client) -> None:
    app = create_app(settings(server={"heartbeat_s": 0.2}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/ws", autoping=False)  # pings arrive; no pong goes back
    await ws.receive_json()
    sid = await create_session(ws)
    started = time.monotonic()
    async with asyncio.timeout(5):
        while (msg := await ws.receive()).type in (WSMsgType.PING, WSMsgType.TEXT):
            pass
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert time.monotonic() - started < 0.2 * 1.5 + 0.5
    assert sid in app[sessions_key].sessions  # resumable: on_disconnect is "continue"
    await ws.close()


IDLE_S = 0.4


async def test_idle_socket_is_closed_1000_and_its_session_kept(aiohttp_client) -> None:
    app = create_app(settings(server={"idle_timeout_s": IDLE_S}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/ws")  # answers pings: alive, but sends nothing
    await ws.receive_json()
    started = time.monotonic()  # the server sees the frame below after this
    sid = await create_session(ws)
    async with asyncio.timeout(5):
        msg = await ws.receive()
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1000, f"idle for {IDLE_S:g} s")
    assert IDLE_S <= time.monotonic() - started < IDLE_S + 1
    assert sid in app[sessions_key].sessions
    await ws.close()


async def test_pings_and_running_runs_keep_a_socket_open(aiohttp_client) -> None:
    from myagent.llm import AssistantTurn
    from tests.service.conftest import GateTool, receive_until, scripted

    gate_tool = GateTool(gate=asyncio.Event(), started=asyncio.Event(), cancelled=asyncio.Event())
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done", tools=[gate_tool])
    app = create_app(settings(server={"idle_timeout_s": IDLE_S}), {"weather": factory})
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    for _ in range(4):  # a browser's keep-alive: 4 x IDLE_S / 2 > IDLE_S
        await ws.send_json({"event": "user.ping"})
        assert (await ws.receive_json())["event"] == "system.pong"
        await asyncio.sleep(IDLE_S / 2)  # the point is time passing
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    await asyncio.sleep(IDLE_S * 2)  # a run longer than the idle timeout, no client frame
    gate_tool.gate.set()
    assert (await receive_until(ws))[-1]["content"] == "done"
    async with asyncio.timeout(5):  # idle again from now on
        assert (await ws.receive()).type is WSMsgType.CLOSE
    await ws.close()


async def test_draining_server_starts_no_new_session_or_run(aiohttp_client) -> None:
    from myagent.llm import AssistantTurn
    from service.app import drain
    from tests.service.conftest import GateTool, receive_until, scripted

    gate_tool = GateTool(gate=asyncio.Event(), started=asyncio.Event(), cancelled=asyncio.Event())
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done", tools=[gate_tool])
    app = create_app(settings(server={"shutdown_grace_s": 10}), {"weather": factory})
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    draining = asyncio.create_task(drain(app))
    assert (await receive_until(ws, "system.shutdown"))[-1]["retry_after_s"] == 10
    for frame in ({"event": "user.create_session"}, {"event": "user.message", "content": "more"}):
        await ws.send_json({**frame, "session_id": sid})
        error = (await receive_until(ws, "agent.error"))[-1]
        assert (error["code"], error["retry_after_s"]) == ("shutting_down", 10)
    gate_tool.gate.set()  # the run going finishes within the grace
    assert (await receive_until(ws))[-1]["content"] == "done"
    await asyncio.wait_for(draining, 5)
    assert (await ws.receive()).data == 1001
