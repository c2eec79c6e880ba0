"""Two service instances sharing a real Redis: resume on the other replica, remote commands."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio
import structlog
from aiohttp import WSMsgType

from myagent.llm import AssistantTurn
from myagent.tool.base_tool import BaseTool, ToolResult
from service.app import create_app, drain
from service.keys import sessions_key, store_key
from service.replicas import Done, Forward, replica_messages
from service.state.redis import session_key
from service.state.redis_bus import replica_channel
from tests.service.conftest import (
    UNLIMITED,
    GateTool,
    create_session,
    open_ws,
    receive_until,
    scripted,
    settings,
)
from tests.support.poll import until
from tests.support.system import free_port, redis_server


async def two_instances(aiohttp_client, redis_url: str, factory):  # type: ignore[no-untyped-def]
    config = settings(state={"redis_url": redis_url})
    a = await aiohttp_client(create_app(config, {"weather": factory}))
    b = await aiohttp_client(create_app(config, {"weather": factory}))
    return a, b


async def owner_killed(holder, redis_url: str, sid: str) -> None:  # type: ignore[no-untyped-def]
    """The session's holder, once its writes are in, as Redis sees a killed replica: its lease
    runs, and nobody listens on its channel."""
    await holder.app[store_key].sync()
    shared = redis.asyncio.from_url(redis_url)
    await shared.hset(session_key(sid), "owner", "f" * 32)
    await shared.aclose()


async def test_run_on_a_resumed_through_b_sees_every_event_in_order(
    aiohttp_client, redis_url: str, gate_tool: GateTool
) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done on A", tools=[gate_tool])
    a, b = await two_instances(aiohttp_client, redis_url, factory)
    health = await (await b.get("/health")).json()
    assert health["state"] == {"backend": "redis", "status": "ok"}
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    seen = await receive_until(on_a, "agent.thinking")
    await on_a.close()
    await asyncio.wait_for(gate_tool.started.wait(), 5)
    on_b = await open_ws(b)
    await on_b.send_json(
        {"event": "user.resume_session", "session_id": sid, "last_seq": seen[-1]["seq"]}
    )
    replay = await receive_until(on_b, "agent.session_resumed")
    assert replay[-1]["replayed"] == len(replay) - 1
    gate_tool.gate.set()  # the run goes on on A; its events reach B through the stream
    live = await receive_until(on_b)
    frames = [*seen, *replay[:-1], *live]
    assert [f["seq"] for f in frames] == list(range(2, 2 + len(frames)))
    assert frames[-1]["event"] == "agent.final_answer" and frames[-1]["content"] == "done on A"
    assert len([f for f in frames if f["event"] == "agent.tool_call"]) == 1  # one execution
    await on_b.close()


async def test_message_and_cancel_through_b_run_on_a(
    aiohttp_client, redis_url: str, gate_tool: GateTool
) -> None:
    factory = scripted("first", AssistantTurn.call("slow_lookup", query="y"), tools=[gate_tool])
    a, b = await two_instances(aiohttp_client, redis_url, factory)
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.close()
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    await receive_until(on_b, "agent.session_resumed")
    await on_b.send_json({"event": "user.message", "session_id": sid, "content": "one"})
    assert (await receive_until(on_b))[-1]["content"] == "first"
    await on_b.send_json({"event": "user.message", "session_id": sid, "content": "two"})
    await receive_until(on_b, "agent.tool_call")
    await on_b.send_json({"event": "user.message", "session_id": sid, "content": "three"})
    busy = await receive_until(on_b, "agent.error")
    assert busy[-1]["code"] == "session_busy"  # the owner's answer, delivered to B's socket
    await on_b.send_json({"event": "user.cancel", "session_id": sid})
    assert (await receive_until(on_b))[-1]["event"] == "agent.interrupted"
    await on_b.close()


async def test_other_identity_cannot_resume_through_another_replica(
    aiohttp_client, redis_url: str
) -> None:
    _, b = await two_instances(aiohttp_client, redis_url, scripted("x"))
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": "0" * 32, "last_seq": 0})
    assert (await on_b.receive_json())["code"] == "session_not_found"
    await on_b.close()


async def test_redis_away_degrades_but_serves_then_recovers(aiohttp_client, tmp_path) -> None:
    port = free_port()
    with redis_server(tmp_path, port) as url:
        config = settings(state={"redis_url": url})
        client = await aiohttp_client(create_app(config, {"weather": scripted("one", "two")}))
        ws = await open_ws(client)
        sid = await create_session(ws)
    # Redis is gone
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "a"})
    assert (await receive_until(ws))[-1]["content"] == "one"  # still serving
    store = client.app[store_key]
    await asyncio.wait_for(store.health.wait("degraded"), 10)  # noticed on its next write
    health = await client.get("/health")
    assert health.status == 200
    assert (await health.json())["state"] == {"backend": "redis", "status": "degraded"}
    with redis_server(tmp_path, port):  # back on the same address
        await ws.send_json({"event": "user.message", "session_id": sid, "content": "b"})
        assert (await receive_until(ws))[-1]["content"] == "two"
        await asyncio.wait_for(store.health.wait("ok"), 10)
        assert (await (await client.get("/health")).json())["state"]["status"] == "ok"
        await ws.close()


async def test_rate_limits_are_shared_by_both_instances(aiohttp_client, redis_url: str) -> None:
    limits = {"messages_per_s": 0.01, "messages_burst": 2}
    config = settings(state={"redis_url": redis_url}, rate_limit={**UNLIMITED, **limits})
    factory = scripted("1", "2", "3")
    a = await aiohttp_client(create_app(config, {"weather": factory}))
    b = await aiohttp_client(create_app(config, {"weather": factory}))
    codes = []
    for client in (a, b, a):  # one anonymous identity (127.0.0.1): two messages in all
        ws = await open_ws(client)
        sid = await create_session(ws)
        await ws.send_json({"event": "user.message", "session_id": sid, "content": "x"})
        last = (await receive_until(ws, "agent.final_answer", "agent.error"))[-1]
        codes.append(last.get("code", "ok"))
        await ws.close()
    assert codes == ["ok", "ok", "rate_limited"]


async def test_owner_keeps_its_session_record_alive_past_the_ttl(
    aiohttp_client, redis_url: str
) -> None:
    config = settings(state={"redis_url": redis_url, "lease_s": 1})  # renewed every 1/3 s
    a = await aiohttp_client(create_app(config, {"weather": scripted("x")}))
    ws = await open_ws(a)
    sid = await create_session(ws)
    await a.app[store_key].sync()
    shared = redis.asyncio.from_url(redis_url)
    await shared.expire(session_key(sid), 5)  # as if the session had been in use for minutes

    async def refreshed() -> bool:  # Redis's TTL, refreshed by the owner
        return bool(await shared.ttl(session_key(sid)) > 5)

    await until(refreshed, within_s=5)
    await shared.aclose()
    await ws.close()


async def test_drained_replica_hands_its_sessions_over_with_their_history(
    aiohttp_client, redis_url: str
) -> None:
    config = settings(state={"redis_url": redis_url})
    a = await aiohttp_client(create_app(config, {"weather": scripted("answer from A")}))
    b = await aiohttp_client(create_app(config, {"weather": scripted("from B")}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    seen = await receive_until(on_a)
    await drain(a.app)  # SIGTERM: A saves its sessions and gives them up
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    replay = await receive_until(on_b, "agent.session_resumed", "agent.error")
    assert replay[:-1] == seen and replay[-1]["replayed"] == len(seen)
    await on_b.send_json({"event": "user.message", "session_id": sid, "content": "more"})
    answer = await receive_until(on_b)
    assert answer[-1]["content"] == "from B"  # B adopted it; its agent has A's memory
    first = seen[-1]["seq"] + 1
    assert [f["seq"] for f in answer] == list(range(first, first + len(answer)))
    memory = b.app[sessions_key].sessions[sid].agent.memory.messages
    assert [m.content for m in memory if m.role == "user"] == ["go", "more"]
    await on_b.close()


async def test_message_for_a_replica_that_died_is_answered_where_it_lands(
    aiohttp_client, redis_url: str
) -> None:
    a, b = await two_instances(aiohttp_client, redis_url, scripted("x"))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.close()
    await owner_killed(a, redis_url, sid)
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.message", "session_id": sid, "content": "hi"})
    frames = await receive_until(on_b)  # not silence: B takes the session over
    assert frames[-1]["event"] == "agent.final_answer" and frames[-1]["content"] == "x"
    await on_b.send_json({"event": "user.cancel", "session_id": sid})
    assert (await receive_until(on_b))[-1]["code"] == "no_active_run"
    await on_b.close()


async def test_command_handed_back_by_an_owner_on_its_way_out_is_carried_out_once(
    aiohttp_client, redis_url: str
) -> None:
    """The owner answers a forwarded message "not held here" and exits before anything else
    (a drain's last moment): the message runs once, on the replica it came through."""
    a, b = await two_instances(aiohttp_client, redis_url, scripted("only once"))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.close()
    await a.app[store_key].sync()
    owner = "e" * 32  # a replica in its last moment: it hands the frame back, then it is gone
    shared = redis.asyncio.from_url(redis_url, decode_responses=True)
    await shared.hset(session_key(sid), "owner", owner)
    pubsub = shared.pubsub()
    await pubsub.subscribe(replica_channel(owner))

    async def hand_back_and_exit() -> None:
        async with asyncio.timeout(5):
            async for message in pubsub.listen():
                if message["type"] == "message":
                    break
        forward = replica_messages.validate_json(message["data"])
        assert isinstance(forward, Forward)
        answer = Done(id=forward.id, held=False).model_dump_json()
        await shared.publish(replica_channel(forward.reply_to), answer)
        await pubsub.unsubscribe()

    owner_task = asyncio.create_task(hand_back_and_exit())
    on_b = await open_ws(b)
    message = {"event": "user.message", "session_id": sid, "content": "hi", "request_id": "m1"}
    await on_b.send_json(message)
    await owner_task
    run = await receive_until(on_b)
    assert run[-1]["event"] == "agent.final_answer" and run[-1]["content"] == "only once"
    await on_b.send_json({"event": "user.ping", "request_id": "p1"})
    after = await receive_until(on_b, "system.pong")  # read once the message was handled
    assert [f["event"] for f in after] == ["system.pong"], after  # not run, nor answered, again
    assert [f["seq"] for f in run] == list(range(2, len(run) + 2))
    await pubsub.aclose()
    await shared.aclose()
    await on_b.close()


async def test_run_cut_by_its_owners_death_is_ended_once_for_the_retry_that_finds_it(
    aiohttp_client, redis_url: str, gate_tool: GateTool
) -> None:
    """A's run of m1 was going when A died (its lease not yet run out); the client sends m1
    again through B. B takes the session over, which ends the cut run (run_lost): the client
    gets that frame once, as the next frame of the session's log, not also as the retry's
    answer; a retry from a socket that was not there is answered with it."""
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "never", tools=[gate_tool])
    a, b = await two_instances(aiohttp_client, redis_url, factory)
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    message = {"event": "user.message", "session_id": sid, "content": "go", "request_id": "m1"}
    await on_a.send_json(message)
    seen = await receive_until(on_a, "agent.tool_call")
    await asyncio.wait_for(gate_tool.started.wait(), 5)
    await on_a.close()
    await a.app[store_key].monitor_stop()  # A renews its leases no more
    await owner_killed(a, redis_url, sid)
    on_b = await open_ws(b)
    await on_b.send_json(message)
    ended = await receive_until(on_b)
    await b.app[store_key].sync()  # B's log holds the run_lost frame: sent live, if not yet
    await on_b.send_json({"event": "user.ping", "request_id": "p1"})
    after = await receive_until(on_b, "system.pong")
    assert [(f["event"], f.get("code")) for f in ended] == [("agent.error", "run_lost")]
    assert ended[0]["seq"] == seen[-1]["seq"] + 1 and ended[0]["request_id"] == "m1"
    assert [f["event"] for f in after] == ["system.pong"], after  # not sent a second time
    other = await open_ws(b)
    await other.send_json(message)
    assert await receive_until(other) == ended
    gate_tool.gate.set()  # A's run, cut off from the store, ends with the test
    await other.close()
    await on_b.close()


class CountingTool(BaseTool):
    """A tool that records each time it really runs (shared by every replica's agents)."""

    name = "count"
    description = "count"
    calls: Any = None

    async def execute(self, city: str = "") -> ToolResult:
        self.calls.append(city)
        return ToolResult(output=f"counted {city}")


async def test_two_replicas_taking_a_dead_owners_session_at_once_run_its_message_once(
    aiohttp_client, redis_url: str
) -> None:
    """The session's owner died; the same message (retried by a client, or sent by two
    tabs) reaches B and C at once. One of them takes the session over and runs it; the other
    must not take it from that live replica too (a second run of the tool): it answers
    `unavailable`, and the message sent again there is answered by the one run."""
    tool = CountingTool(calls=[])
    factory = scripted(AssistantTurn.call("count", city="x"), "done", tools=[tool])
    config = settings(state={"redis_url": redis_url})
    a, b, c = [await aiohttp_client(create_app(config, {"weather": factory})) for _ in "abc"]
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.close()
    await owner_killed(a, redis_url, sid)
    on_b, on_c = await open_ws(b), await open_ws(c)
    message = {"event": "user.message", "session_id": sid, "content": "go", "request_id": "m1"}
    await asyncio.gather(on_b.send_json(message), on_c.send_json(message))
    ends = [(await receive_until(ws))[-1] for ws in (on_b, on_c)]
    for ws, end in zip((on_b, on_c), ends, strict=True):
        if end.get("code") == "unavailable":  # as the error says: send it again
            await ws.send_json(message)
            end = (await receive_until(ws))[-1]
        assert (end["event"], end.get("content")) == ("agent.final_answer", "done"), end
    assert tool.calls == ["x"]  # one run of the message, on one replica
    await on_b.close()
    await on_c.close()


async def test_retried_request_through_b_is_answered_by_the_first_run(
    aiohttp_client, redis_url: str
) -> None:
    a, b = await two_instances(aiohttp_client, redis_url, scripted("only once"))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.close()
    on_b = await open_ws(b)
    message = {"event": "user.message", "session_id": sid, "content": "hi", "request_id": "m1"}
    await on_b.send_json(message)
    first = (await receive_until(on_b))[-1]
    await on_b.send_json(message)  # a second run would exhaust the script
    assert (await receive_until(on_b))[-1] == first
    await on_b.close()


async def test_replicas_that_write_nothing_say_when_redis_returns_without_its_data(
    aiohttp_client, tmp_path
) -> None:
    port = free_port()
    with redis_server(tmp_path, port) as url:
        a, b = await two_instances(aiohttp_client, url, scripted("x"))
        stores = [a.app[store_key], b.app[store_key]]
        assert [s.status for s in stores] == ["ok", "ok"]
    async with asyncio.timeout(10):
        for store in stores:
            await store.health.wait("degraded")
    with redis_server(tmp_path, port):
        async with asyncio.timeout(10):  # it came back empty: sessions held before are gone
            for store in stores:
                await store.health.wait("lost")
        health = await (await b.get("/health")).json()
        assert health["state"] == {"backend": "redis", "status": "lost"}


async def test_other_replica_answers_clearly_while_redis_is_away(aiohttp_client, tmp_path) -> None:
    port = free_port()
    with redis_server(tmp_path, port) as url:
        a, b = await two_instances(aiohttp_client, url, scripted("x"))
        on_a = await open_ws(a)
        sid = await create_session(on_a)
        await a.app[store_key].sync()
        await on_a.close()
    on_b = await open_ws(b)
    with structlog.testing.capture_logs() as logs:
        await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
        error = await on_b.receive_json()
    assert error["event"] == "agent.error" and "Redis" in error["error"]
    assert error["retry_after_s"] == 1.0
    assert not [e for e in logs if e["log_level"] == "error"]  # no traceback: a known state
    await on_b.send_json({"event": "user.ping"})
    assert (await on_b.receive_json())["event"] == "system.pong"
    await on_b.close()


async def test_one_socket_follows_no_more_remote_sessions_than_the_limit(
    aiohttp_client, redis_url: str
) -> None:
    config = settings(state={"redis_url": redis_url}, sessions={"max_per_connection": 1})
    a = await aiohttp_client(create_app(config, {"weather": scripted("x")}))
    b = await aiohttp_client(create_app(config, {"weather": scripted("x")}))
    sids = []
    for _ in range(2):
        on_a = await open_ws(a)
        sids.append(await create_session(on_a))
        await on_a.close()
    await a.app[store_key].sync()
    on_b = await open_ws(b)
    replies = []
    for sid in sids:
        await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
        replies.append((await receive_until(on_b, "agent.session_resumed", "agent.error"))[-1])
    assert replies[0]["event"] == "agent.session_resumed"
    assert replies[1]["code"] == "too_many_sessions"
    await on_b.close()


async def test_one_identity_following_128_sessions_leaves_the_others_working(
    aiohttp_client, redis_url: str
) -> None:
    tokens = [{"name": "alice", "token": "alice-t"}, {"name": "bob", "token": "bob-t"}]
    config = settings(state={"redis_url": redis_url}, auth={"enabled": True, "tokens": tokens})
    a = await aiohttp_client(create_app(config, {"weather": scripted("x", "y")}))
    b = await aiohttp_client(create_app(config, {"weather": scripted("x", "y")}))
    alice = {"Authorization": "Bearer alice-t"}
    sids = []
    for _ in range(8):  # 128 sessions of alice, held by A
        ws = await open_ws(a, headers=alice)
        sids += [await create_session(ws) for _ in range(16)]
        await ws.close()
    await a.app[store_key].sync()
    followers = []
    for group in range(8):  # ...all followed through B, 16 a socket (the limit)
        ws = await open_ws(b, headers=alice)
        for sid in sids[group * 16 : group * 16 + 16]:
            await ws.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
            assert (await receive_until(ws, "agent.session_resumed"))[-1]["replayed"] == 0
        followers.append(ws)
    bob = await open_ws(b, headers={"Authorization": "Bearer bob-t"})
    async with asyncio.timeout(5):  # bob's create, message and resume work at once
        sid = await create_session(bob)
        await bob.send_json({"event": "user.message", "session_id": sid, "content": "hi"})
        assert (await receive_until(bob))[-1]["content"] == "x"
        await bob.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
        assert (await receive_until(bob, "agent.session_resumed"))[-1]["replayed"] == 3
    shared = redis.asyncio.from_url(redis_url, decode_responses=True)
    clients = await shared.client_list()
    await shared.aclose()
    replica = b.app[store_key].replica
    held = [c for c in clients if c.get("name") == f"myagent-ws:{replica}"]
    assert len(held) <= 8, len(held)  # followers share one reader, not a connection each
    for ws in [*followers, bob]:
        await ws.close()


async def test_socket_following_a_run_on_another_replica_is_not_idle(
    aiohttp_client, redis_url: str, gate_tool: GateTool
) -> None:
    idle_s = 0.4
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done", tools=[gate_tool])
    config = settings(state={"redis_url": redis_url}, server={"idle_timeout_s": idle_s})
    a = await aiohttp_client(create_app(config, {"weather": factory}))
    b = await aiohttp_client(create_app(config, {"weather": factory}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    await receive_until(on_b, "agent.session_resumed")
    await on_a.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(on_b, "agent.tool_call")  # the run goes on A; B's socket follows it
    await asyncio.sleep(idle_s * 3)  # the point is time passing: a run longer than idle_s
    gate_tool.gate.set()
    assert (await receive_until(on_b))[-1]["content"] == "done"  # still open
    async with asyncio.timeout(5):  # idle from the run's end
        assert (await on_b.receive()).type is WSMsgType.CLOSE
    await on_a.close()
