"""What the approval and usage tests share: a mail agent on the OpenAI-compatible test server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import ClientWebSocketResponse

from agent_loader.loader import AgentSpec
from myagent import LLM, create_react_agent
from myagent.agent.base import BaseAgent
from myagent.approval import Policy
from myagent.tool.base_tool import BaseTool, ToolResult
from tests.service.conftest import receive_until
from tests.support.openai_server import Call, OpenAIServer, ToolCalls


class SendEmail(BaseTool):
    name = "send_email"
    description = "Send an email"
    parameters = {
        "type": "object",
        "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
        "required": ["to"],
    }
    outbox: Any = None  # a list the test reads: what was really sent

    async def execute(self, to: str, subject: str = "") -> ToolResult:
        self.outbox.append(to)
        return ToolResult(output=f"Email sent to {to}")


class DropTable(BaseTool):
    name = "drop_table"
    description = "Drop a table"
    parameters = {"type": "object", "properties": {"table": {"type": "string"}}}

    async def execute(self, table: str = "") -> ToolResult:
        raise AssertionError("a denied tool must never run")  # pragma: no cover


def mail_spec(
    server: OpenAIServer,
    outbox: list[str],
    approvals: dict[str, Policy] | None = None,
    extra_tools: list[BaseTool] | None = None,
    **options: Any,
) -> AgentSpec:
    """The mail agent on the test server, under these approval policies and options."""
    llm = LLM(model="m", api_key="k", base_url=server.base_url, max_retries=0, timeout_s=5)

    def factory() -> BaseAgent:
        tools = [SendEmail(outbox=outbox), DropTable(), *(extra_tools or [])]
        return create_react_agent("mail", tools=tools, llm=llm)

    policies = {"send_email": "ask"} if approvals is None else approvals
    return AgentSpec(name="mail", factory=factory, approvals=policies, **options)


def email_call(to: str = "bob@example.com", call_id: str | None = None) -> Call:
    return Call("send_email", json.dumps({"to": to, "subject": "hi"}), id=call_id)


def mails(*recipients: str) -> ToolCalls:
    return ToolCalls(*(email_call(to) for to in recipients))


async def ask(
    ws: ClientWebSocketResponse, sid: str, content: str = "mail bob"
) -> list[dict[str, Any]]:
    """Send a message; the frames up to its (first) agent.approval_required."""
    await ws.send_json({"event": "user.message", "session_id": sid, "content": content})
    return await receive_until(ws, "agent.approval_required", "agent.error")


def approve(sid: str, step_id: str, approved: bool = True, **fields: Any) -> dict[str, Any]:
    return {"event": "user.approve", "session_id": sid, "step_id": step_id,
            "approved": approved, **fields}  # fmt: skip


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


Factory = Callable[[], BaseAgent]
