"""The agent of the fault tests: its model comes from OPENAI_* (the test's fake endpoint); its
`slow_lookup` tool takes SLOW_TOOL_S seconds (default 30), long enough to kill a server in it."""

import asyncio
import os

from myagent import create_react_agent
from myagent.tool.base_tool import BaseTool, ToolResult


class SlowLookup(BaseTool):
    name = "slow_lookup"
    description = "a lookup that takes a while"
    parameters = {"type": "object", "properties": {"query": {"type": "string"}}}

    async def execute(self, query: str = "") -> ToolResult:
        await asyncio.sleep(float(os.environ.get("SLOW_TOOL_S", "30")))
        return ToolResult(output=f"looked up {query}")


agent = create_react_agent(name="weather", tools=[SlowLookup()])
