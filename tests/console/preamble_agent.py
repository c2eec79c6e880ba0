"""A test agent whose model speaks before it calls a tool, as real models often do."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

from myagent import create_react_agent
from myagent.llm import AssistantTurn, make_tool_call
from myagent.schema import Message, Role
from myagent.tool.base_tool import BaseTool, ToolResult

PREAMBLE = "Let me look that up."
ANSWER = "It is sunny in Beijing."


class WeatherTool(BaseTool):
    name = "get_weather"
    description = "Current weather for a city."

    async def execute(self, city: str) -> ToolResult:
        return ToolResult(output=f"{city}: sunny")


class PreambleLLM:
    """A preamble and a tool call for a user message; the answer once the tool has spoken."""

    model_name = "preamble"

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        after_tool = any(m.role is Role.TOOL for m in messages)
        text = ANSWER if after_tool else PREAMBLE
        for start in range(0, len(text), 4):
            yield text[start : start + 4]
        calls = [] if after_tool else [make_tool_call("get_weather", {"city": "Beijing"})]
        yield AssistantTurn(content=text, tool_calls=calls)


agent = create_react_agent(name="preamble", tools=[WeatherTool()], llm=PreambleLLM())
