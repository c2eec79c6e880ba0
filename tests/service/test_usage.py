"""Usage per run and session, budgets, and their metrics, with the OpenAI-compatible server."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from tests.service.approval_support import approve, ask, mail_spec, mails, tool_messages
from tests.service.conftest import create_session, open_ws, receive_until, settings
from tests.support.openai_server import OpenAIServer, Text, ToolCalls, Usage


def message(sid: str, content: str = "mail bob") -> dict[str, str]:
    return {"event": "user.message", "session_id": sid, "content": content}


async def test_usage_of_runs_and_session_sums_what_the_endpoint_reported(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    first = mails("bob@example.com")
    first.usage = Usage(prompt_tokens=30, completion_tokens=5)
    model.script(first, Text("Sent.", usage=Usage(40, 8)), Text("Hi.", usage=Usage(3, 2)))
    spec = mail_spec(model, outbox, {"send_email": "auto"})
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json(message(sid))
    usage = (await receive_until(ws))[-1]["metadata"]["usage"]
    assert {k: v for k, v in usage.items() if k != "duration_s"} == {
        "prompt_tokens": 70, "completion_tokens": 13, "model_calls": 2, "tool_calls": 1,
    }  # fmt: skip
    assert usage["duration_s"] > 0
    assert model.requests[0].body["stream_options"] == {"include_usage": True}
    await ws.send_json(message(sid, "hello"))
    second = (await receive_until(ws))[-1]["metadata"]["usage"]
    await ws.send_json({"event": "user.get_usage", "session_id": sid, "request_id": "u"})
    reply = (await receive_until(ws, "agent.usage"))[-1]
    assert reply["request_id"] == "u" and reply["session_id"] == sid
    totals = reply["totals"]
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (73, 15)
    assert (totals["model_calls"], totals["tool_calls"]) == (3, 1)
    assert abs(totals["duration_s"] - usage["duration_s"] - second["duration_s"]) < 1e-3
    await ws.close()


async def test_session_budget_ends_the_run_and_answers_the_next_message_at_once(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    turn = mails("bob@example.com")
    turn.usage = Usage(prompt_tokens=40, completion_tokens=20)
    model.script(turn)
    spec = mail_spec(model, outbox, {}, budget={"max_tokens_per_session": 50})
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json(message(sid))
    frames = await receive_until(ws)
    end = frames[-1]
    assert (end["event"], end["code"]) == ("agent.error", "budget_exceeded")
    meta = end["metadata"]
    assert (meta["limit"], meta["max"], meta["used"]) == ("max_tokens_per_session", 50, 60)
    assert meta["usage"]["prompt_tokens"] + meta["usage"]["completion_tokens"] == 60
    assert "seq" in end and not [f for f in frames if f["event"] == "agent.tool_result"]
    assert outbox == []  # the run ended before its tool call
    await ws.send_json({**message(sid, "again"), "request_id": "m2"})
    again = await ws.receive_json()
    assert (again["event"], again["code"], again["request_id"]) == (
        "agent.error", "budget_exceeded", "m2",
    )  # fmt: skip
    assert "seq" not in again and again["metadata"]["limit"] == "max_tokens_per_session"
    assert len(model.requests) == 1  # no model call for it
    await ws.close()


async def test_run_budgets_stop_before_the_call_past_them(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("a@example.com", "b@example.com"), ToolCalls())
    budget = {"max_tool_calls_per_run": 1, "max_model_calls_per_run": 1}
    spec = mail_spec(model, outbox, {}, budget=budget)
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json(message(sid))
    end = (await receive_until(ws))[-1]
    assert end["code"] == "budget_exceeded" and end["metadata"]["limit"] == "max_tool_calls_per_run"
    assert outbox == ["a@example.com"]  # the second call never ran
    model.replies.clear()
    model.script(mails("c@example.com"), Text("never asked"))
    await ws.send_json(message(sid))
    end = (await receive_until(ws))[-1]
    assert end["metadata"]["limit"] == "max_model_calls_per_run" and end["metadata"]["used"] == 1
    assert len(model.requests) == 2 and outbox == ["a@example.com", "c@example.com"]
    assert [m["content"] for m in tool_messages(model.requests[1].body)][1].startswith("Error:")
    await ws.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_tokens_by_agent_budgets_and_approvals(
    aiohttp_client, model: OpenAIServer
) -> None:
    turn = mails("bob@example.com")
    turn.usage = Usage(prompt_tokens=40, completion_tokens=20)
    model.script(mails("a@example.com"), Text("ok"), turn)
    spec = mail_spec(model, [], budget={"max_tokens_per_run": 50})
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    step_id = (await ask(ws, sid))[-1]["step_id"]
    await ws.send_json(approve(sid, step_id))
    assert (await receive_until(ws))[-1]["event"] == "agent.final_answer"
    await ws.send_json(message(sid))
    assert (await receive_until(ws))[-1]["code"] == "budget_exceeded"
    m = samples(await (await client.get("/metrics")).text())
    assert m[("myagent_ws_agent_tokens_total", (("agent", "mail"), ("kind", "prompt")))] == 62
    assert m[("myagent_ws_llm_tokens_total", (("kind", "prompt"), ("model", "m")))] == 62
    limit = (("limit", "max_tokens_per_run"),)
    assert m[("myagent_ws_budget_exceeded_total", limit)] == 1
    assert m[("myagent_ws_runs_total", (("agent", "mail"), ("outcome", "budget")))] == 1
    approved = (("outcome", "approved"), ("tool", "send_email"))
    assert m[("myagent_ws_approvals_total", approved)] == 1
    assert m[("myagent_ws_approval_wait_seconds_count", ())] == 1
    await ws.close()
