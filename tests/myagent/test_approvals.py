"""The approval gate of ToolCallAgent.act: ask, deny, several calls in one turn, going on."""

from __future__ import annotations

import asyncio

import pytest

from myagent import ScriptedLLM
from myagent.approval import ApprovalRequest, Decision, check_policies
from myagent.events import Answer, ApprovalRequired, ToolFinished, ToolStarted
from myagent.llm import AssistantTurn, make_tool_call
from myagent.schema import Message, Role
from tests.myagent.helpers import collect, weather_agent


class Desk:
    """A person at a desk: answers each request with the next scripted decision."""

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions)
        self.asked: list[ApprovalRequest] = []

    async def __call__(self, request: ApprovalRequest) -> Decision:
        self.asked.append(request)
        return self.decisions.pop(0)


def email_turn() -> AssistantTurn:
    return AssistantTurn.call("send_email", to="a@b.c", subject="hi", body="x")


async def test_ask_tool_runs_once_approved_after_it_was_announced() -> None:
    agent = weather_agent(ScriptedLLM(email_turn(), "sent"), tool_approvals={"send_email": "ask"})
    desk = Desk(Decision(outcome="approved"))
    agent.set_approver(desk)
    events = await collect(agent.stream_run("mail a@b.c"))
    kinds = [type(e).__name__ for e in events if not isinstance(e, Answer)]
    started = next(e for e in events if isinstance(e, ToolStarted))
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert started.status == "awaiting_approval"
    order = [kinds.index(k) for k in ("ToolStarted", "ApprovalRequired", "ToolFinished")]
    assert order == sorted(order)
    assert (finished.status, finished.output) == ("success", "Email sent to a@b.c")
    assert desk.asked[0].tool == "send_email" and desk.asked[0].args["to"] == "a@b.c"


@pytest.mark.parametrize("outcome", ["denied", "expired"])
async def test_refused_or_expired_call_does_not_run_and_the_model_is_told(outcome: str) -> None:
    llm = ScriptedLLM(email_turn(), "not sent")
    agent = weather_agent(llm, tool_approvals={"send_email": "ask"})
    agent.set_approver(Desk(Decision(outcome=outcome, reason="not today")))  # type: ignore[arg-type]
    events = await collect(agent.stream_run("mail a@b.c"))
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert finished.status == outcome and "not run" in (finished.error or "")
    assert "not today" in (finished.error or "")
    tool_message = llm.calls[1][-1]
    assert tool_message.role is Role.TOOL and "not today" in (tool_message.content or "")


async def test_two_ask_calls_in_one_turn_are_both_announced_before_the_first_wait() -> None:
    turn = AssistantTurn(
        tool_calls=[
            make_tool_call("send_email", {"to": "a@b.c", "subject": "1", "body": "x"}),
            make_tool_call("get_weather", {"city": "Paris"}),
            make_tool_call("send_email", {"to": "d@e.f", "subject": "2", "body": "y"}),
        ]
    )
    agent = weather_agent(ScriptedLLM(turn, "done"), tool_approvals={"send_email": "ask"})
    seen: list[object] = []

    async def approver(request: ApprovalRequest) -> Decision:
        seen.append(("asked", request.args["to"]))
        return Decision(outcome="approved" if request.args["to"] == "a@b.c" else "denied")

    agent.set_approver(approver)
    async for event in agent.stream_run("two mails"):
        seen.append(event)
    announced = [e.args["to"] for e in seen if isinstance(e, ApprovalRequired)]
    first_wait = seen.index(("asked", "a@b.c"))
    assert announced == ["a@b.c", "d@e.f"]
    assert all(seen.index(e) < first_wait for e in seen if isinstance(e, ApprovalRequired))
    results = [(e.tool, e.status) for e in seen if isinstance(e, ToolFinished)]
    assert results == [("send_email", "success"), ("get_weather", "success"),
                       ("send_email", "denied")]  # fmt: skip


async def test_deny_tool_is_not_offered_and_a_made_up_call_is_denied() -> None:
    llm = ScriptedLLM(email_turn(), "ok")
    agent = weather_agent(llm, tool_approvals={"send_email": "deny"})
    assert [p["function"]["name"] for p in agent.tool_params()] == ["get_weather"]
    events = await collect(agent.stream_run("mail"))
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert finished.status == "denied" and "not allowed" in (finished.error or "")


async def test_ask_tool_without_an_approver_is_refused() -> None:
    agent = weather_agent(ScriptedLLM(email_turn(), "ok"), tool_approvals={"send_email": "ask"})
    events = await collect(agent.stream_run("mail"))
    assert next(e for e in events if isinstance(e, ToolFinished)).status == "denied"


async def test_cancel_while_waiting_leaves_memory_valid() -> None:
    agent = weather_agent(ScriptedLLM(email_turn()), tool_approvals={"send_email": "ask"})
    waiting = asyncio.Event()

    async def never(request: ApprovalRequest) -> Decision:
        waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    agent.set_approver(never)

    async def run() -> None:
        async for _ in agent.stream_run("mail"):
            pass

    task = asyncio.create_task(run())
    await asyncio.wait_for(waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.memory.pending_tool_calls() == []


async def test_continued_run_waits_again_for_the_waiting_calls_only() -> None:
    first = make_tool_call("get_weather", {"city": "Paris"})
    second = make_tool_call("send_email", {"to": "a@b.c", "subject": "s", "body": "b"})
    llm = ScriptedLLM("all done")
    agent = weather_agent(llm, tool_approvals={"send_email": "ask"})
    agent.memory.add(Message.user("weather and mail"))
    agent.memory.add(Message.assistant(None, [first, second]))
    desk = Desk(Decision(outcome="approved"))
    agent.set_approver(desk)
    events = await collect(agent.continue_run({second.id}))
    assert not [e for e in events if isinstance(e, ApprovalRequired | ToolStarted)]  # not again
    assert [r.step_id for r in desk.asked] == [second.id]
    assert [(e.step_id, e.status) for e in events if isinstance(e, ToolFinished)] == [
        (second.id, "success")
    ]
    assert events[-1] == Answer(content="all done")
    tools = [m for m in agent.memory.messages if m.role is Role.TOOL]
    assert [(m.tool_call_id, m.content) for m in tools] == [
        (first.id, "Error: the server running this call stopped"),
        (second.id, "Email sent to a@b.c"),
    ]
    assert [m.role for m in agent.memory.messages].count(Role.USER) == 1


def test_policy_for_a_tool_the_agent_lacks_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'drop_table'"):
        check_policies({"send_email": "ask", "drop_table": "deny"}, ["send_email"])
    with pytest.raises(ValueError, match="auto, ask or deny"):
        check_policies({"send_email": "maybe"}, ["send_email"])


def test_agent_built_with_a_policy_for_a_tool_it_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="'send_mail'"):
        weather_agent(ScriptedLLM(), tool_approvals={"send_mail": "ask"})
