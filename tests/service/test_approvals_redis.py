"""Approvals across replicas: two service instances on a real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio
from aiohttp import WSMsgType

from service.app import create_app, drain
from service.keys import sessions_key, store_key
from service.state.redis import session_key
from tests.service.approval_support import approve, ask, mail_spec, mails
from tests.service.conftest import GateTool, create_session, open_ws, receive_until, settings
from tests.support.openai_server import Call, OpenAIServer, Text, ToolCalls


async def test_approve_through_another_replica_is_carried_out_by_the_holder(
    aiohttp_client, redis_url: str, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Sent from A."))
    config = settings(state={"redis_url": redis_url})
    spec = mail_spec(model, outbox)
    a = await aiohttp_client(create_app(config, {"mail": spec}))
    b = await aiohttp_client(create_app(config, {"mail": spec}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    step_id = (await ask(on_a, sid))[-1]["step_id"]
    await on_a.close()
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    replay = await receive_until(on_b, "agent.session_resumed")
    assert [f["step_id"] for f in replay if f["event"] == "agent.approval_required"] == [step_id]
    await on_b.send_json(approve(sid, step_id))  # forwarded to A, which holds the session
    rest = await receive_until(on_b)
    assert rest[-1]["content"] == "Sent from A." and outbox == ["bob@example.com"]
    assert sid in a.app[sessions_key].sessions and sid not in b.app[sessions_key].sessions
    await on_b.send_json(approve(sid, step_id))
    assert (await receive_until(on_b, "agent.error"))[-1]["code"] == "no_pending_approval"
    await on_b.close()


async def test_replica_that_adopts_a_waiting_run_waits_for_the_same_answer(
    aiohttp_client, redis_url: str, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Sent from B."))
    config = settings(state={"redis_url": redis_url})
    spec = mail_spec(model, outbox)
    a = await aiohttp_client(create_app(config, {"mail": spec}))
    b = await aiohttp_client(create_app(config, {"mail": spec}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    card = (await ask(on_a, sid))[-1]
    await on_a.close()
    await a.app[store_key].sync()
    shared = redis.asyncio.from_url(redis_url)
    await shared.hset(session_key(sid), "owner", "f" * 32)  # as if A had died: no one there
    await shared.aclose()
    on_b = await open_ws(b)
    await on_b.send_json(
        {"event": "user.resume_session", "session_id": sid, "last_seq": card["seq"] - 1}
    )
    replay = await receive_until(on_b, "agent.session_resumed")
    assert [f["event"] for f in replay] == ["agent.approval_required", "agent.session_resumed"]
    assert sid in b.app[sessions_key].sessions  # adopted: its run goes on here
    usage = {"event": "user.get_usage", "session_id": sid}
    await on_b.send_json(usage)
    assert (await receive_until(on_b, "agent.usage"))[-1]["totals"]["model_calls"] == 1
    await on_b.send_json(approve(sid, card["step_id"]))
    rest = await receive_until(on_b)
    assert [f["event"] for f in rest if f["event"].startswith("agent.tool")] == [
        "agent.tool_result"
    ]
    assert rest[-1]["event"] == "agent.final_answer" and rest[-1]["content"] == "Sent from B."
    assert rest[-1]["run_id"] == card["run_id"] and outbox == ["bob@example.com"]
    seqs = [f["seq"] for f in [card, *rest]]
    assert seqs == list(range(card["seq"], card["seq"] + len(seqs)))
    assert rest[-1]["metadata"]["usage"]["model_calls"] == 2  # the run's: on A, then on B
    await on_b.send_json(usage)
    assert (await receive_until(on_b, "agent.usage"))[-1]["totals"]["model_calls"] == 2
    second = model.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]
    await on_b.close()


async def test_run_lost_on_adoption_carries_what_the_cut_run_used(
    aiohttp_client, redis_url: str, model: OpenAIServer, gate_tool: GateTool
) -> None:
    model.script(ToolCalls(Call("slow_lookup", '{"query": "x"}')))
    config = settings(state={"redis_url": redis_url})
    spec = mail_spec(model, [], {}, [gate_tool])
    a = await aiohttp_client(create_app(config, {"mail": spec}))
    b = await aiohttp_client(create_app(config, {"mail": spec}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.send_json({"event": "user.message", "session_id": sid, "content": "slow"})
    await receive_until(on_a, "agent.tool_call")
    await on_a.close()
    await a.app[store_key].sync()
    shared = redis.asyncio.from_url(redis_url)
    await shared.hset(session_key(sid), "owner", "f" * 32)  # A died mid-tool
    await shared.aclose()
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    replay = await receive_until(on_b, "agent.session_resumed")
    lost = next(f for f in replay if f["event"] == "agent.error")
    assert lost["code"] == "run_lost" and lost["metadata"]["usage"]["model_calls"] == 1
    await on_b.send_json({"event": "user.get_usage", "session_id": sid})
    totals = (await receive_until(on_b, "agent.usage"))[-1]["totals"]
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (11, 7)  # the test server's
    await on_b.close()


async def test_cancel_and_refusal_through_another_replica(
    aiohttp_client, redis_url: str, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Not sent."), mails("eve@example.com"))
    config = settings(state={"redis_url": redis_url})
    spec = mail_spec(model, outbox)
    a = await aiohttp_client(create_app(config, {"mail": spec}))
    b = await aiohttp_client(create_app(config, {"mail": spec}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    await on_a.close()
    on_b = await open_ws(b)
    await on_b.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    await receive_until(on_b, "agent.session_resumed")
    step_id = (await ask(on_b, sid))[-1]["step_id"]  # the run goes on A
    await on_b.send_json(approve(sid, step_id, False, reason="not now"))
    rest = await receive_until(on_b)
    result = next(f for f in rest if f["event"] == "agent.tool_result")
    assert result["metadata"]["status"] == "denied" and "not now" in result["content"]
    step_id = (await ask(on_b, sid, "mail eve"))[-1]["step_id"]
    await on_b.send_json({"event": "user.cancel", "session_id": sid})
    assert (await receive_until(on_b))[-1]["event"] == "agent.interrupted"
    await on_b.send_json(approve(sid, step_id))
    assert (await receive_until(on_b, "agent.error"))[-1]["code"] == "no_pending_approval"
    assert outbox == [] and sid in a.app[sessions_key].sessions
    await on_b.close()


async def test_drained_replica_hands_a_waiting_run_over_instead_of_ending_it(
    aiohttp_client, redis_url: str, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Sent after the deploy."))
    config = settings(state={"redis_url": redis_url}, server={"shutdown_grace_s": 0})
    spec = mail_spec(model, outbox)
    a = await aiohttp_client(create_app(config, {"mail": spec}))
    b = await aiohttp_client(create_app(config, {"mail": spec}))
    on_a = await open_ws(a)
    sid = await create_session(on_a)
    card = (await ask(on_a, sid))[-1]
    await drain(a.app)  # SIGTERM (a rolling deploy) while the call waits for a person
    told = []
    async with asyncio.timeout(5):
        while (msg := await on_a.receive()).type is WSMsgType.TEXT:
            told.append(msg.json()["event"])
    assert told == ["system.shutdown"]  # no agent.interrupted: the run is handed over
    on_b = await open_ws(b)
    await on_b.send_json(
        {"event": "user.resume_session", "session_id": sid, "last_seq": card["seq"] - 1}
    )
    replay = await receive_until(on_b, "agent.session_resumed")
    assert [f["event"] for f in replay] == ["agent.approval_required", "agent.session_resumed"]
    await on_b.send_json(approve(sid, card["step_id"]))
    rest = await receive_until(on_b)
    assert rest[-1]["content"] == "Sent after the deploy." and rest[-1]["run_id"] == card["run_id"]
    assert outbox == ["bob@example.com"] and sid in b.app[sessions_key].sessions
    await on_b.close()
