"""The session dispatcher through aiohttp's test client: runs, errors, cancel, limits."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType

from myagent.errors import LLMError
from myagent.llm import AssistantTurn
from service.app import create_app
from tests.service.conftest import (
    TERMINAL,
    GateTool,
    create_session,
    offline_weather,
    open_ws,
    receive_until,
    scripted,
    settings,
)


async def test_user_message_streams_tool_call_and_final_answer(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await open_ws(client)
    session_id = await create_session(ws)
    await ws.send_json(
        {
            "event": "user.message",
            "session_id": session_id,
            "content": "查询北京天气",
            "request_id": "r-1",
        }
    )
    frames = await receive_until(ws)
    names = [f["event"] for f in frames]
    assert names[0] == "agent.thinking"
    call = next(f for f in frames if f["event"] == "agent.tool_call")
    assert call["metadata"] == {
        "tool": "get_weather",
        "args": {"city": "北京"},
        "status": "running",
    }
    result = next(f for f in frames if f["event"] == "agent.tool_result")
    assert result["step_id"] == call["step_id"] and result["metadata"]["status"] == "success"
    assert "agent.partial_answer" in names
    assert frames[-1]["event"] == "agent.final_answer"
    assert frames[-1]["content"] == "北京的天气：晴朗，25°C"
    partial = "".join(f["content"] for f in frames if f["event"] == "agent.partial_answer")
    assert partial == frames[-1]["content"]
    assert {f["request_id"] for f in frames} == {"r-1"}
    assert len({f["run_id"] for f in frames}) == 1
    assert [f["seq"] for f in frames] == list(range(2, 2 + len(frames)))  # seq 1: session_created
    await ws.close()


async def test_root_path_accepts_the_same_upgrade(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await open_ws(client, "/")
    assert await create_session(ws)
    await ws.close()


async def test_two_sessions_on_one_connection_keep_separate_seq(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await open_ws(client)
    first, second = await create_session(ws), await create_session(ws)
    for sid, city in ((first, "北京"), (second, "上海")):
        await ws.send_json(
            {"event": "user.message", "session_id": sid, "content": f"查询{city}天气"}
        )
    frames = await receive_until(ws, "agent.final_answer")
    frames += await receive_until(ws, "agent.final_answer")
    answers = {f["session_id"]: f["content"] for f in frames if f["event"] == "agent.final_answer"}
    assert answers == {first: "北京的天气：晴朗，25°C", second: "上海的天气：晴朗，25°C"}
    for sid in (first, second):
        seqs = [f["seq"] for f in frames if f["session_id"] == sid]
        assert seqs == list(range(2, 2 + len(seqs)))
    await ws.close()


async def test_two_connections_cannot_see_each_others_frames(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    a, b = await open_ws(client), await open_ws(client)
    sa, sb = await create_session(a), await create_session(b)
    await a.send_json({"event": "user.message", "session_id": sa, "content": "查询北京天气"})
    await b.send_json({"event": "user.message", "session_id": sb, "content": "查询上海天气"})
    fa, fb = await receive_until(a), await receive_until(b)
    assert {f["session_id"] for f in fa} == {sa} and {f["session_id"] for f in fb} == {sb}
    assert "北京" in fa[-1]["content"] and "上海" in fb[-1]["content"]
    await a.close()
    await b.close()


async def test_cancel_mid_tool_interrupts_run_and_cancels_tool(
    aiohttp_client, gate_tool: GateTool
) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "after", tools=[gate_tool])
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    await asyncio.wait_for(gate_tool.started.wait(), 5)
    await ws.send_json({"event": "user.cancel", "session_id": sid, "request_id": "c-1"})
    frames = await receive_until(ws)
    assert frames[-1]["event"] == "agent.interrupted"
    assert gate_tool.cancelled.is_set()
    # the session is usable again: a new run gets its own terminal frame
    await ws.send_json({"event": "user.cancel", "session_id": sid})
    error = (await receive_until(ws, "agent.error"))[-1]
    assert error["code"] == "no_active_run"
    await ws.close()


async def test_second_message_while_running_is_session_busy(
    aiohttp_client, gate_tool: GateTool
) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done", tools=[gate_tool])
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    await ws.send_json(
        {"event": "user.message", "session_id": sid, "content": "again", "request_id": "busy-1"}
    )
    error = (await receive_until(ws, "agent.error"))[-1]
    assert (error["code"], error["request_id"], error["session_id"]) == (
        "session_busy",
        "busy-1",
        sid,
    )
    gate_tool.gate.set()
    frames = await receive_until(ws)
    assert frames[-1]["event"] == "agent.final_answer" and frames[-1]["content"] == "done"
    await ws.close()


async def test_every_run_ends_with_exactly_one_terminal_frame(
    aiohttp_client, gate_tool: GateTool
) -> None:
    factory = scripted(
        "fine",  # run 1: final answer
        LLMError("the model endpoint answered HTTP 500"),  # run 2: agent.error
        AssistantTurn.call("slow_lookup", query="q"),  # run 3: interrupted
        tools=[gate_tool],
    )
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    ends = []
    for text in ("one", "two", "three"):
        await ws.send_json({"event": "user.message", "session_id": sid, "content": text})
        if text == "three":
            await receive_until(ws, "agent.tool_call")
            await ws.send_json({"event": "user.cancel", "session_id": sid})
        frames = await receive_until(ws)
        ends.append([f for f in frames if f["event"] in TERMINAL])
    await ws.send_json({"event": "user.ping", "request_id": "p"})
    tail = await receive_until(ws, "system.pong")  # nothing else arrived in between
    assert [f["event"] for f in tail] == ["system.pong"] and tail[0]["request_id"] == "p"
    assert [[f["event"] for f in e] for e in ends] == [
        ["agent.final_answer"],
        ["agent.error"],
        ["agent.interrupted"],
    ]
    assert ends[1][0]["code"] == "llm_failed"
    await ws.close()


async def test_bad_frames_get_error_codes_and_the_socket_stays_open(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await open_ws(client)
    cases = {
        "{": "invalid_json",
        "[1,2]": "invalid_json",
        "NaN": "invalid_json",
        "[" * 10000 + "]" * 10000: "invalid_json",
        "42": "invalid_message",
        "{}": "invalid_message",
        '{"event":"user.hack"}': "unknown_event",
        '{"event":"user.message","content":5,"session_id":"s"}': "invalid_message",
        '{"event":"user.message","content":"hi"}': "invalid_message",
        '{"event":"user.message","content":"hi","session_id":null}': "invalid_message",
        '{"event":"user.resume_session","session_id":"s","last_seq":"x"}': "invalid_message",
        '{"event":"user.resume_session","session_id":"s","last_seq":-1}': "invalid_message",
        '{"event":"user.message","content":"hi","session_id":"nope"}': "session_not_found",
        '{"event":"user.create_session","agent":"nope"}': "invalid_message",
    }
    for text, code in cases.items():
        await ws.send_str(text)
        error = await ws.receive_json()
        assert (error["event"], error["code"]) == ("agent.error", code), text[:60]
        assert error["error"]
    await ws.send_bytes(b"\x00\x01")
    error = await ws.receive_json()
    assert error["code"] == "invalid_message" and "text frames only" in error["error"]
    missing = json.loads('{"event":"user.message","content":"hi"}')
    await ws.send_json(missing)
    assert "session_id" in (await ws.receive_json())["error"]
    assert await create_session(ws)  # still open and working
    await ws.close()


async def test_too_many_sessions_per_connection(aiohttp_client) -> None:
    app = create_app(settings(sessions={"max_per_connection": 2}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    ws = await open_ws(client)
    await create_session(ws)
    await create_session(ws)
    await ws.send_json({"event": "user.create_session"})
    error = await ws.receive_json()
    assert error["code"] == "too_many_sessions"
    await ws.close()


async def test_frame_over_max_message_bytes_closes_with_1009(aiohttp_client) -> None:
    app = create_app(settings(server={"max_message_bytes": 4096}), {"weather": offline_weather})
    client = await aiohttp_client(app)
    ws = await open_ws(client)
    ok = json.dumps({"event": "user.ping", "request_id": "x" * 10})
    await ws.send_str(ok + " " * (4095 - len(ok)))  # one byte under the limit: accepted
    assert (await ws.receive_json())["event"] == "system.pong"
    await ws.send_str("x" * 4096)
    msg = await ws.receive()
    assert msg.type is WSMsgType.CLOSE and msg.data == 1009
    await ws.close()


async def test_close_session_cancels_and_forgets_it(aiohttp_client, gate_tool: GateTool) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), tools=[gate_tool])
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    await ws.send_json({"event": "user.close_session", "session_id": sid})
    frames = await receive_until(ws, "agent.session_closed")
    assert [f["event"] for f in frames][-2:] == ["agent.interrupted", "agent.session_closed"]
    assert gate_tool.cancelled.is_set()
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "again"})
    assert (await ws.receive_json())["code"] == "session_not_found"
    await ws.close()


async def test_disconnect_mid_run_cancels_everything_with_on_disconnect_cancel(
    aiohttp_client, gate_tool: GateTool
) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), tools=[gate_tool])
    app = create_app(settings(sessions={"on_disconnect": "cancel"}), {"weather": factory})
    client = await aiohttp_client(app)
    baseline = asyncio.all_tasks()
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    await ws.close()
    await asyncio.wait_for(gate_tool.cancelled.wait(), 5)
    started = asyncio.all_tasks() - baseline - {asyncio.current_task()}
    if started:  # the run and the connection's handler and writer: all must end
        _, pending = await asyncio.wait(started, timeout=5)
        assert not pending, pending
    from service.keys import connections_key, sessions_key

    assert len(app[sessions_key]) == 0 and not app[connections_key]


async def test_message_over_max_message_chars_is_refused_before_any_work(aiohttp_client) -> None:
    config = settings(sessions={"max_message_chars": 100})
    client = await aiohttp_client(create_app(config, {"weather": scripted("short one")}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "天气 " + "x" * 100})
    refused = await ws.receive_json()
    assert (refused["event"], refused["code"]) == ("agent.error", "message_too_large")
    assert "seq" not in refused  # no run started: nothing in the session's log
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "x" * 100})
    assert (await receive_until(ws))[-1]["content"] == "short one"  # at the limit: served
    await ws.close()
