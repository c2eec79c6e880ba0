"""The agent of the failover tests: a slow tool, and answers that recall the conversation.

"slow report on X" calls a tool that takes SLOW_TOOL_S seconds (default 8), long enough to kill
its replica mid-run. Every answer ends with the user's earlier messages in the session, so a
test sees whether a conversation went on with its history once its server was gone.
"""

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from myagent import create_react_agent
from myagent.llm import AssistantTurn
from myagent.offline import OfflineLLM
from myagent.schema import Message, Role
from myagent.tool.base_tool import BaseTool, ToolResult


class SlowReport(BaseTool):
    name = "slow_report"
    description = "slow report"

    async def execute(self, topic: str) -> ToolResult:
        await asyncio.sleep(float(os.environ.get("SLOW_TOOL_S", "8")))
        return ToolResult(output=f"report on {topic}")


class WeatherTool(BaseTool):
    name = "get_weather"
    description = "获取天气信息"
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }

    async def execute(self, city: str) -> ToolResult:
        return ToolResult(output=f"{city}的天气：晴朗，25°C")


class RecallLLM(OfflineLLM):
    """The offline model; its answers add `earlier: [...]`, the user's previous messages."""

    def reply(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> AssistantTurn:
        turn = super().reply(messages, tools)
        if turn.tool_calls:
            return turn
        asked = [m.content for m in messages if m.role is Role.USER and not m.is_step_prompt]
        earlier = json.dumps(asked[:-1], ensure_ascii=False)
        return AssistantTurn(content=f"{turn.content}\nearlier: {earlier}", usage=turn.usage)


agent = create_react_agent(name="recall", tools=[SlowReport(), WeatherTool()], llm=RecallLLM())
