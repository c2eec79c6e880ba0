"""The model-path load generator: C clients, each running whole agent turns one after another.

A turn is one user message: the agent's model call that asks for get_weather, the tool, and
the model call that streams the answer (bench.fake_model). Over a WebSocket (the ceiling and
myagent-ws) a turn is a `user.message` and ends with `agent.final_answer`; on ADK it is one
POST /run_sse and ends with the end of that response. Both keep their connection between
turns. Figures: the server's CPU ms per turn (every thread, ns-precise /proc schedstat),
turns/s, the time to the first text and to the turn's end.

Each client first opens `sessions` sessions and runs `history` turns in each (not measured):
then it runs `turns` measured turns, round-robin over its sessions, so a measured turn has
`history` earlier turns in its session (up to `history + turns / sessions`).
Only loopback targets; bounded in clients, turns and time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.loadgen import cpu_seconds, percentile

QUESTION = "北京天气如何？"
WARM_WITHIN_S = 600  # ADK runs 1,000 earlier turns of history at ~7 turns/s
_requests = itertools.count(1)  # request ids are never reused: a retried one is not run again


@dataclass
class TurnResult:
    clients: int
    history: int
    turns: int = 0
    errors: int = 0
    frames: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    first_text_s: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "clients": self.clients,
            "history": self.history,
            "turns": self.turns,
            "errors": self.errors,
            "frames_per_turn": round(self.frames / self.turns, 1) if self.turns else 0,
            "cpu_ms_per_turn": round(self.cpu_s / self.turns * 1e3, 3) if self.turns else None,
            "turns_per_s": round(self.turns / self.wall_s, 1) if self.wall_s else 0.0,
        }
        for name, values in (("first_text", self.first_text_s), ("turn_end", self.end_s)):
            for p in (50, 99):
                out[f"{name}_p{p}_ms"] = round(percentile(values, p) * 1e3, 3)
        return out


class Client(ABC):
    """One client of one server: open sessions, then run turns in them."""

    @abstractmethod
    async def open(self, sessions: int) -> None: ...

    @abstractmethod
    async def turn(self, index: int, result: TurnResult | None) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class WsClient(Client):
    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        self.http, self.url, self.headers = http, url, headers
        self.sessions: list[str] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self, sessions: int) -> None:
        self.ws = ws = await self.http.ws_connect(
            self.url, headers=self.headers, max_msg_size=0, compress=0
        )
        await ws.receive_str()  # system.connected
        for _ in range(sessions):
            await ws.send_str('{"event": "user.create_session"}')
            created = json.loads(await ws.receive_str())
            if created.get("event") != "agent.session_created":
                raise RuntimeError(f"no session: {created}")
            self.sessions.append(created["session_id"])

    async def turn(self, index: int, result: TurnResult | None) -> None:
        assert self.ws is not None
        session = self.sessions[index % len(self.sessions)]
        message = {"event": "user.message", "session_id": session, "content": QUESTION}
        sent = time.perf_counter()
        await self.ws.send_str(json.dumps({**message, "request_id": str(next(_requests))}))
        first, frames = None, 0
        while True:
            data = await self.ws.receive_str()
            frames += 1
            if first is None and '"agent.partial_answer"' in data:
                first = time.perf_counter()
            if '"agent.final_answer"' in data or '"agent.error"' in data:
                break
        end = time.perf_counter()
        if result is not None:
            result.frames += frames
            if '"agent.error"' in data or first is None:
                result.errors += 1
                return
            result.turns += 1
            result.first_text_s.append(first - sent)
            result.end_s.append(end - sent)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class AdkClient(Client):
    """ADK's api_server: a session is created over REST, a turn is POST /run_sse (SSE)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, user: str) -> None:
        self.http, self.base, self.user = http, base, user
        self.sessions: list[str] = []

    async def open(self, sessions: int) -> None:
        for _ in range(sessions):
            url = f"{self.base}/apps/weather/users/{self.user}/sessions"
            async with self.http.post(url, json={}) as response:
                response.raise_for_status()
                self.sessions.append((await response.json())["id"])

    async def turn(self, index: int, result: TurnResult | None) -> None:
        body = {
            "app_name": "weather",
            "user_id": self.user,
            "session_id": self.sessions[index % len(self.sessions)],
            "new_message": {"role": "user", "parts": [{"text": QUESTION}]},
            "streaming": True,
        }
        sent = time.perf_counter()
        first, frames, failed = None, 0, False
        async with self.http.post(f"{self.base}/run_sse", json=body) as response:
            failed = response.status != 200
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                frames += 1
                if first is None and b'"text"' in line:
                    first = time.perf_counter()
                if b'"error' in line[:40]:
                    failed = True
        end = time.perf_counter()
        if result is not None:
            result.frames += frames
            if failed or first is None:
                result.errors += 1
                return
            result.turns += 1
            result.first_text_s.append(first - sent)
            result.end_s.append(end - sent)

    async def close(self) -> None:
        return None


async def run_turns(
    make_client: Callable[[aiohttp.ClientSession, int], Client],
    pid: int,
    clients: int,
    *,
    turns: int,
    history: int = 0,
    sessions: int = 1,
    within_s: float = 120.0,
    cpu: Callable[[int], float] = cpu_seconds,
) -> TurnResult:
    """Open the clients and their sessions, warm them up to `history` (within WARM_WITHIN_S),
    then measure for up to `turns` turns each or `within_s`; `cpu(pid)` is read right before
    the first measured turn and right after the last."""
    result = TurnResult(clients, history)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        members = [make_client(http, n) for n in range(clients)]
        async with asyncio.timeout(WARM_WITHIN_S):  # opening and warming up are bounded too
            await asyncio.gather(*(c.open(sessions) for c in members))
            for earlier in range(history * sessions):
                await asyncio.gather(*(c.turn(earlier, None) for c in members))
        deadline = time.perf_counter() + within_s

        async def conversation(client: Client) -> None:
            for index in range(turns):
                if time.perf_counter() > deadline:
                    return
                await client.turn(index, result)

        cpu_before, started = cpu(pid), time.perf_counter()
        outcomes = await gather_bounded(conversation, members, within_s + 30)
        result.wall_s = time.perf_counter() - started
        result.cpu_s = cpu(pid) - cpu_before
        result.errors += sum(isinstance(o, BaseException) for o in outcomes)
        await asyncio.gather(*(c.close() for c in members), return_exceptions=True)
    return result


async def gather_bounded(
    run: Callable[[Client], Awaitable[None]], members: list[Client], within_s: float
) -> list[Any]:
    async with asyncio.timeout(within_s):
        return await asyncio.gather(*(run(c) for c in members), return_exceptions=True)


def ws_client(port: int, token: str | None) -> Callable[[aiohttp.ClientSession, int], Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return lambda http, _: WsClient(http, f"http://127.0.0.1:{port}/ws", headers)


def adk_client(port: int) -> Callable[[aiohttp.ClientSession, int], Client]:
    return lambda http, n: AdkClient(http, f"http://127.0.0.1:{port}", f"user{n}")
