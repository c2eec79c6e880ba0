"""Real processes for fault tests: a redis-server to stop, pause, restart or lose, replicas of
`myagent-ws server` to SIGKILL and SIGTERM, and a client's view of a conversation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.system import free_port, require, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
REPLICA_AGENT = ROOT / "tests" / "deploy" / "replica_agent.py"
START_WITHIN_S = 60  # a loaded 2-core machine takes seconds to import the service
TERMINAL = {"agent.final_answer", "agent.error", "agent.interrupted"}
OPEN_LIMITS = {  # far above what a test sends; the tests of the limiter set their own
    f"MYAGENT_WS_RATE_LIMIT__{key}": "100000"
    for key in ("HTTP_PER_S", "HTTP_BURST", "MESSAGES_PER_S", "MESSAGES_BURST", "FRAMES_PER_S",
                "FRAMES_BURST", "CONNECTIONS_PER_IDENTITY")
}  # fmt: skip


class Redis:
    """A redis-server on a loopback port; `appendonly` keeps its data across restarts."""

    def __init__(self, folder: Path, *, appendonly: bool = False) -> None:
        self.binary = require("redis-server", "/usr/bin/redis-server")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, folder: Path | None = None) -> None:
        """Start it (again, on the same port); another `folder` means it starts empty."""
        folder = folder or self.folder
        folder.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(folder), "--save", ""]  # fmt: skip
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused one cannot stop
            self.process.terminate()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


class Replica:
    """`myagent-ws server AGENT` as a child process on its own port (kept across restarts)."""

    def __init__(self, agent: Path, folder: Path, env: dict[str, str], name: str = "r") -> None:
        self.agent = agent
        self.folder = folder
        self.name = name
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MYAGENT_WS_"))}
        self.env = {
            **base,
            **OPEN_LIMITS,
            "MYAGENT_WS_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.starts}.log"

    async def start(self) -> None:
        self.starts += 1
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "service.cli", "server", str(self.agent),
                "--port", str(self.port),
                cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        async with aiohttp.ClientSession() as http, asyncio.timeout(START_WITHIN_S):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
                try:
                    probe = await http.get(f"{self.http}/health", timeout=aiohttp.ClientTimeout(2))
                    probe.release()
                    if probe.status == 200:
                        return
                except (aiohttp.ClientConnectionError, TimeoutError):
                    await asyncio.sleep(0.05)  # still starting

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def kill(self) -> None:
        """SIGKILL (a crash, an OOM kill), and wait until the process is gone."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self, within_s: float = 20) -> int:
        """SIGTERM (a rolling deploy), and its exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), within_s)

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            response = await http.get(f"{self.http}/health", timeout=aiohttp.ClientTimeout(5))
            return dict(await response.json())

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


class Conversation:
    """One client's view of one session, across sockets and replicas."""

    def __init__(self, http: aiohttp.ClientSession, headers: dict[str, str] | None = None) -> None:
        self.http = http
        self.headers = headers or {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.session_id = ""
        self.frames: list[dict[str, Any]] = []  # every session frame, in the order received
        self.sent: list[str] = []  # the messages whose runs started
        self.others: list[dict[str, Any]] = []  # frames of no session log (errors, replies)
        self.retried: set[str] = set()  # request_ids sent more than once

    @property
    def last_seq(self) -> int:
        return max((f["seq"] for f in self.frames), default=0)

    async def connect(self, replica: Replica) -> None:
        if self.ws is not None:
            await self.ws.close()
        self.ws = await self.http.ws_connect(replica.ws_url, headers=self.headers)
        hello = await self.ws.receive_json(timeout=5)
        assert hello["event"] == "system.connected", hello

    async def receive(self, within_s: float = 15) -> dict[str, Any]:
        assert self.ws is not None
        async with asyncio.timeout(within_s):  # heartbeats answered meanwhile do not extend it
            msg = await self.ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type.name} {msg.data}")
        frame: dict[str, Any] = json.loads(msg.data)
        if "seq" in frame and "session_id" in frame:
            self.frames.append(frame)
        else:
            self.others.append(frame)
        return frame

    async def until(self, *events: str, within_s: float = 15) -> list[dict[str, Any]]:
        """Frames up to and including the first of `events` (any terminal one by default)."""
        wanted = set(events) or TERMINAL
        out = []
        async with asyncio.timeout(within_s):
            while True:
                out.append(frame := await self.receive(within_s))
                if frame["event"] in wanted:
                    return out

    async def create(self) -> None:
        assert self.ws is not None
        await self.ws.send_json({"event": "user.create_session"})
        created = (await self.until("agent.session_created", "agent.error"))[-1]
        assert created["event"] == "agent.session_created", created
        self.session_id = created["session_id"]

    async def say(self, content: str, request_id: str | None = None) -> None:
        assert self.ws is not None
        if request_id is not None and any(
            f.get("request_id") == request_id for f in [*self.frames, *self.others]
        ):
            self.retried.add(request_id)
        frame = {"event": "user.message", "session_id": self.session_id, "content": content}
        await self.ws.send_json({**frame, **({"request_id": request_id} if request_id else {})})

    async def resume(self, last_seq: int | None = None) -> list[dict[str, Any]]:
        assert self.ws is not None
        await self.ws.send_json({
            "event": "user.resume_session", "session_id": self.session_id,
            "last_seq": self.last_seq if last_seq is None else last_seq,
        })  # fmt: skip
        out = []
        while True:  # an agent.error of the log (run_lost) is replayed; one without seq refuses
            out.append(frame := await self.receive())
            if frame["event"] == "agent.session_resumed" or (
                frame["event"] == "agent.error" and "seq" not in frame
            ):
                return out

    def check_log(self) -> None:
        """Every seq once, none missing: 1, 2, 3, ... in the order received.

        The one frame that may come twice is the answer to a retry: a retried request_id is
        answered with its run's terminal frame again (docs/protocol.md), which may also have
        come live; a client drops a seq it has.
        """
        seen: set[str] = set()
        frames = []
        for frame in self.frames:
            key = json.dumps(frame, sort_keys=True)
            if (
                key in seen
                and frame["event"] in TERMINAL
                and frame.get("request_id") in self.retried
            ):
                continue
            seen.add(key)
            frames.append(frame)
        seqs = [f["seq"] for f in frames]
        if seqs != list(range(1, len(seqs) + 1)):
            odd = [i for i, seq in enumerate(seqs) if seq != i + 1][:1]
            near = frames[max(0, odd[0] - 3) : odd[0] + 3] if odd else []
            raise AssertionError(
                f"seqs {seqs}; around the first odd one: {near}; other frames: {self.others}"
            )

    def terminals(self) -> list[dict[str, Any]]:
        """The terminal frames, each once (a retry's answer repeats one)."""
        unique = {json.dumps(f, sort_keys=True): f for f in self.frames if f["event"] in TERMINAL}
        return [*unique.values()]
