"""Tracing: runs, steps, tool calls, durations and usage, as JSON."""

from myagent import AssistantTurn, ScriptedLLM
from myagent.schema import Usage
from myagent.trace import Trace
from tests.myagent.helpers import CrashingTool, collect, weather_agent

USAGE = Usage(prompt_tokens=20, completion_tokens=5)


async def test_trace_records_steps_tool_calls_durations_and_usage() -> None:
    call = AssistantTurn.call("get_weather", city="Paris")
    llm = ScriptedLLM(
        AssistantTurn(tool_calls=call.tool_calls, usage=USAGE),
        AssistantTurn.call("crash"),
        AssistantTurn(content="Sunny.", usage=Usage(prompt_tokens=30, completion_tokens=2)),
    )
    agent = weather_agent(llm, CrashingTool(), enable_tracing=True)
    await collect(agent.stream_run("Paris?"))
    (run,) = agent.trace.runs
    assert (run.input, run.outcome, run.error) == ("Paris?", "finished", None)
    assert [s.step for s in run.steps] == [1, 2, 3]
    first, second, third = run.steps
    assert [(t.tool, t.args, t.status) for t in first.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "success")
    ]
    assert [(t.tool, t.status) for t in second.tool_calls] == [("crash", "failed")]
    assert third.tool_calls == []
    assert first.usage == USAGE
    assert run.usage == Usage(prompt_tokens=50, completion_tokens=7)
    assert run.duration_s > 0 and all(s.llm_duration_s >= 0 for s in run.steps)
    assert first.tool_calls[0].duration_s >= 0
    assert Trace.model_validate_json(agent.trace.model_dump_json()) == agent.trace


async def test_trace_records_a_failed_run_with_its_error() -> None:
    llm = ScriptedLLM(AssistantTurn.call("get_weather", city="Paris"))
    agent = weather_agent(llm, enable_tracing=True, max_steps=1)
    await collect(agent.stream_run("Paris?"))
    (run,) = agent.trace.runs
    assert run.outcome == "error" and "max_steps" in (run.error or "")


async def test_trace_is_empty_when_tracing_is_off() -> None:
    agent = weather_agent(ScriptedLLM("hi"))
    await collect(agent.stream_run("hello"))
    assert agent.trace.runs == []
