"""The agent of the approval fault test: its model comes from OPENAI_* (the test's endpoint);
its `send_email` tool waits for a person (approval `ask`, set here since a replica started with
an agent file takes no per-agent config)."""

from myagent import create_react_agent
from myagent.tool.base_tool import BaseTool, ToolResult


class SendEmail(BaseTool):
    name = "send_email"
    description = "send an email"
    parameters = {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}

    async def execute(self, to: str) -> ToolResult:
        return ToolResult(output=f"Email sent to {to}")


agent = create_react_agent(name="mailer", tools=[SendEmail()], tool_approvals={"send_email": "ask"})
