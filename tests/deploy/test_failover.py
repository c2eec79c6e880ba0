"""Sessions that outlive their server: real replicas (SIGKILL, SIGTERM), a real redis-server
(SIGSTOP, restart), and the project's OpenAI-compatible test server as the model, so that the
tests can see what the model was sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cluster import REPLICA_AGENT, ROOT, Conversation, Redis, Replica
from tests.support.openai_server import Call, OpenAIServer, Reply, Text, ToolCalls
from tests.support.poll import until

pytestmark = pytest.mark.system


def respond(body: dict[str, Any]) -> Reply:
    """The model: `slow ...` calls the slow tool; a tool result is summed up; else an answer
    that counts the user turns it was sent."""
    messages = body["messages"]
    last = messages[-1]
    if last["role"] == "tool":
        return Text("done: ", str(last["content"]))
    text = str(last.get("content") or "")
    if text.startswith("slow"):
        return ToolCalls(Call("slow_lookup", '{"query": ', '"x"}'))
    if text.startswith("mail"):
        return ToolCalls(Call("send_email", '{"to": ', '"bob@example.com"}'))
    turns = sum(1 for m in messages if m["role"] == "user")
    return Text(f"answer {turns}", f" to {text}")


async def status_is(replica: Replica, status: str) -> bool:
    """/health's view of the state store (polled: it is another process's state)."""
    return bool((await replica.health())["state"]["status"] == status)


def user_turns(body: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in body["messages"] if m["role"] == "user"]


@pytest.fixture
async def model() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer(responder=respond) as server:
        yield server


Cluster = Callable[..., Any]


@pytest.fixture
async def cluster(tmp_path: Path, model: OpenAIServer) -> AsyncIterator[Callable[..., Any]]:
    """`await cluster(n, redis, **env)`: n replicas on that Redis, the fake model behind them."""
    made: list[Replica] = []

    async def make(n: int, redis: Redis | None, **env: str) -> list[Replica]:
        common = {
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_MODEL": "fake",
            "MYAGENT_WS_STATE__LEASE_S": "3",
            **({"MYAGENT_WS_REDIS_URL": redis.url} if redis is not None else {}),
            **env,
        }
        replicas = [Replica(REPLICA_AGENT, tmp_path, common, name=f"r{i}") for i in range(n)]
        made.extend(replicas)
        await asyncio.gather(*(r.start() for r in replicas))
        return replicas

    yield make
    await asyncio.gather(*(r.close() for r in made))


@pytest.fixture
def redis(tmp_path: Path) -> Any:
    server = Redis(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def request_with(model: OpenAIServer, content: str) -> dict[str, Any]:
    """The last request the model got whose newest user turn is `content`."""
    for request in reversed(model.requests):
        if user_turns(request.body)[-1:] == [content]:
            return request.body
    raise AssertionError(f"the model was never asked {content!r}")


async def test_replica_killed_in_a_tool_its_conversation_goes_on_on_another(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession, model: OpenAIServer
) -> None:
    owner, other, third = await cluster(3, redis)
    talk = Conversation(http)
    await talk.connect(owner)
    await talk.create()
    await talk.say("hello")
    assert (await talk.until())[-1]["content"] == "answer 1 to hello"
    await talk.say("slow one please")
    await talk.until("agent.tool_call")  # the tool runs: 30 s
    last_seq = talk.last_seq
    await owner.kill()
    await talk.connect(other)
    replay = await talk.resume(last_seq)
    assert replay[-1]["event"] == "agent.session_resumed", replay[-1]
    if not any(f["event"] == "agent.error" for f in replay):  # else it comes live, within
        replay += await talk.until("agent.error", within_s=3 + 5)  # the lease + 5 s
    cut = [f for f in replay if f["event"] in ("agent.error", "agent.final_answer")]
    assert [(f["event"], f.get("code")) for f in cut] == [("agent.error", "run_lost")]
    assert cut[0]["run_id"] == next(
        f["run_id"] for f in talk.frames if f["event"] == "agent.tool_call"
    )
    await talk.say("and now?")
    answer = (await talk.until())[-1]
    assert answer["event"] == "agent.final_answer", answer
    talk.check_log()  # every event once, none missing
    assert [f["event"] for f in talk.terminals()] == ["agent.final_answer", "agent.error",
                                                     "agent.final_answer"]  # fmt: skip
    sent = request_with(model, "and now?")
    assert user_turns(sent) == ["hello", "slow one please", "and now?"]  # the whole history
    roles = [m["role"] for m in sent["messages"]]
    assert roles.count("tool") == 1  # the cut call has a result: the history is valid
    await third.health()


async def test_replica_killed_while_a_call_waits_for_approval_the_answer_works_on_another(
    tmp_path: Path, redis: Redis, http: aiohttp.ClientSession, model: OpenAIServer
) -> None:
    env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model.base_url, "OPENAI_MODEL": "fake",
           "MYAGENT_WS_STATE__LEASE_S": "3", "MYAGENT_WS_REDIS_URL": redis.url}  # fmt: skip
    agent = ROOT / "tests" / "deploy" / "approval_agent.py"
    owner, other = (Replica(agent, tmp_path, env, name=f"m{i}") for i in range(2))
    try:
        await asyncio.gather(owner.start(), other.start())
        talk = Conversation(http)
        await talk.connect(owner)
        await talk.create()
        await talk.say("mail bob the figures")
        card = (await talk.until("agent.approval_required"))[-1]
        await owner.kill()  # kill -9 while the call waits for a person
        await talk.connect(other)
        replay = await talk.resume(card["seq"] - 1)
        assert [f["event"] for f in replay] == ["agent.approval_required", "agent.session_resumed"]
        assert replay[0] == card  # the card comes back (asked from its seq): a client drops it
        talk.frames.remove(card)
        assert talk.ws is not None
        await talk.ws.send_json({"event": "user.approve", "session_id": talk.session_id,
                                 "step_id": card["step_id"], "approved": True})  # fmt: skip
        rest = await talk.until()
        assert [f["event"] for f in rest if f["event"] == "agent.error"] == []  # no run_lost
        assert rest[-1]["event"] == "agent.final_answer", rest[-1]
        assert rest[-1]["content"] == "done: Email sent to bob@example.com"
        assert rest[-1]["run_id"] == card["run_id"]  # the same run, gone on on another replica
        assert rest[-1]["metadata"]["usage"]["model_calls"] == 2
        talk.check_log()
        roles = [m["role"] for m in model.requests[-1].body["messages"]]
        assert roles == ["user", "assistant", "tool"]
    finally:
        await asyncio.gather(owner.close(), other.close())


async def followed(http: aiohttp.ClientSession, owner: Replica, other: Replica) -> Conversation:
    """A new session on `owner`, and the client on `other`, following it there."""
    talk = Conversation(http)
    await talk.connect(owner)
    await talk.create()
    await talk.connect(other)
    await talk.resume(1)
    return talk


async def test_resume_ahead_of_the_log_is_refused_on_every_replica(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession
) -> None:
    owner, other = await cluster(2, redis)
    talk = Conversation(http)
    await talk.connect(owner)
    await talk.create()
    await talk.say("hello")
    await talk.until()
    for replica in (owner, other):
        await talk.connect(replica)
        error = (await talk.resume(talk.last_seq + 5))[-1]
        assert (error["event"], error["code"]) == ("agent.error", "replay_unavailable"), error
        assert error["oldest_seq"] == 1


async def test_message_forwarded_to_a_draining_replica_is_refused_with_shutting_down(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession
) -> None:
    owner, other = await cluster(
        2, redis, SLOW_TOOL_S="4", MYAGENT_WS_SERVER__SHUTDOWN_GRACE_S="10"
    )
    busy = Conversation(http)  # keeps the owner draining: its run takes 4 s
    await busy.connect(owner)
    await busy.create()
    await busy.say("slow")
    await busy.until("agent.tool_call")
    talk = await followed(http, owner, other)
    assert owner.process is not None
    owner.process.terminate()  # SIGTERM: the owner drains
    await busy.until("system.shutdown")
    await talk.say("hello")
    error = (await talk.until("agent.error"))[-1]
    assert error["code"] == "shutting_down" and error["retry_after_s"] > 0, error
    assert await owner.stop() == 0


async def test_message_forwarded_to_a_frozen_owner_is_answered_not_left_waiting(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession
) -> None:
    owner, other = await cluster(2, redis)
    talk = await followed(http, owner, other)
    assert owner.process is not None
    os.kill(owner.process.pid, signal.SIGSTOP)  # alive to Redis (subscribed), answering nothing
    try:
        await talk.say("hello", "r-frozen")
        refused = (await talk.until("agent.error", within_s=15))[-1]
        assert (refused["code"], refused["request_id"]) == ("unavailable", "r-frozen"), refused
        assert refused["retry_after_s"] > 0 and "seq" not in refused
    finally:
        os.kill(owner.process.pid, signal.SIGCONT)
    await talk.say("hello", "r-frozen")  # the retry, once the owner answers again
    assert (await talk.until())[-1]["event"] == "agent.final_answer"


async def test_redis_restart_with_its_data_keeps_every_session(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession, model: OpenAIServer
) -> None:
    first, second = await cluster(2, redis)
    talks = []
    for replica in (first, second):
        talk = Conversation(http)
        await talk.connect(replica)
        await talk.create()
        await talk.say("hello")
        await talk.until()
        talks.append(talk)
    redis.stop()
    redis.start()  # its append-only file on the same folder
    for talk, replica in zip(talks, (second, first), strict=True):  # through the other one
        await talk.connect(replica)
        assert (await talk.resume())[-1]["event"] == "agent.session_resumed"
        await talk.say("again")
        answer = (await talk.until())[-1]
        assert answer.get("content") == "answer 2 to again", answer
        talk.check_log()


async def test_redis_lost_says_so_and_resume_answers_without_hanging(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first, second = await cluster(2, redis)
    talk = Conversation(http)
    await talk.connect(first)
    await talk.create()
    await talk.say("hello")
    await talk.until()
    redis.stop()
    redis.start(tmp_path / "empty")  # restarted without its data
    await until(lambda: status_is(second, "lost"))
    await talk.connect(second)
    error = (await talk.resume(1))[-1]
    assert error["code"] in ("replay_unavailable", "session_not_found"), error


@contextlib.contextmanager
def paused(redis: Redis) -> Any:
    redis.pause()
    try:
        yield
    finally:
        redis.resume()


async def test_redis_stall_mid_run_never_duplicates_nor_drops_an_event(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession
) -> None:
    import redis.asyncio as aioredis

    owner, other = await cluster(2, redis, SLOW_TOOL_S="2", MYAGENT_WS_STATE__LEASE_S="15")
    talk = Conversation(http)
    await talk.connect(owner)
    await talk.create()
    watcher = Conversation(http)  # follows the same session through the other replica
    watcher.session_id = talk.session_id
    await watcher.connect(other)
    await watcher.resume(0)
    await talk.say("slow, while Redis stalls")
    await talk.until("agent.tool_call")
    with paused(redis):  # SIGSTOP for 7 s, longer than the client's 3 s socket timeout
        await until(lambda: status_is(owner, "degraded"), within_s=5)
        during = await talk.until(within_s=10)  # the run ends; its socket keeps streaming
        assert during[-1]["event"] == "agent.final_answer", during[-1]
        assert (await other.health())["state"]["status"] == "degraded"
        await asyncio.sleep(7 - 2)  # the rest of the stall: writes time out and are retried
    await talk.say("after the stall")
    assert (await talk.until())[-1]["event"] == "agent.final_answer"
    talk.check_log()
    await watcher.until("agent.final_answer")  # its copy of the second run
    await watcher.until("agent.final_answer")
    watcher.check_log()  # the follower skipped nothing and saw nothing twice
    assert watcher.frames == talk.frames
    shared = aioredis.from_url(redis.url, decode_responses=True)
    entries = await shared.xrange(f"myagent_ws:events:{talk.session_id}")
    await shared.aclose()
    assert [int(i.split("-")[0]) for i, _ in entries] == list(range(1, talk.last_seq + 1))
    late = Conversation(http)
    late.session_id = talk.session_id
    await late.connect(other)
    resumed = (await late.resume(0))[-1]
    assert resumed["last_seq"] == talk.last_seq and resumed["replayed"] == talk.last_seq


class Client:
    """A client of the rolling restart: turn after turn, moving to a live replica whenever its
    server goes away, resuming, and resending a refused message with the same request_id."""

    def __init__(self, index: int, http: aiohttp.ClientSession, alive: list[Replica]) -> None:
        self.index = index
        self.talk = Conversation(http)
        self.alive = alive
        self.moves = 0
        self.waiting = ""
        self.trace: list[str] = []  # what it did, for a failure's message

    def note(self, what: str) -> None:
        self.trace.append(f"{asyncio.get_running_loop().time():.2f} {what}")

    async def move(self, resume: bool = True) -> None:
        for attempt in range(200):
            replica = self.alive[(self.index + attempt) % len(self.alive)]
            try:
                self.note(f"connect {replica.name}")
                await self.talk.connect(replica)
                if resume:
                    resumed = (await self.talk.resume())[-1]
                    self.note(f"resume {resumed['event']} {resumed.get('code')}")
                    if resumed["event"] != "agent.session_resumed":
                        raise ConnectionError(resumed.get("code"))
                self.moves += 1
                return
            except (aiohttp.ClientError, ConnectionError, TimeoutError, AssertionError) as exc:
                self.note(f"move failed {exc!r}")
                await asyncio.sleep(0.1)  # that replica is going or starting: another one
        raise AssertionError(f"client {self.index} found no live replica")

    def sent_before(self, request_id: str) -> bool:
        return any(line.endswith(f"say {request_id}") for line in self.trace[:-1])

    async def turn(self, content: str, request_id: str) -> dict[str, Any]:
        """Send a message and return its run's terminal frame, whatever happens meanwhile."""
        self.waiting = request_id
        while True:
            try:
                self.note(f"say {request_id}")
                if self.sent_before(request_id):
                    self.talk.retried.add(request_id)
                await self.talk.say(content, request_id)
                while True:
                    frame = await self.talk.receive(within_s=30)
                    if frame["event"] == "system.shutdown":
                        raise ConnectionError("server shutting down")
                    if frame.get("request_id") != request_id:
                        continue
                    if frame["event"] == "agent.error" and "seq" not in frame:
                        self.note(f"refused {frame['code']}")
                        await asyncio.sleep(frame.get("retry_after_s") or 0.2)
                        break  # refused (shutting_down, unavailable): send it again
                    if frame["event"] in ("agent.final_answer", "agent.error", "agent.interrupted"):
                        return frame
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                self.note(f"turn broke {exc!r}")
                await self.move()
                done = [f for f in self.talk.terminals() if f.get("request_id") == request_id]
                if done:  # it ended while we moved: the replay had it
                    return done[-1]


@pytest.mark.timeout(300)
async def test_rolling_restart_of_every_replica_keeps_every_conversation(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession, model: OpenAIServer
) -> None:
    replicas = await cluster(3, redis, SLOW_TOOL_S="0.5", MYAGENT_WS_SERVER__SHUTDOWN_GRACE_S="2")
    alive = [*replicas]
    clients = [Client(i, http, alive) for i in range(20)]
    restarted = asyncio.Event()

    async def converse(client: Client) -> list[str]:
        await client.move(resume=False)
        await client.talk.create()
        sent: list[str] = []
        turn = 0
        while not restarted.is_set() or turn < 3:
            content = f"{'slow ' if turn % 2 else ''}c{client.index} t{turn}"
            await client.turn(content, f"c{client.index}-t{turn}")
            sent.append(content)
            turn += 1
        final = f"c{client.index} after"
        await client.turn(final, f"c{client.index}-after")
        client.waiting = "done"
        return [*sent, final]

    async def roll() -> None:
        for replica in replicas:
            await asyncio.sleep(1)  # conversations go on meanwhile
            alive.remove(replica)
            assert await replica.stop() == 0  # SIGTERM: drain, hand sessions over
            await replica.start()
            alive.append(replica)
        restarted.set()

    try:
        async with asyncio.timeout(240):
            _, *histories = await asyncio.gather(roll(), *(converse(c) for c in clients))
    except TimeoutError:
        stuck = [(c.index, c.waiting, c.trace[-8:]) for c in clients if c.waiting != "done"]
        raise AssertionError(f"conversations stuck: {stuck}") from None
    for client, sent in zip(clients, histories, strict=True):
        talk = client.talk
        try:
            talk.check_log()  # no client saw a seq twice, or missed one
        except AssertionError as exc:
            trace = client.trace
            raise AssertionError(f"client {client.index}: {exc}; what it did: {trace}") from None
        ends: dict[str, int] = {}
        for frame in talk.terminals():
            ends[frame["run_id"]] = ends.get(frame["run_id"], 0) + 1
        assert set(ends.values()) == {1}, ends  # exactly one terminal event a run
        assert len(ends) == len(sent)
        assert user_turns(request_with(model, sent[-1])) == sent  # the whole history
    assert sum(c.moves for c in clients) > len(clients)  # they did move


async def test_sqlite_server_killed_mid_conversation_goes_on_after_restart(
    cluster: Cluster, http: aiohttp.ClientSession, model: OpenAIServer, tmp_path: Path
) -> None:
    (server,) = await cluster(1, None, MYAGENT_WS_STATE__SQLITE_PATH=str(tmp_path / "state.db"))
    talk = Conversation(http)
    await talk.connect(server)
    await talk.create()
    await talk.say("hello")
    await talk.until()
    await talk.say("slow, then killed")
    await talk.until("agent.tool_call")
    seen = talk.last_seq
    await server.kill()  # kill -9: nothing is saved on the way out
    await server.start()  # the same file
    await talk.connect(server)
    replay = await talk.resume(0)
    assert replay[-1]["event"] == "agent.session_resumed", replay[-1]
    assert replay[-1]["last_seq"] == seen + 1  # what it held, and the cut run's end
    lost = replay[-2]
    assert (lost["event"], lost["code"], lost["seq"]) == ("agent.error", "run_lost", seen + 1)
    talk.frames = [*talk.frames[:seen], lost]  # the replay repeats what the client had
    await talk.say("still there?")
    assert (await talk.until())[-1]["event"] == "agent.final_answer"
    talk.check_log()
    assert user_turns(request_with(model, "still there?")) == [
        "hello", "slow, then killed", "still there?"
    ]  # fmt: skip


async def test_sqlite_server_killed_while_a_call_waits_for_approval_waits_on_after_restart(
    http: aiohttp.ClientSession, model: OpenAIServer, tmp_path: Path
) -> None:
    env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": model.base_url, "OPENAI_MODEL": "fake",
           "MYAGENT_WS_STATE__SQLITE_PATH": str(tmp_path / "state.db")}  # fmt: skip
    server = Replica(ROOT / "tests" / "deploy" / "approval_agent.py", tmp_path, env, name="q")
    try:
        await server.start()
        talk = Conversation(http)
        await talk.connect(server)
        await talk.create()
        await talk.say("mail bob the figures")
        card = (await talk.until("agent.approval_required"))[-1]
        await server.kill()  # kill -9 while the call waits
        await server.start()  # the same file
        await talk.connect(server)
        replay = await talk.resume()
        assert [f["event"] for f in replay] == ["agent.session_resumed"]  # nothing was cut
        assert talk.ws is not None
        await talk.ws.send_json({"event": "user.approve", "session_id": talk.session_id,
                                 "step_id": card["step_id"], "approved": False})  # fmt: skip
        rest = await talk.until()
        result = next(f for f in rest if f["event"] == "agent.tool_result")
        assert result["metadata"]["status"] == "denied"
        assert rest[-1]["event"] == "agent.final_answer" and rest[-1]["run_id"] == card["run_id"]
        talk.check_log()
    finally:
        await server.close()


def raw_socket(port: int) -> Any:
    """A WebSocket client on a bare socket that reads nothing after the handshake."""
    import base64
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked(text: str) -> bytes:
    """A client text frame (masked, as RFC 6455 requires)."""
    data = text.encode()
    mask = os.urandom(4)
    header = (
        bytes([0x81, 0x80 | len(data)])
        if len(data) < 126
        else bytes([0x81, 0x80 | 126, len(data) >> 8, len(data) & 0xFF])
    )
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def test_client_that_never_reads_replays_within_bounds_then_is_closed_1013(
    cluster: Cluster, redis: Redis, http: aiohttp.ClientSession, model: OpenAIServer
) -> None:
    model.script(Text(*["y" * 10_000] * 400))  # a 4 MB answer: the log holds its buffer_bytes
    owner, other = await cluster(
        2, redis, MYAGENT_WS_RATE_LIMIT__FRAMES_PER_S="50", MYAGENT_WS_RATE_LIMIT__FRAMES_BURST="60"
    )
    talk = Conversation(http)
    await talk.connect(owner)
    await talk.create()
    await talk.say("a long answer please")
    await talk.until(within_s=60)
    oldest = (await talk.resume(0))[-1]["oldest_seq"]  # all the 4 MiB buffer holds of it
    before = other.rss_bytes()
    sock = await asyncio.to_thread(raw_socket, other.port)
    resume = json.dumps(
        {"event": "user.resume_session", "session_id": talk.session_id, "last_seq": oldest - 1}
    )
    peak = before
    try:
        for _ in range(200):  # at its allowance: 50 a second
            await asyncio.to_thread(sock.sendall, masked(resume))
            await asyncio.sleep(1 / 50)
            peak = max(peak, other.rss_bytes())
        metrics = ""
        async with asyncio.timeout(20):
            while 'code="1013"' not in metrics:  # the socket is closed for not reading
                peak = max(peak, other.rss_bytes())
                metrics = await (await http.get(f"{other.http}/metrics")).text()
                await asyncio.sleep(0.2)  # another process's counters
    finally:
        sock.close()
    assert peak - before < 50_000_000, f"RSS grew {(peak - before) / 1e6:.1f} MB"
    assert "myagent_ws_slow_consumers_total 1.0" in metrics
