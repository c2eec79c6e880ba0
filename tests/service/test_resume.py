"""Sessions that outlive sockets: resume, retention, multitask policies, retried requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from myagent.llm import AssistantTurn
from service.app import create_app
from service.keys import connections_key, sessions_key
from tests.service.conftest import (
    GateTool,
    create_session,
    offline_weather,
    open_ws,
    receive_until,
    scripted,
    settings,
)


async def test_resume_on_new_connection_replays_missed_events_then_streams_live(
    aiohttp_client, gate_tool: GateTool
) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "all done", tools=[gate_tool])
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    first = await open_ws(client)
    sid = await create_session(first)
    await first.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    seen = await receive_until(first, "agent.thinking")  # seq 2 only
    last_seq = seen[-1]["seq"]
    await first.close()  # drop mid-run: the run goes on (on_disconnect: continue)
    await asyncio.wait_for(gate_tool.started.wait(), 5)
    second = await open_ws(client)
    await second.send_json(
        {
            "event": "user.resume_session",
            "session_id": sid,
            "last_seq": last_seq,
            "request_id": "res",
        }
    )
    replay = await receive_until(second, "agent.session_resumed")
    resumed = replay.pop()
    assert resumed["request_id"] == "res" and resumed["replayed"] == len(replay)
    assert [f["event"] for f in replay] == ["agent.tool_call"]
    gate_tool.gate.set()  # the run continues and streams live to the new socket
    live = await receive_until(second)
    frames = [*seen, *replay, *live]
    assert [f["seq"] for f in frames] == list(range(2, 2 + len(frames)))
    assert frames[-1]["event"] == "agent.final_answer" and frames[-1]["content"] == "all done"
    await second.close()


async def test_resume_older_than_the_buffer_is_replay_unavailable(aiohttp_client) -> None:
    app = create_app(settings(sessions={"buffer_events": 10}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    ws = await open_ws(client)
    sid = await create_session(ws)
    for _ in range(2):
        await ws.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
        last = (await receive_until(ws))[-1]
    assert last["seq"] > 10
    await ws.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 0})
    error = await ws.receive_json()
    assert error["code"] == "replay_unavailable"
    assert error["oldest_seq"] == last["seq"] - 9
    await ws.send_json(
        {"event": "user.resume_session", "session_id": sid, "last_seq": last["seq"] - 10}
    )  # exactly the oldest held: fine
    frames = await receive_until(ws, "agent.session_resumed")
    assert frames[-1]["replayed"] == 10 and frames[0]["seq"] == last["seq"] - 9
    await ws.close()


async def test_resume_of_unknown_session_is_session_not_found(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await open_ws(client)
    await ws.send_json({"event": "user.resume_session", "session_id": "f" * 32, "last_seq": 0})
    assert (await ws.receive_json())["code"] == "session_not_found"
    await ws.close()


async def test_detached_session_expires_after_retention(aiohttp_client) -> None:
    app = create_app(settings(sessions={"retention_s": 0}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.close()
    registry = app[sessions_key]
    async with asyncio.timeout(5):
        while sid in registry.sessions:
            await registry.reap(0)
    second = await open_ws(client)
    await second.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    assert (await second.receive_json())["code"] == "session_not_found"
    await second.close()


async def running_session(
    aiohttp_client, gate_tool: GateTool, multitask: str, *answers: str
) -> tuple[ClientWebSocketResponse, str]:
    """A session whose first message ("1") is held in a tool call; then `answers` are scripted."""
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), *answers, tools=[gate_tool])
    app = create_app(settings(sessions={"multitask": multitask}), {"weather": factory})
    ws = await open_ws(await aiohttp_client(app))
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "1"})
    await receive_until(ws, "agent.tool_call")
    return ws, sid


async def test_multitask_enqueue_runs_messages_in_order(
    aiohttp_client, gate_tool: GateTool
) -> None:
    ws, sid = await running_session(aiohttp_client, gate_tool, "enqueue", "first", "second")
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "2"})
    gate_tool.gate.set()
    one, two = await receive_until(ws), await receive_until(ws)
    assert (one[-1]["content"], two[-1]["content"]) == ("first", "second")
    assert one[-1]["run_id"] != two[-1]["run_id"]
    await ws.close()


async def test_multitask_interrupt_cancels_the_running_one(
    aiohttp_client, gate_tool: GateTool
) -> None:
    ws, sid = await running_session(aiohttp_client, gate_tool, "interrupt", "newer")
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "2"})
    first, second = await receive_until(ws), await receive_until(ws)
    assert first[-1]["event"] == "agent.interrupted" and gate_tool.cancelled.is_set()
    assert second[-1]["event"] == "agent.final_answer" and second[-1]["content"] == "newer"
    await ws.close()


async def test_multitask_interrupt_the_newest_of_quick_messages_wins(
    aiohttp_client, gate_tool: GateTool
) -> None:
    ws, sid = await running_session(aiohttp_client, gate_tool, "interrupt", "third")
    for n in ("2", "3"):  # in one burst: "2" is still waiting when "3" comes
        await ws.send_json(
            {"event": "user.message", "session_id": sid, "content": n, "request_id": n}
        )
    ends = [(await receive_until(ws))[-1] for _ in range(3)]
    assert sorted((e["event"], e.get("request_id", "")) for e in ends) == [
        ("agent.final_answer", "3"),  # the script has one answer: "2" never ran
        ("agent.interrupted", ""),  # the run of "1"
        ("agent.interrupted", "2"),  # superseded before it started
    ]
    await ws.send_json(
        {"event": "user.message", "session_id": sid, "content": "2", "request_id": "2"}
    )
    assert (await receive_until(ws))[-1] == next(e for e in ends if e.get("request_id") == "2")
    await ws.close()


async def test_retried_request_id_never_starts_a_second_run(aiohttp_client) -> None:
    factory = scripted("only once")  # a second run would exhaust the script
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    message = {"event": "user.message", "session_id": sid, "content": "hi", "request_id": "m1"}
    await ws.send_json(message)
    first = (await receive_until(ws))[-1]
    await ws.send_json(message)
    again = (await receive_until(ws))[-1]
    assert again == first  # the same frame, same seq: the first run answers
    await ws.close()


@pytest.mark.parametrize(
    "bound, frames",
    [({"send_queue_frames": 20}, 20), ({"send_queue_bytes": 100_000}, 5)],  # 5 x 20 kB
)
async def test_slow_consumer_is_closed_1013_with_bounded_queue_and_stays_resumable(
    aiohttp_client, bound: dict[str, int], frames: int
) -> None:
    big = "x" * 20_000
    factory = scripted(AssistantTurn(content=big * 50))  # 1 MB streamed in 20 kB deltas
    app = create_app(
        settings(server=bound, sessions={"buffer_bytes": 8_000_000}),
        {"weather": lambda: _chunked(factory())},
    )
    client = await aiohttp_client(app)
    slow = await open_ws(client)
    sid = await create_session(slow)
    await slow.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    received = 0
    async with asyncio.timeout(10):  # only now look: the server closed us with 1013
        while (msg := await slow.receive()).type is WSMsgType.TEXT:
            received += 1
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1013)
    assert received <= frames + 2  # the queue bound (+ connected, session_created)
    fast = await open_ws(client)  # the run goes on regardless, and stays resumable
    await fast.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    frames = await receive_until(fast, "agent.final_answer", within_s=20)
    frames = [f for f in frames if f["event"] != "agent.session_resumed"]
    assert [f["seq"] for f in frames] == list(range(2, len(frames) + 2))
    await fast.close()
    await slow.close()


def _chunked(agent):  # type: ignore[no-untyped-def]
    agent.llm.chunk_chars = 20_000
    return agent


async def test_many_clients_dropped_at_random_points_miss_nothing(aiohttp_client) -> None:
    import random

    from myagent import create_react_agent
    from myagent.offline import OfflineLLM
    from tests.service.conftest import WeatherTool

    def slow_offline():  # type: ignore[no-untyped-def]
        return create_react_agent(
            "weather", tools=[WeatherTool()], llm=OfflineLLM(token_delay_s=0.001, chunk_chars=1)
        )

    app = create_app(settings(), {"weather": slow_offline})
    client = await aiohttp_client(app)
    rng = random.Random(7)

    async def one(index: int) -> None:
        ws = await open_ws(client)
        sid = await create_session(ws)
        await ws.send_json(
            {"event": "user.message", "session_id": sid, "content": f"查询城市{index}天气"}
        )
        got = []
        for _ in range(rng.randint(0, 12)):  # drop after a random number of events
            got.append(await ws.receive_json())
            if got[-1]["event"] == "agent.final_answer":
                break
        await ws.close()
        assert all("seq" in f for f in got), got
        last_seq = got[-1]["seq"] if got else 1
        ws = await open_ws(client)
        await ws.send_json(
            {"event": "user.resume_session", "session_id": sid, "last_seq": last_seq}
        )
        rest = [f for f in await receive_until(ws, "agent.session_resumed")][:-1]
        if not any(f["event"] == "agent.final_answer" for f in got + rest):
            rest += await receive_until(ws)
        frames = got + rest
        await ws.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
        held = (await receive_until(ws, "agent.session_resumed"))[:-1]
        await ws.close()
        assert frames == held  # exactly the server's log for that session, in order
        assert frames[-1]["event"] == "agent.final_answer"

    async with asyncio.timeout(30):
        await asyncio.gather(*(one(i) for i in range(40)))


async def test_client_that_never_reads_holds_memory_under_the_bound(aiohttp_client) -> None:
    import tracemalloc
    from collections.abc import AsyncIterator, Sequence

    from myagent import create_react_agent
    from myagent.schema import Message

    delta = "y" * 20_000
    count = 2_000  # 40 MB streamed at a client that reads nothing

    streamed = asyncio.Event()

    class Firehose:
        model_name = "firehose"

        async def stream(
            self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
        ) -> AsyncIterator[str | AssistantTurn]:
            for _ in range(count):
                await asyncio.sleep(0)  # a model streaming tokens: other tasks run meanwhile
                yield delta
            streamed.set()
            yield AssistantTurn(content="done")

    bounds = {
        "server": {"send_queue_frames": 50},
        "sessions": {"buffer_bytes": 2_000_000, "buffer_events": 10_000},
    }
    app = create_app(
        settings(**bounds), {"weather": lambda: create_react_agent("w", llm=Firehose())}
    )
    client = await aiohttp_client(app)
    ws = await open_ws(client)
    sid = await create_session(ws)
    tracemalloc.start()
    try:
        await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
        await asyncio.wait_for(streamed.wait(), 60)  # the whole run, never reading the socket
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the bound: the send queue (50 x 20 kB) + the replay buffer (2 MB) + socket buffers
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB for 40 MB streamed"
    reader = await open_ws(client)
    await reader.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 0})
    oldest = (await reader.receive_json())["oldest_seq"]  # the replay buffer was trimmed
    await reader.send_json(
        {"event": "user.resume_session", "session_id": sid, "last_seq": oldest - 1}
    )
    held = await receive_until(reader, "agent.session_resumed", within_s=20)
    assert sum(len(json.dumps(f, ensure_ascii=False)) for f in held[:-1]) <= 2_100_000
    await reader.close()
    msg = await ws.receive()
    while msg.type is WSMsgType.TEXT:  # what the socket held before the server gave up on it
        msg = await ws.receive()
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1013)


async def test_another_identitys_session_is_not_found_exactly_like_a_random_one(
    aiohttp_client,
) -> None:
    tokens = [{"name": "alice", "token": "alice-token"}, {"name": "bob", "token": "bob-token"}]
    app = create_app(
        settings(auth={"enabled": True, "tokens": tokens}), {"weather": offline_weather}
    )
    client = await aiohttp_client(app)
    alice = await client.ws_connect("/ws", headers={"Authorization": "Bearer alice-token"})
    await alice.receive_json()
    sid = await create_session(alice)
    bob = await client.ws_connect("/ws?token=bob-token")
    await bob.receive_json()
    answers = []
    for target in (sid, "0" * 32):
        for frame in (
            {"event": "user.resume_session", "session_id": target, "last_seq": 0},
            {"event": "user.message", "session_id": target, "content": "查询北京天气"},
            {"event": "user.cancel", "session_id": target},
            {"event": "user.close_session", "session_id": target},
        ):
            await bob.send_json(frame)
            reply = await bob.receive_json()
            answers.append((reply["code"], reply["error"].replace(target, "<id>")))
    assert {code for code, _ in answers} == {"session_not_found"}
    assert answers[:4] == answers[4:]  # the same words whether it exists or not
    await alice.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    frames = await receive_until(alice)
    assert frames[-1]["event"] == "agent.final_answer"  # alice's session is untouched
    await bob.send_json({"event": "user.ping"})
    assert (await bob.receive_json())["event"] == "system.pong"  # nothing of alice's reached bob
    await alice.close()
    await bob.close()


class WatchedSet(set):  # type: ignore[type-arg]
    """The app's set of connections, telling when one is discarded (its handler has ended)."""

    def __init__(self) -> None:
        super().__init__()
        self.discarded = asyncio.Event()

    def discard(self, item: object) -> None:
        super().discard(item)
        self.discarded.set()


async def two_sockets_on_one_session(
    client: Any,
) -> tuple[ClientWebSocketResponse, ClientWebSocketResponse, str]:
    """A session created on one socket, and a second socket that resumed it."""
    first = await open_ws(client)
    sid = await create_session(first)
    second = await open_ws(client)
    await second.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    await receive_until(second, "agent.session_resumed")
    return first, second, sid


async def test_old_socket_closing_spares_a_session_another_socket_took_over(
    aiohttp_client,
) -> None:
    app = create_app(settings(sessions={"on_disconnect": "cancel"}), {"weather": offline_weather})
    app[connections_key] = connections = WatchedSet()
    client = await aiohttp_client(app)
    old, new, sid = await two_sockets_on_one_session(client)
    await old.close()
    await asyncio.wait_for(connections.discarded.wait(), 5)  # the old socket is released
    await new.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    assert (await receive_until(new))[-1]["event"] == "agent.final_answer"  # still alive
    await new.close()


async def test_two_sockets_on_one_session_both_get_every_live_frame(aiohttp_client) -> None:
    """Two tabs on one conversation: the second resuming it does not silence the first; each
    gets every frame of a run either one starts, once, in order; with on_disconnect: cancel,
    one of them closing spares the session the other still listens to."""
    app = create_app(settings(sessions={"on_disconnect": "cancel"}), {"weather": offline_weather})
    app[connections_key] = connections = WatchedSet()
    client = await aiohttp_client(app)
    first, second, sid = await two_sockets_on_one_session(client)
    await first.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    runs = [await receive_until(ws) for ws in (first, second)]
    assert runs[0] == runs[1] and runs[0][-1]["event"] == "agent.final_answer"
    assert [f["seq"] for f in runs[0]] == list(range(2, 2 + len(runs[0])))
    await first.close()
    await asyncio.wait_for(connections.discarded.wait(), 5)  # the first socket is released
    await second.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    again = await receive_until(second)
    assert again[-1]["event"] == "agent.final_answer"
    assert again[0]["seq"] == runs[0][-1]["seq"] + 1
    await second.close()


async def test_taking_sessions_over_by_cancel_stops_at_max_per_connection(aiohttp_client) -> None:
    app = create_app(settings(sessions={"max_per_connection": 2}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    sids = []
    for _ in range(2):
        ws = await open_ws(client)
        sids += [await create_session(ws), await create_session(ws)]
    taker = await open_ws(client)  # the same identity: it may take them over, up to the limit
    codes = []
    for sid in sids:
        await taker.send_json({"event": "user.cancel", "session_id": sid})
        codes.append((await taker.receive_json())["code"])
    assert codes == ["no_active_run", "no_active_run", "too_many_sessions", "too_many_sessions"]
    await taker.close()


async def test_request_ids_are_remembered_for_the_last_64_messages(aiohttp_client) -> None:
    from service.runs import REMEMBERED_REQUESTS

    assert REMEMBERED_REQUESTS == 64  # docs/protocol.md says so
    answers = [f"a{n}" for n in range(REMEMBERED_REQUESTS + 2)]
    client = await aiohttp_client(create_app(settings(), {"weather": scripted(*answers)}))
    ws = await open_ws(client)
    sid = await create_session(ws)

    async def say(request_id: str) -> dict[str, object]:
        await ws.send_json(
            {"event": "user.message", "session_id": sid, "content": "x", "request_id": request_id}
        )
        return (await receive_until(ws))[-1]

    first = await say("m0")
    for n in range(1, REMEMBERED_REQUESTS):  # 63 later messages: m0 is still remembered
        assert (await say(f"m{n}"))["content"] == f"a{n}"
    assert await say("m0") == first  # the first run's answer, same seq: no second run
    assert (await say(f"m{REMEMBERED_REQUESTS}"))["content"] == f"a{REMEMBERED_REQUESTS}"
    again = await say("m0")  # 64 later messages: forgotten, so a new run
    assert again["content"] == f"a{REMEMBERED_REQUESTS + 1}" and again["seq"] > first["seq"]
    await ws.close()
