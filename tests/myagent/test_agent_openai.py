"""A whole agent run over HTTP: LLM and the real openai SDK against the fake server."""

import json

from myagent import LLM
from myagent.events import Answer, ModelCalled, ToolFinished, ToolStarted
from tests.myagent.helpers import EmailTool, WeatherTool, collect, weather_agent
from tests.support.openai_server import Call, OpenAIServer, Text, ToolCalls


async def test_agent_over_http_calls_the_tool_and_sends_its_result_back(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(
        ToolCalls(Call("get_weather", '{"city"', ': "北京"}', id="call_w")),
        Text("北京今天", "晴朗。"),
    )
    agent = weather_agent(llm)
    events = await collect(agent.stream_run("查询北京天气"))
    started = next(e for e in events if isinstance(e, ToolStarted))
    finished = next(e for e in events if isinstance(e, ToolFinished))
    assert (started.step_id, started.tool, started.args) == (
        "call_w",
        "get_weather",
        {"city": "北京"},
    )
    assert (finished.status, finished.output) == ("success", "北京的天气：晴朗，25°C")
    assert events[-1] == Answer(content="北京今天晴朗。")
    assert [e.model for e in events if isinstance(e, ModelCalled)] == ["test-model"] * 2

    first, second = (r.body for r in openai_server.requests)
    assert first["tools"] == [WeatherTool().to_param(), EmailTool().to_param()]
    assert first["messages"] == [
        {"role": "system", "content": "你是一个天气助手，可以查询天气并发送邮件。"},
        {"role": "user", "content": "查询北京天气"},
    ]
    assistant, tool = second["messages"][2:]
    assert assistant["role"] == "assistant"
    assert [(c["id"], c["function"]["name"]) for c in assistant["tool_calls"]] == [
        ("call_w", "get_weather")
    ]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "北京"}
    assert tool == {
        "role": "tool",
        "content": "北京的天气：晴朗，25°C",
        "tool_call_id": "call_w",
        "name": "get_weather",
    }
