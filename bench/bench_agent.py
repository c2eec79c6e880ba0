"""The benchmark's agent: one tool call, then the offline model streams its output in tokens."""

import os

from myagent import create_react_agent
from myagent.offline import OfflineLLM
from myagent.tool.base_tool import BaseTool, ToolResult

TOKENS = int(os.environ.get("BENCH_TOKENS", "50"))


class GetReport(BaseTool):
    name = "get_report"
    description = "report"

    async def execute(self, topic: str) -> ToolResult:
        return ToolResult(output="xxxx" * TOKENS)


agent = create_react_agent(name="bench", tools=[GetReport()], llm=OfflineLLM(chunk_chars=4))
