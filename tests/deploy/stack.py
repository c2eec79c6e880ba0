"""The project's docker-compose stack run by the tests, and a WebSocket client for it.

The stack is docker-compose.yml as it is, pointed by environment variables at the images the
tests built, under a project name of its own, on loopback ports; it is always taken down with
`down -v`. Compose 1.29 (Debian's `docker-compose`) runs it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.docker import ROOT, StackImages, docker, run
from tests.support.system import free_port, require

TERMINAL = {"agent.final_answer", "agent.error", "agent.interrupted"}
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class Stack:
    project: str
    files: tuple[Path, ...]
    env: dict[str, str]
    env_file: Path
    token: str
    public_port: int
    prometheus_port: int
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.public_port}/ws"

    def compose(self, *args: str, timeout: float = 180) -> str:
        argv = [require("docker-compose"), "--no-ansi", "--env-file", str(self.env_file),
                "--project-name", self.project, "--project-directory", str(ROOT)]  # fmt: skip
        for file in self.files:
            argv += ["--file", str(file)]
        return run(*argv, *args, timeout=timeout, env=self.env).stdout

    def containers(self, service: str | None = None, *, every: bool = False) -> list[str]:
        """The ids of this project's containers (running ones unless every)."""
        filters = ["--filter", f"label={PROJECT_LABEL}={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        every_flag = ["--all"] if every else []
        return docker("ps", "--quiet", "--no-trunc", *every_flag, *filters).split()

    def states(self) -> dict[str, tuple[str, str]]:
        """Each running container's name: (its service, its health status)."""
        ids = self.containers()
        if not ids:
            return {}
        template = ('{{.Name}} {{index .Config.Labels "com.docker.compose.service"}} '
                    "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}")  # fmt: skip
        rows = [line.split() for line in docker("inspect", "--format", template, *ids).splitlines()]
        return {name.lstrip("/"): (service, health) for name, service, health in rows}

    def wait_healthy(self, within_s: float = 120, services: int = 4) -> None:
        """Wait until a container of every service runs, and every container reports healthy."""
        deadline = time.monotonic() + within_s
        while True:
            states = self.states()
            served = {service for service, _ in states.values()}
            if len(served) == services and all(h == "healthy" for _, h in states.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack is not healthy after {within_s} s: {states}")
            time.sleep(0.5)  # Docker runs the healthchecks on its own clock

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=180)


@contextmanager
def compose_stack(
    images: StackImages, tmp: Path, *overrides: Path, scale: int = 3
) -> Iterator[Stack]:
    """docker-compose.yml (and these override files) up with `scale` agents; down -v after."""
    env_file = tmp / "empty.env"  # no developer's .env is read
    env_file.write_text("", encoding="utf-8")
    token = secrets.token_urlsafe(16)
    public_port, prometheus_port = free_port(), free_port()
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "MYAGENT_WS_", "COMPOSE_"))}  # fmt: skip
    environ.update(images.compose_env())
    environ.update(
        MYAGENT_WS_TOKENS=token,
        PUBLIC_PORT=f"127.0.0.1:{public_port}",  # compose publishes nginx on loopback only
        PROMETHEUS_PORT=str(prometheus_port),
    )
    stack = Stack(
        project=f"myagentwstest{secrets.token_hex(4)}",
        files=(ROOT / "docker-compose.yml", *overrides),
        env=environ,
        env_file=env_file,
        token=token,
        public_port=public_port,
        prometheus_port=prometheus_port,
    )
    try:
        started = time.monotonic()
        stack.compose("up", "--detach", "--no-build", "--scale", f"agent={scale}", timeout=300)
        stack.wait_healthy()
        stack.figures["up_to_healthy_s"] = time.monotonic() - started
        yield stack
    finally:
        stack.down()


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, names: set[str] = TERMINAL, within_s: float = 30
) -> list[dict[str, Any]]:
    """Every event up to and including the first whose name is in names."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(within_s):
        while True:
            event = await ws.receive_json()
            events.append(event)
            if event["event"] in names:
                return events


async def connect(http: aiohttp.ClientSession, stack: Stack) -> aiohttp.ClientWebSocketResponse:
    """A socket through nginx with the stack's token, past its system.connected."""
    ws = await http.ws_connect(stack.ws_url, headers={"Authorization": f"Bearer {stack.token}"})
    connected = await ws.receive_json()
    assert connected["event"] == "system.connected", connected
    return ws


async def create_session(ws: aiohttp.ClientWebSocketResponse) -> str:
    await ws.send_json({"event": "user.create_session"})
    created = (await receive_until(ws, {"agent.session_created", "agent.error"}))[-1]
    assert created["event"] == "agent.session_created", created
    return str(created["session_id"])


async def ask(
    ws: aiohttp.ClientWebSocketResponse, session_id: str, text: str, within_s: float = 30
) -> list[dict[str, Any]]:
    """Send a user.message; the session's events up to the run's terminal one."""
    await ws.send_json({"event": "user.message", "session_id": session_id, "content": text})
    return await receive_until(ws, within_s=within_s)
