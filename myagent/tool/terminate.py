"""Terminate: a tool the model calls to end the run with a final message."""

from __future__ import annotations

from myagent.tool.base_tool import BaseTool, ToolResult

TERMINATE = "terminate"


class Terminate(BaseTool):
    """Ends the run; its `message` becomes the final answer."""

    name: str = TERMINATE
    description: str = "Finish the task and give the final answer to the user."
    parameters: dict[str, object] | None = {
        "type": "object",
        "properties": {"message": {"type": "string", "description": "The final answer."}},
        "required": ["message"],
    }

    async def execute(self, *, message: str) -> ToolResult:
        return ToolResult(output=message)
