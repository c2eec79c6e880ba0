"""ToolCallAgent runs driven by ScriptedLLM: the loop, tool failures, memory, copies, errors."""

import pytest

from myagent import AgentState, AssistantTurn, BaseTool, Role, ScriptedLLM, Terminate, ToolResult
from myagent.errors import LLMError, MaxStepsError
from myagent.events import (
    Answer,
    AnswerDelta,
    ModelCalled,
    RunFailed,
    Thinking,
    ToolFinished,
    ToolStarted,
)
from myagent.llm import make_tool_call
from myagent.schema import Usage
from tests.myagent.helpers import CrashingTool, FailingTool, collect, weather_agent


class CountingTool(BaseTool):
    name = "count"
    description = "Counts the things; returns a bare int."

    async def execute(self) -> int:
        return 0


async def test_agent_calls_tool_then_answers() -> None:
    llm = ScriptedLLM(AssistantTurn.call("get_weather", city="Paris"), "Sunny in Paris.")
    agent = weather_agent(llm)
    events = await collect(agent.stream_run("Weather in Paris?"))
    kinds = [type(e) for e in events]
    assert kinds[:4] == [Thinking, ModelCalled, ToolStarted, ToolFinished]
    assert kinds[-1] is Answer and AnswerDelta in kinds
    started = next(e for e in events if isinstance(e, ToolStarted))
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert (started.tool, started.args) == ("get_weather", {"city": "Paris"})
    assert (finished.step_id, finished.status) == (started.step_id, "success")
    assert finished.output == "Paris的天气：晴朗，25°C"
    assert "".join(e.content for e in events if isinstance(e, AnswerDelta)) == "Sunny in Paris."
    assert events[-1] == Answer(content="Sunny in Paris.")
    assert agent.state is AgentState.FINISHED
    roles = [m.role for m in agent.memory.messages]
    assert roles == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    second_call = llm.calls[1]
    assert second_call[0].role is Role.SYSTEM
    assert second_call[-1].content == "Paris的天气：晴朗，25°C"
    assert second_call[-1].tool_call_id == started.step_id


async def test_agent_max_steps_ends_with_run_failed_max_steps() -> None:
    call = AssistantTurn.call("get_weather", city="Paris")
    llm = ScriptedLLM(call, AssistantTurn.call("get_weather", city="Rome"))
    agent = weather_agent(llm, max_steps=2)
    events = await collect(agent.stream_run("loop"))
    assert isinstance(events[-1], RunFailed)
    assert events[-1].code == "max_steps"
    assert "max_steps" in events[-1].error
    assert len(llm.calls) == 2
    assert agent.state is AgentState.ERROR
    assert agent.memory.pending_tool_calls() == []


async def test_agent_crashing_tool_fails_and_the_run_goes_on() -> None:
    llm = ScriptedLLM(AssistantTurn.call("crash", what="disk on fire"), "Sorry, it broke.")
    agent = weather_agent(llm, CrashingTool())
    events = await collect(agent.stream_run("crash it"))
    (finished,) = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.status == "failed"
    assert finished.error is not None and "RuntimeError: disk on fire" in finished.error
    assert events[-1] == Answer(content="Sorry, it broke.")
    assert llm.calls[1][-1].content == f"Error: {finished.error}"


async def test_agent_tool_error_becomes_failed_result_with_its_message() -> None:
    llm = ScriptedLLM(AssistantTurn.call("fail"), "No forecast.")
    agent = weather_agent(llm, FailingTool())
    events = await collect(agent.stream_run("Atlantis?"))
    (finished,) = [e for e in events if isinstance(e, ToolFinished)]
    assert (finished.status, finished.error) == ("failed", "no forecast for Atlantis; try Paris")
    assert isinstance(events[-1], Answer)


async def test_agent_unknown_tool_gives_failed_result_naming_the_tools() -> None:
    llm = ScriptedLLM(AssistantTurn.call("get_stock", symbol="X"), "I cannot.")
    agent = weather_agent(llm)
    events = await collect(agent.stream_run("stock?"))
    (finished,) = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.status == "failed" and finished.error is not None
    assert "unknown tool 'get_stock'" in finished.error and "get_weather" in finished.error
    assert events[-1] == Answer(content="I cannot.")


async def test_agent_invalid_json_arguments_give_failed_result() -> None:
    broken = AssistantTurn(tool_calls=[make_tool_call("get_weather", '{"city": "Par')])
    llm = ScriptedLLM(broken, "Let me retry later.")
    agent = weather_agent(llm)
    events = await collect(agent.stream_run("Paris?"))
    started = next(e for e in events if isinstance(e, ToolStarted))
    (finished,) = [e for e in events if isinstance(e, ToolFinished)]
    assert started.args == {"_raw": '{"city": "Par'}
    assert finished.status == "failed" and "invalid JSON" in (finished.error or "")
    assert isinstance(events[-1], Answer)
    assert agent.memory.pending_tool_calls() == []


async def test_agent_missing_and_unexpected_arguments_give_failed_results() -> None:
    email = {"to": "a@b.c", "subject": "s", "body": "b", "cc": "x@y.z"}
    calls = [make_tool_call("get_weather", {}), make_tool_call("send_email", email)]
    llm = ScriptedLLM(AssistantTurn(tool_calls=calls), "ok")
    agent = weather_agent(llm)
    events = await collect(agent.stream_run("?"))
    errors = [e.error or "" for e in events if isinstance(e, ToolFinished)]
    assert "missing required argument(s): city" in errors[0]
    assert "bad arguments for send_email" in errors[1] and "cc" in errors[1]
    assert isinstance(events[-1], Answer)


async def test_agent_remembers_the_first_exchange_in_the_second_message() -> None:
    llm = ScriptedLLM("Hello Ann.", "Your name is Ann.")
    agent = weather_agent(llm)
    assert await agent.arun("I am Ann.") == "Hello Ann."
    assert await agent.arun("What is my name?") == "Your name is Ann."
    seen = [(m.role, m.content) for m in llm.calls[1][1:]]  # after the system prompt
    assert seen == [
        (Role.USER, "I am Ann."),
        (Role.ASSISTANT, "Hello Ann."),
        (Role.USER, "What is my name?"),
    ]


async def test_agent_terminate_tool_ends_the_run_with_its_message() -> None:
    llm = ScriptedLLM(AssistantTurn.call("terminate", message="All done."))
    agent = weather_agent(llm, Terminate())
    events = await collect(agent.stream_run("finish"))
    assert events[-1] == Answer(content="All done.")
    assert len(llm.calls) == 1
    assert agent.state is AgentState.FINISHED


async def test_agent_step_callback_receives_the_yielded_events() -> None:
    llm = ScriptedLLM(AssistantTurn.call("get_weather", city="Paris"), "Sunny.")
    agent = weather_agent(llm)
    received: list[object] = []

    async def callback(event: object) -> None:
        received.append(event)

    agent.set_step_callback(callback)
    events = await collect(agent.stream_run("Paris?"))
    assert received == events


async def test_agent_arun_raises_the_error_of_a_failed_run() -> None:
    agent = weather_agent(ScriptedLLM(LLMError("the endpoint is down")))
    with pytest.raises(LLMError, match="the endpoint is down"):
        await agent.arun("hi")
    looping = weather_agent(ScriptedLLM(AssistantTurn.call("get_weather", city="X")), max_steps=1)
    with pytest.raises(MaxStepsError):
        await looping.arun("hi")


async def test_agent_arun_leaves_the_agent_finished_with_a_closed_trace() -> None:
    agent = weather_agent(ScriptedLLM("Hi."), enable_tracing=True)
    assert await agent.arun("hello") == "Hi."
    assert agent.state is AgentState.FINISHED
    assert agent.trace.runs[-1].outcome == "finished"


async def test_agent_llm_error_ends_the_run_with_run_failed() -> None:
    agent = weather_agent(ScriptedLLM(LLMError("HTTP 500"), "Recovered."))
    events = await collect(agent.stream_run("hi"))
    assert isinstance(events[-1], RunFailed)
    assert (events[-1].code, events[-1].error) == ("llm_failed", "HTTP 500")
    assert agent.state is AgentState.ERROR
    assert await agent.arun("again") == "Recovered."


async def test_agent_scripted_llm_fails_when_asked_for_an_unscripted_turn() -> None:
    agent = weather_agent(ScriptedLLM(AssistantTurn.call("get_weather", city="Paris")))
    events = await collect(agent.stream_run("Paris?"))
    assert isinstance(events[-1], RunFailed) and events[-1].code == "llm_failed"
    assert "turn 2" in events[-1].error


async def test_agent_deep_copy_has_its_own_memory_state_and_trace_but_shares_the_llm() -> None:
    llm = ScriptedLLM("First.", "Second.")
    template = weather_agent(llm, enable_tracing=True)
    first = template.model_copy(deep=True)
    second = template.model_copy(deep=True)
    assert first.llm is llm and second.llm is llm
    assert await first.arun("one") == "First."
    assert await second.arun("two") == "Second."
    assert template.memory.messages == [] and template.trace.runs == []
    assert template.state is AgentState.IDLE
    assert [m.content for m in first.memory.messages] == ["one", "First."]
    assert [m.content for m in second.memory.messages] == ["two", "Second."]
    assert [r.input for r in first.trace.runs] == ["one"]
    assert first.tools.get("get_weather") is not template.tools.get("get_weather")


async def test_agent_deep_copy_with_update_still_shares_the_llm() -> None:
    llm = ScriptedLLM("x")
    template = weather_agent(llm)
    copy = template.model_copy(deep=True, update={"max_steps": 3})
    assert copy.llm is llm and copy.max_steps == 3
    assert copy.memory is not template.memory


async def test_agent_model_called_event_carries_usage() -> None:
    turn = AssistantTurn(content="ok", usage=Usage(prompt_tokens=10, completion_tokens=2))
    events = await collect(weather_agent(ScriptedLLM(turn)).stream_run("hi"))
    (called,) = [e for e in events if isinstance(e, ModelCalled)]
    assert (called.model, called.prompt_tokens, called.completion_tokens) == ("scripted", 10, 2)


async def test_agent_zero_tool_output_is_reported_as_text() -> None:
    assert str(ToolResult(output=0)) == "0"
    llm = ScriptedLLM(AssistantTurn.call("count"), "Zero.")
    events = await collect(weather_agent(llm, CountingTool()).stream_run("how many?"))
    (finished,) = [e for e in events if isinstance(e, ToolFinished)]
    assert (finished.status, finished.output) == ("success", "0")
    assert llm.calls[1][-1].content == "0"


async def test_agent_next_step_prompt_is_sent_after_step_one_but_not_remembered() -> None:
    llm = ScriptedLLM(AssistantTurn.call("get_weather", city="Paris"), "Sunny.")
    agent = weather_agent(llm, next_step_prompt="Decide the next step.")
    assert await agent.arun("Paris?") == "Sunny."
    assert llm.calls[0][-1].content == "Paris?"
    nudge = llm.calls[1][-1]
    assert (nudge.role, nudge.content, nudge.is_step_prompt) == (
        Role.USER,
        "Decide the next step.",
        True,
    )
    assert nudge.to_openai() == {"role": "user", "content": "Decide the next step."}
    assert "Decide the next step." not in [m.content for m in agent.memory.messages]
