"""A load generator that speaks the protocol: C connections, M messages each, in turn.

It measures server->client events/s, the latency from user.message to the first event and to
agent.final_answer, errors, and the server's CPU seconds per event (its threads' schedstat).
Only loopback targets; bounded in connections, messages and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

_threads: dict[tuple[int, str], int] = {}  # the last CPU seen of each thread, nanoseconds


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads (schedstat: nanoseconds, not 10 ms ticks). A thread
    that ended counts with the CPU it had when last seen: without it, a server whose pool
    threads come and go (ADK's) showed less CPU at the end of a load than at its start."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                _threads[pid, task] = int(stat.read().split()[0])
        except FileNotFoundError:  # the thread ended
            continue
    return sum(ns for (owner, _), ns in _threads.items() if owner == pid) / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class LoadResult:
    connections: int
    messages: int
    events: int = 0
    errors: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    first_event_s: list[float] = field(default_factory=list)
    final_s: list[float] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6 if self.events else float("nan")

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        out["events_per_s"] = round(self.events_per_s, 1)
        out["cpu_us_per_event"] = round(self.cpu_us_per_event, 2)
        for name in ("first_event_s", "final_s"):
            values = getattr(self, name)
            for p in (50, 95, 99):
                out[f"{name[:-2]}_p{p}_ms"] = round(percentile(values, p) * 1000, 3)
        out["finished"] = len(self.final_s)
        return out


async def open_session(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(url, headers=headers, max_msg_size=0, compress=0)
    await ws.receive_str()  # system.connected
    await ws.send_str(json.dumps({"event": "user.create_session"}))
    created = json.loads(await ws.receive_str())
    if created.get("event") != "agent.session_created":
        raise RuntimeError(f"no session: {created}")
    return ws, str(created["session_id"])


async def converse(
    ws: aiohttp.ClientWebSocketResponse, session_id: str, messages: int, result: LoadResult
) -> None:
    for index in range(messages):
        sent = time.perf_counter()
        await ws.send_str(
            json.dumps(
                {
                    "event": "user.message",
                    "session_id": session_id,
                    "content": "report please",
                    "request_id": str(index),
                }
            )
        )
        first = True
        while True:
            data = await ws.receive_str()
            result.events += 1
            if first:
                result.first_event_s.append(time.perf_counter() - sent)
                first = False
            if '"agent.final_answer"' in data:
                result.final_s.append(time.perf_counter() - sent)
                break
            if '"agent.error"' in data:
                result.errors += 1
                break


async def run_load(
    port: int,
    pid: int,
    connections: int,
    messages: int,
    token: str | None = None,
    within_s: float = 120,
) -> LoadResult:
    """Open the connections and sessions, then run every conversation at once."""
    url = f"http://127.0.0.1:{port}/ws"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    result = LoadResult(connections, messages)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http, asyncio.timeout(within_s):
        gate = asyncio.Semaphore(100)

        async def opened() -> tuple[aiohttp.ClientWebSocketResponse, str]:
            async with gate:
                return await open_session(http, url, headers)

        sockets = await asyncio.gather(*(opened() for _ in range(connections)))
        cpu = cpu_seconds(pid)
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(converse(ws, sid, messages, result) for ws, sid in sockets), return_exceptions=True
        )
        result.wall_s = time.perf_counter() - started
        result.cpu_s = cpu_seconds(pid) - cpu
        result.errors += sum(isinstance(o, BaseException) for o in outcomes)
        await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    return result


async def hold_idle(port: int, pid: int, count: int, token: str | None = None) -> dict[str, Any]:
    """Open `count` authenticated sockets and keep them idle: RSS per socket on the server."""
    url = f"http://127.0.0.1:{port}/ws"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    before = rss_bytes(pid)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        gate = asyncio.Semaphore(200)

        async def opened() -> aiohttp.ClientWebSocketResponse:
            async with gate:
                ws = await http.ws_connect(url, headers=headers, autoping=True)
                await ws.receive_str()
                return ws

        outcomes = await asyncio.gather(*(opened() for _ in range(count)), return_exceptions=True)
        sockets = [o for o in outcomes if not isinstance(o, BaseException)]
        await asyncio.sleep(1.0)  # let the server settle (benchmark, not a test)
        after = rss_bytes(pid)
        still_open = sum(not ws.closed for ws in sockets)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "sockets": count,
        "held": still_open,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "rss_per_socket_kb": round((after - before) / max(still_open, 1) / 1024, 2),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
