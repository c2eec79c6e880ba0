"""Done-when of the stack: the real server process, a token from the environment, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from examples.clients.python_client import ask

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(port: int) -> list[str]:
    script = Path(sys.executable).parent / "myagent-ws"
    start = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    return [*start, "server", "examples/weather_agent.py", "--port", str(port)]


@contextlib.asynccontextmanager
async def serving(output: Path) -> AsyncIterator[str]:
    """The server as a user starts it, every byte it writes going to `output`; SIGTERM at exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENT_WS_", "OPENAI_"))}
    env["MYAGENT_WS_TOKENS"] = SECRET
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *command(port), cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    try:
        base = f"127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:  # readiness: the port answers (the one wait in these tests)
                try:
                    async with http.get(f"http://{base}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "the server exited; see its output"
                    await asyncio.sleep(0.05)
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0


async def refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, **kwargs):
            pass
    return caught.value.response.status_code


async def receive(ws: Any, *events: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["event"] in events:
                return frame


MALFORMED = [  # requests aiohttp's parser refuses; each holds the token where a client put it
    f"GET /ws?token={SECRET} HTTP/9.9\r\nHost: x\r\n\r\n",
    f"GET /ws?token={SECRET}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    f"GET /ws?token={SECRET} HTTP/1.1 x\r\nHost: x\r\n\r\n",
    f"GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x7f\r\n\r\n",
]


async def test_e2e_server_with_a_token_from_the_environment(tmp_path: Path) -> None:
    output = tmp_path / "server.out"
    async with serving(output) as base:
        await client_flow(base)
        for request in MALFORMED:
            assert (await raw_request(base, request)).startswith(b"HTTP/1.0 400")
    printed = output.read_text(encoding="utf-8", errors="replace")
    assert '"event": "http_request"' in printed and '"event": "drained"' in printed
    assert SECRET not in printed
    bad = [json.loads(line) for line in printed.splitlines() if "bad_http_request" in line]
    assert len(bad) == len(MALFORMED) and all(b["status"] == 400 for b in bad)
    assert "Traceback" not in printed and '"exception"' not in printed  # hostile input, no bug


async def raw_request(base: str, request: str) -> bytes:
    """Send bytes as they are (no client library fixes them up) and read the status line."""
    host, port = base.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request.encode("latin-1"))
        async with asyncio.timeout(5):
            return await reader.readline()
    finally:
        writer.close()


async def client_flow(base: str) -> None:
    """/health open; 401 without or with a wrong token; header and ?token= runs; a flood."""
    async with aiohttp.ClientSession() as http, http.get(f"http://{base}/health") as health:
        assert health.status == 200
    assert await refused(f"ws://{base}/ws") == 401
    assert (
        await refused(f"ws://{base}/ws", additional_headers={"Authorization": "Bearer no"}) == 401
    )
    assert await refused(f"ws://{base}/ws?token=nope") == 401

    events = await ask(f"ws://{base}/ws", "查询上海天气", token=SECRET, timeout_s=10)
    assert events[-1]["event"] == "agent.final_answer" and "上海的天气" in events[-1]["content"]

    async with websockets.connect(f"ws://{base}/ws?token={SECRET}") as ws:
        await receive(ws, "system.connected")
        await ws.send(json.dumps({"event": "user.create_session"}))
        session_id = (await receive(ws, "agent.session_created"))["session_id"]
        message = {"event": "user.message", "session_id": session_id, "content": "查询北京天气"}
        await ws.send(json.dumps(message))
        assert "北京的天气" in (await receive(ws, "agent.final_answer"))["content"]

        await asyncio.gather(*(ws.send(json.dumps({"event": "user.ping"})) for _ in range(100)))
        answers = [await receive(ws, "system.pong", "agent.error") for _ in range(100)]
        limited = [a for a in answers if a["event"] == "agent.error"]
        assert limited and {a["code"] for a in limited} == {"rate_limited"}
        assert all(a["retry_after_s"] > 0 for a in limited)
        assert len(limited) < 100  # the burst got through

        await ws.send(json.dumps(message))  # still usable: user.message has its own allowance
        assert "北京的天气" in (await receive(ws, "agent.final_answer"))["content"]


HOSTILE = [  # each once leaked the token to the log (issue 13, finding 5)
    f"GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n {SECRET}\r\n\r\n",  # obs-fold
    f"GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\x01{SECRET}\r\n\r\n",
    f"GET /ws?tok%65n={SECRET} HTTP/1.1 x\r\nHost: x\r\n\r\n",
    f"GET /ws%253Ftoken%253D{SECRET} HTTP/1.1\r\nHost: x\r\n\r\n",
    f"GET /ws%3Ftoken%3D{SECRET} HTTP/1.1\r\nHost: x\r\n\r\n",
    f"GET /ws?x=1&tok%65n={SECRET} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
]


async def test_e2e_tokens_in_hostile_requests_never_reach_the_log(tmp_path: Path) -> None:
    output = tmp_path / "server.out"
    async with serving(output) as base:
        statuses = [(await raw_request(base, request)).split(b" ")[1] for request in HOSTILE]
        assert await refused(f"ws://{base}/ws?tok%65n={SECRET}") == 401  # only `token` is one
    printed = output.read_text(encoding="utf-8", errors="replace")
    assert SECRET not in printed, [line for line in printed.splitlines() if SECRET in line]
    assert b"101" not in statuses
    assert "Traceback" not in printed and '"exception"' not in printed
