"""Cancelling a run mid-tool or mid-stream leaves an agent that is IDLE, valid and reusable."""

import asyncio

import pytest

from myagent import LLM, AgentState, AssistantTurn, Role, ScriptedLLM
from myagent.errors import AgentBusyError
from myagent.events import AnswerDelta, RunEvent, ToolStarted
from myagent.llm import closing_stream, make_tool_call
from tests.myagent.helpers import BlockingTool, next_of, pump, weather_agent
from tests.support.openai_server import OpenAIServer, Stall, Text


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task


async def test_cancel_mid_tool_closes_every_tool_call_and_the_agent_runs_again() -> None:
    calls = [make_tool_call("wait_forever", {}), make_tool_call("get_weather", {"city": "Rome"})]
    llm = ScriptedLLM(AssistantTurn(tool_calls=calls), "Back again.")
    agent = weather_agent(llm, BlockingTool())
    queue: asyncio.Queue[RunEvent] = asyncio.Queue()
    task = asyncio.create_task(pump(agent.stream_run("wait"), queue))
    started = await next_of(queue, ToolStarted)
    assert started.tool == "wait_forever"
    await cancel(task)
    assert agent.state is AgentState.IDLE
    assert agent.memory.pending_tool_calls() == []
    results = {m.tool_call_id: m.content for m in agent.memory.messages if m.role is Role.TOOL}
    assert set(results) == {calls[0].id, calls[1].id}
    assert "cancelled" in (results[calls[0].id] or "")
    assert await asyncio.wait_for(agent.arun("again"), 5) == "Back again."


async def test_cancel_mid_stream_leaves_the_agent_idle_and_reusable(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(Stall("Let me th"), Text("Fine."))
    agent = weather_agent(llm)
    queue: asyncio.Queue[RunEvent] = asyncio.Queue()
    task = asyncio.create_task(pump(agent.stream_run("think hard"), queue))
    delta = await next_of(queue, AnswerDelta)
    assert delta.content == "Let me th"
    await cancel(task)
    assert agent.state is AgentState.IDLE
    assert agent.memory.pending_tool_calls() == []
    await asyncio.wait_for(openai_server.disconnected.wait(), 5)  # the HTTP stream was closed
    assert await asyncio.wait_for(agent.arun("quick one"), 5) == "Fine."
    messages = openai_server.requests[1].body["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["think hard", "quick one"]


async def test_closing_the_stream_mid_tool_leaves_the_agent_idle() -> None:
    llm = ScriptedLLM(AssistantTurn.call("wait_forever"), "After.")
    agent = weather_agent(llm, BlockingTool())
    async with asyncio.timeout(5), closing_stream(agent.stream_run("go")) as stream:
        async for event in stream:
            if isinstance(event, ToolStarted):
                break
    assert agent.state is AgentState.IDLE
    assert agent.memory.pending_tool_calls() == []
    assert await asyncio.wait_for(agent.arun("again"), 5) == "After."


async def test_stream_run_on_a_running_agent_raises_agent_busy() -> None:
    llm = ScriptedLLM(AssistantTurn.call("wait_forever"))
    agent = weather_agent(llm, BlockingTool())
    queue: asyncio.Queue[RunEvent] = asyncio.Queue()
    task = asyncio.create_task(pump(agent.stream_run("wait"), queue))
    await next_of(queue, ToolStarted)
    assert agent.state is AgentState.RUNNING
    with pytest.raises(AgentBusyError, match="already running"):
        await anext(agent.stream_run("second"))
    with pytest.raises(AgentBusyError):
        await agent.arun("third")
    await cancel(task)
    assert [m.content for m in agent.memory.messages if m.role is Role.USER] == ["wait"]
