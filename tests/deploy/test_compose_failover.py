"""Conversations in the compose stack outlive their server (issue 12's durable sessions).

A replica killed mid-run, Redis restarted, every replica restarted in turn: the client reconnects
through nginx, resumes from its last seq, gets what it missed once, and its conversation goes
on with its history. The replicas serve tests/deploy/recall_agent.py, whose answers list the
user's earlier messages, through the override compose.recall.yml.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.deploy.stack import TERMINAL, Stack, compose_stack, connect
from tests.support.docker import StackImages, docker, run

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]  # a cold build takes minutes
OVERRIDE = Path(__file__).with_name("compose.recall.yml")
HEALTHCHECK = ("python", "-I", "/opt/myagent-ws/healthcheck.py")
RUN_END_S = 45


@pytest.fixture(scope="module")
def stack(images: StackImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with compose_stack(images, tmp_path_factory.mktemp("failover"), OVERRIDE, scale=3) as up:
        yield up


class Client:
    """One conversation through nginx: its session, every seq it saw, reconnects and resumes."""

    def __init__(self, http: aiohttp.ClientSession, stack: Stack) -> None:
        self.http, self.stack = http, stack
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.session_id = ""
        self.seqs: list[int] = []
        self.asked: list[str] = []

    @property
    def socket(self) -> aiohttp.ClientWebSocketResponse:
        assert self.ws is not None
        return self.ws

    async def start(self) -> None:
        self.ws = await connect(self.http, self.stack)
        await self.socket.send_json({"event": "user.create_session"})
        created = (await self.receive_until({"agent.session_created"}))[-1]
        assert created["event"] == "agent.session_created", created
        self.session_id = created["session_id"]

    async def receive_until(self, names: set[str], within_s: float = 30) -> list[dict[str, Any]]:
        """This session's events (and errors) up to the first named one; every seq recorded."""
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(within_s):
            while True:
                msg = await self.socket.receive()
                assert msg.type is WSMsgType.TEXT, f"socket ended: {msg.type} {msg.data}"
                event = json.loads(msg.data)
                if self.session_id and event.get("session_id") not in (None, self.session_id):
                    continue
                if "seq" in event:
                    self.seqs.append(event["seq"])
                events.append(event)
                if event["event"] in names or event["event"] == "agent.error":
                    return events

    async def send(self, text: str) -> None:
        self.asked.append(text)
        frame = {"event": "user.message", "session_id": self.session_id, "content": text}
        await self.socket.send_json(frame)

    async def ask(self, text: str) -> dict[str, Any]:
        """A message; its run's terminal event, which must be the answer."""
        await self.send(text)
        ending = (await self.receive_until(TERMINAL))[-1]
        assert ending["event"] == "agent.final_answer", ending
        return ending

    async def wait_closed(self, within_s: float = 30) -> None:
        """Read until the socket ends (its replica went away)."""
        async with asyncio.timeout(within_s):
            while (await self.socket.receive()).type not in (
                WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR,
            ):  # fmt: skip
                pass
        await self.socket.close()

    async def resume(self, within_s: float = 60) -> list[dict[str, Any]]:
        """A new socket through nginx (retried while nginx finds no replica); resume from the
        last seq seen. The events replayed, up to agent.session_resumed."""
        if self.ws is not None:
            await self.ws.close()
        deadline = time.monotonic() + within_s
        while True:
            try:
                self.ws = await connect(self.http, self.stack)
                break
            except (aiohttp.ClientError, AssertionError):
                assert time.monotonic() < deadline, "nginx found no replica to resume on"
                await asyncio.sleep(0.5)  # nginx and the replicas settle on their own clock
        last_seq = max(self.seqs)
        await self.socket.send_json(
            {"event": "user.resume_session", "session_id": self.session_id, "last_seq": last_seq}
        )
        events = await self.receive_until({"agent.session_resumed"}, within_s)
        assert events[-1]["event"] == "agent.session_resumed", events[-1]
        return events

    def assert_each_event_once(self) -> None:
        assert len(self.seqs) == len(set(self.seqs)), f"a seq came twice: {self.seqs}"
        assert self.seqs == sorted(self.seqs), f"seqs out of order: {self.seqs}"

    def assert_recalls(self, answer: dict[str, Any]) -> None:
        """The answer lists every earlier message of the conversation (the agent's memory)."""
        earlier = json.loads(answer["content"].rsplit("earlier: ", 1)[1])
        assert earlier == self.asked[:-1], answer["content"]


def owner_of(stack: Stack, session_id: str, within_s: float = 10) -> str:
    """The replica that created the session (the only one whose log names it so far)."""
    deadline = time.monotonic() + within_s
    while True:
        for replica in stack.containers("agent"):
            if session_id in run("docker", "logs", replica).stdout:
                return replica
        assert time.monotonic() < deadline, f"no replica logged session {session_id}"
        time.sleep(0.2)  # the log line is written by another process


def wait_ready(replica: str, within_s: float = 60) -> None:
    """The replica's own healthcheck passes (sooner than Docker's 10 s clock would say)."""
    deadline = time.monotonic() + within_s
    while run("docker", "exec", replica, *HEALTHCHECK, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{replica[:12]} not healthy after {within_s} s"
        time.sleep(0.5)  # the server starts in its own time


async def test_replica_killed_mid_run_its_client_resumes_and_the_conversation_goes_on(
    stack: Stack,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = Client(http, stack)
        await client.start()
        client.assert_recalls(await client.ask("查询北京天气"))
        await client.send("slow report on Beijing")
        run_id = (await client.receive_until({"agent.tool_call"}))[-1]["run_id"]
        owner = await asyncio.to_thread(owner_of, stack, client.session_id)
        await asyncio.to_thread(docker, "kill", owner)
        try:
            await client.wait_closed()
            events = await client.resume()
            if not any(e["event"] in TERMINAL and e.get("run_id") == run_id for e in events):
                try:  # issue 12: `run_lost` within the owner's lease + 5 s
                    events += await client.receive_until(TERMINAL, within_s=RUN_END_S)
                except TimeoutError:
                    cut = f"no terminal event for the cut run {run_id} within {RUN_END_S} s"
                    pytest.fail(f"{cut} of agent.session_resumed; events since the kill: {events}")
            endings = [e for e in events if e["event"] in TERMINAL and e.get("run_id") == run_id]
            assert len(endings) == 1, f"the cut run {run_id} ended {len(endings)} times: {events}"
            client.assert_each_event_once()
            client.assert_recalls(await client.ask("查询北京天气"))
            client.assert_each_event_once()
        finally:
            await asyncio.to_thread(docker, "start", owner)  # three replicas for the next test
            await asyncio.to_thread(wait_ready, owner)


async def test_redis_restart_and_rolling_restart_of_the_agents_conversations_go_on(
    stack: Stack,
) -> None:
    async with aiohttp.ClientSession() as http:
        clients = [Client(http, stack) for _ in range(3)]  # nginx spreads them over the replicas
        for client in clients:
            await client.start()
            client.assert_recalls(await client.ask("查询北京天气"))

        await asyncio.to_thread(stack.compose, "restart", "redis")
        await asyncio.to_thread(stack.wait_healthy)
        for client in clients:
            client.assert_recalls(await client.ask("查询北京天气"))  # on the socket it had
            await client.resume()  # and through any replica
            client.assert_recalls(await client.ask("查询北京天气"))

        for replica in stack.containers("agent"):  # a rolling deploy: one replica at a time
            await asyncio.to_thread(docker, "restart", "--time", "15", replica, timeout=60)
            await asyncio.to_thread(wait_ready, replica)
            for client in clients:
                await client.resume()
                client.assert_recalls(await client.ask("查询北京天气"))
        for client in clients:
            client.assert_each_event_once()
