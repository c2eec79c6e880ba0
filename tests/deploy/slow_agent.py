"""A test agent whose tool takes SLOW_TOOL_S seconds (default 30): for shutdown tests."""

import asyncio
import os

from myagent import create_react_agent
from myagent.offline import OfflineLLM
from myagent.tool.base_tool import BaseTool, ToolResult


class SlowReport(BaseTool):
    name = "slow_report"
    description = "slow report"

    async def execute(self, topic: str) -> ToolResult:
        await asyncio.sleep(float(os.environ.get("SLOW_TOOL_S", "30")))
        return ToolResult(output=f"report on {topic}")


agent = create_react_agent(name="slow", tools=[SlowReport()], llm=OfflineLLM())
