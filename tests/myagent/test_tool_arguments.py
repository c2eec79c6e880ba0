"""Tool arguments are checked against the tool's JSON schema before the tool runs."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from myagent import LLM, BaseTool, ToolCollection, ToolResult
from myagent.events import Answer, ToolFinished
from tests.myagent.helpers import EmailTool, collect, weather_agent
from tests.support.openai_server import Call, OpenAIServer, Text, ToolCalls


class StrictWeather(BaseTool):
    """The seed's weather tool, written as authors do: it trusts its schema."""

    name = "get_weather"
    description = "获取天气信息"
    parameters = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "城市名称"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city"],
    }

    async def execute(self, city: str, days: int = 1) -> ToolResult:
        return ToolResult(output=f"{city.strip()}的天气：晴朗，25°C ({days} d)")


@pytest.mark.parametrize(
    "args, named, expected",
    [
        ({"city": 5}, "city", "string"),
        ({}, "city", "required"),
        ({"city": "北京", "days": 30}, "days", "7"),
        ({"city": "北京", "days": "two"}, "days", "integer"),
    ],
)
async def test_tool_arguments_violating_the_schema_fail_naming_the_argument(
    args: dict[str, Any], named: str, expected: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        result = await ToolCollection(StrictWeather()).execute("get_weather", args)
    assert result.error is not None and result.output is None
    assert named in result.error and expected in result.error, result.error
    assert "Traceback" not in result.error
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]  # no "server bug"


async def test_tool_arguments_of_an_inferred_schema_are_checked_too() -> None:
    result = await ToolCollection(EmailTool()).execute(
        "send_email", {"to": ["a@example.com"], "subject": "s", "body": "b"}
    )
    assert result.error is not None and "to" in result.error and "string" in result.error


async def test_tool_arguments_rejected_over_http_let_the_model_retry(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(
        ToolCalls(Call("get_weather", '{"city": 5}', id="call_bad")),
        ToolCalls(Call("get_weather", '{"city": "北京"}', id="call_good")),
        Text("北京今天晴朗。"),
    )
    agent = weather_agent(llm)
    agent.tools.tools = [StrictWeather(), *agent.tools.tools[1:]]
    with structlog.testing.capture_logs() as logs:
        events = await collect(agent.stream_run("查询北京天气"))
    bad, good = (e for e in events if isinstance(e, ToolFinished))
    assert bad.status == "failed" and bad.error is not None and "city" in bad.error
    assert good.status == "success" and events[-1] == Answer(content="北京今天晴朗。")
    told = openai_server.requests[1].body["messages"][-1]
    assert told["tool_call_id"] == "call_bad" and told["content"].startswith("Error: ")
    assert "city" in told["content"] and "string" in told["content"]
    assert not [e for e in logs if e["event"] == "tool_crashed"]


async def test_tool_with_an_invalid_schema_still_runs_and_warns_once() -> None:
    class Sloppy(BaseTool):
        name = "sloppy"
        description = "Its author wrote a type JSON Schema does not have."
        parameters = {"type": "object", "properties": {"x": {"type": "str"}}}

        async def execute(self, x: str = "") -> ToolResult:
            return ToolResult(output=f"got {x}")

    tools = ToolCollection(Sloppy())
    with structlog.testing.capture_logs() as logs:
        results = [await tools.execute("sloppy", {"x": "a"}) for _ in range(2)]
    assert [r.output for r in results] == ["got a", "got a"]
    assert [e["event"] for e in logs] == ["tool_schema_invalid"]
