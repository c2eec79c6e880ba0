"""Tool approvals over real sockets, with the OpenAI-compatible test server as the model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent_loader.errors import AgentLoadError
from service.app import create_app
from tests.service.approval_support import (
    approve,
    ask,
    email_call,
    mail_spec,
    mails,
    tool_messages,
)
from tests.service.conftest import create_session, open_ws, receive_until, settings
from tests.support.openai_server import Call, OpenAIServer, Text, ToolCalls

ROOT = Path(__file__).resolve().parents[2]


async def test_approved_call_runs_and_the_run_goes_on(aiohttp_client, model: OpenAIServer) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Sent ", "it."))
    client = await aiohttp_client(create_app(settings(), {"mail": mail_spec(model, outbox)}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    frames = await ask(ws, sid)
    call, required = frames[-2], frames[-1]
    assert call["event"] == "agent.tool_call"
    assert call["metadata"]["status"] == "awaiting_approval"
    assert required["event"] == "agent.approval_required"
    assert required["step_id"] == call["step_id"] and required["seq"] == call["seq"] + 1
    assert required["metadata"] == {"tool": "send_email",
                                    "args": {"to": "bob@example.com", "subject": "hi"}}  # fmt: skip
    assert required["timeout_s"] == 300 and required["run_id"] == call["run_id"]
    assert outbox == [] and len(model.requests) == 1  # it waits
    await ws.send_json(approve(sid, call["step_id"]))
    rest = await receive_until(ws)
    result = next(f for f in rest if f["event"] == "agent.tool_result")
    assert result["metadata"]["status"] == "success" and outbox == ["bob@example.com"]
    assert rest[-1]["event"] == "agent.final_answer" and rest[-1]["content"] == "Sent it."
    assert tool_messages(model.requests[1].body)[0]["content"] == "Email sent to bob@example.com"
    await ws.close()


async def test_refused_call_does_not_run_and_the_model_gets_the_reason(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Not sent."))
    client = await aiohttp_client(create_app(settings(), {"mail": mail_spec(model, outbox)}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    step_id = (await ask(ws, sid))[-1]["step_id"]
    await ws.send_json(approve(sid, step_id, False, reason="wrong person"))
    rest = await receive_until(ws)
    result = next(f for f in rest if f["event"] == "agent.tool_result")
    assert result["metadata"]["status"] == "denied" and "wrong person" in result["content"]
    assert outbox == [] and rest[-1]["content"] == "Not sent."
    told = tool_messages(model.requests[1].body)[0]["content"]
    assert "refused" in told and "wrong person" in told
    await ws.send_json(approve(sid, step_id))  # answered already
    error = await ws.receive_json()
    assert error["code"] == "no_pending_approval" and "seq" not in error
    await ws.close()


async def test_unanswered_call_expires_after_approval_timeout(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Timed out."))
    spec = mail_spec(model, outbox, approval_timeout_s=0.3)
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    assert (await ask(ws, sid))[-1]["timeout_s"] == 0.3
    rest = await receive_until(ws)
    result = next(f for f in rest if f["event"] == "agent.tool_result")
    assert result["metadata"]["status"] == "expired"
    assert "no answer within 0.3 s" in result["content"]
    assert outbox == [] and rest[-1]["event"] == "agent.final_answer"
    assert "no one approved it in time" in tool_messages(model.requests[1].body)[0]["content"]
    await ws.close()


async def test_cancel_while_waiting_interrupts_and_the_session_goes_on(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Hello again."))
    client = await aiohttp_client(create_app(settings(), {"mail": mail_spec(model, outbox)}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    step_id = (await ask(ws, sid))[-1]["step_id"]
    await ws.send_json({"event": "user.cancel", "session_id": sid})
    assert (await receive_until(ws))[-1]["event"] == "agent.interrupted"
    await ws.send_json(approve(sid, step_id))  # its run is over
    assert (await ws.receive_json())["code"] == "no_pending_approval"
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "hi"})
    assert (await receive_until(ws))[-1]["content"] == "Hello again."
    assert outbox == []
    assert "cancelled" in tool_messages(model.requests[1].body)[0]["content"]  # memory repaired
    await ws.close()


async def test_two_calls_in_one_turn_each_wait_for_their_own_answer(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("a@example.com", "b@example.com"), Text("One of two."))
    client = await aiohttp_client(create_app(settings(), {"mail": mail_spec(model, outbox)}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    first = await ask(ws, sid)
    second = await receive_until(ws, "agent.approval_required")
    steps = [first[-1]["step_id"], second[-1]["step_id"]]
    assert [f["metadata"]["args"]["to"] for f in (first[-1], second[-1])] == [
        "a@example.com", "b@example.com",
    ]  # fmt: skip
    assert not [f for f in [*first, *second] if f["event"] == "agent.tool_result"]
    await ws.send_json(approve(sid, steps[1]))  # the second first: it waits for its turn
    await ws.send_json(approve(sid, steps[0], False))
    rest = await receive_until(ws)
    results = [(f["step_id"], f["metadata"]["status"]) for f in rest
               if f["event"] == "agent.tool_result"]  # fmt: skip
    assert results == [(steps[0], "denied"), (steps[1], "success")]
    assert outbox == ["b@example.com"]
    await ws.close()


async def test_deny_tool_is_absent_from_the_model_request(
    aiohttp_client, model: OpenAIServer
) -> None:
    model.script(Text("No tools needed."))
    spec = mail_spec(model, [], {"send_email": "auto", "drop_table": "deny"})
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "drop it"})
    assert (await receive_until(ws))[-1]["event"] == "agent.final_answer"
    offered = [t["function"]["name"] for t in model.requests[0].body["tools"]]
    assert offered == ["send_email"]
    await ws.close()


async def test_made_up_call_of_a_deny_tool_is_denied(aiohttp_client, model: OpenAIServer) -> None:
    model.script(ToolCalls(Call("drop_table", '{"table": "users"}')), Text("Refused."))
    spec = mail_spec(model, [], {"drop_table": "deny"})
    client = await aiohttp_client(create_app(settings(), {"mail": spec}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "drop it"})
    frames = await receive_until(ws)
    result = next(f for f in frames if f["event"] == "agent.tool_result")
    assert result["metadata"]["status"] == "denied"
    assert not [f for f in frames if f["event"] == "agent.approval_required"]
    await ws.close()


def test_unknown_tool_in_the_policies_is_refused_at_start(model: OpenAIServer) -> None:
    with pytest.raises(AgentLoadError, match="'send_mail'"):
        create_app(settings(), {"mail": mail_spec(model, [], {"send_mail": "ask"})})


def test_cli_refuses_a_config_naming_a_tool_the_agent_lacks(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    agent = ROOT / "examples" / "business_agent.py"
    config.write_text(
        f"agents:\n  - file: {agent}\n    tools:\n      send_mail: {{approval: ask}}\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "check", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "'send_mail'" in out.stderr and "send_email" in out.stderr  # its real tools
    assert "Traceback" not in out.stderr


def test_cli_check_loads_the_business_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "check", "--config", "config/business.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ok: agent 'business-assistant'" in out.stdout


async def test_approve_of_another_identity_is_session_not_found(
    aiohttp_client, model: OpenAIServer
) -> None:
    model.script(mails("bob@example.com"))
    tokens = [{"name": "alice", "token": "alice-t"}, {"name": "eve", "token": "eve-t"}]
    config = settings(auth={"enabled": True, "tokens": tokens})
    client = await aiohttp_client(create_app(config, {"mail": mail_spec(model, [])}))
    alice = await open_ws(client, headers={"Authorization": "Bearer alice-t"})
    sid = await create_session(alice)
    step_id = (await ask(alice, sid))[-1]["step_id"]
    eve = await open_ws(client, headers={"Authorization": "Bearer eve-t"})
    await eve.send_json(approve(sid, step_id))
    assert (await eve.receive_json())["code"] == "session_not_found"
    await eve.send_json(approve("0" * 32, step_id))
    assert (await eve.receive_json())["code"] == "session_not_found"  # the same answer
    await alice.send_json({"event": "user.cancel", "session_id": sid})
    assert (await receive_until(alice))[-1]["event"] == "agent.interrupted"
    for ws in (alice, eve):
        await ws.close()


async def test_resume_while_waiting_replays_the_card_and_the_new_socket_answers(
    aiohttp_client, model: OpenAIServer
) -> None:
    outbox: list[str] = []
    model.script(mails("bob@example.com"), Text("Done."))
    client = await aiohttp_client(create_app(settings(), {"mail": mail_spec(model, outbox)}))
    first = await open_ws(client)
    sid = await create_session(first)
    step_id = (await ask(first, sid))[-1]["step_id"]
    await first.close()
    second = await open_ws(client)
    await second.send_json({"event": "user.resume_session", "session_id": sid, "last_seq": 1})
    replay = await receive_until(second, "agent.session_resumed")
    cards = [f for f in replay if f["event"] == "agent.approval_required"]
    assert [c["step_id"] for c in cards] == [step_id]
    await second.send_json(approve(sid, step_id))
    rest = await receive_until(second)
    assert rest[-1]["content"] == "Done." and outbox == ["bob@example.com"]
    await second.close()


async def test_unknown_step_is_no_pending_approval(aiohttp_client, model: OpenAIServer) -> None:
    client = await aiohttp_client(create_app(settings(), {"mail": mail_spec(model, [])}))
    ws = await open_ws(client)
    sid = await create_session(ws)
    await ws.send_json(approve(sid, email_call().id, request_id="r1"))
    error = await ws.receive_json()
    assert (error["code"], error["request_id"]) == ("no_pending_approval", "r1")
    await ws.close()
