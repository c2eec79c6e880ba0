"""A business assistant whose tools have side effects: what a person should approve.

The operator decides per tool in the config, without touching this file (config/business.yaml):
`send_email` under `ask` (each call waits for user.approve), `drop_table` under `deny` (never
offered to the model). Serve it with `myagent-ws server --config config/business.yaml`; with no
OPENAI_API_KEY the offline model calls `send_email` for a message that asks to send mail.
"""

from myagent import create_react_agent
from myagent.errors import ToolError
from myagent.tool.base_tool import BaseTool, ToolResult

ORDERS = {"A-1001": "shipped", "A-1002": "packing", "A-1003": "delivered"}


class SendEmail(BaseTool):
    name = "send_email"
    description = "Send an email message to a recipient"
    parameters = {
        "type": "object",
        "properties": {
            "to": {"type": "string", "description": "the recipient's address"},
            "subject": {"type": "string"},
            "body": {"type": "string"},
        },
        "required": ["to", "subject", "body"],
    }

    async def execute(self, to: str, subject: str, body: str) -> ToolResult:
        return ToolResult(output=f"Email sent to {to}: {subject}")


class QueryDatabase(BaseTool):
    name = "query_database"
    description = "Look up the status of an order in the database"
    parameters = {
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "e.g. A-1001"}},
        "required": ["order_id"],
    }

    async def execute(self, order_id: str) -> ToolResult:
        status = ORDERS.get(order_id.strip().upper())
        if status is None:
            raise ToolError(f"no order {order_id!r}; known: {', '.join(ORDERS)}")
        return ToolResult(output=f"order {order_id}: {status}")


class DropTable(BaseTool):
    name = "drop_table"
    description = "Delete a whole table of the database"
    parameters = {
        "type": "object",
        "properties": {"table": {"type": "string"}},
        "required": ["table"],
    }

    async def execute(self, table: str) -> ToolResult:
        return ToolResult(output=f"table {table} dropped")


agent = create_react_agent(
    name="business-assistant",
    tools=[SendEmail(), QueryDatabase(), DropTable()],
    system_prompt="You are a business assistant: you look up orders and write e-mails.",
    max_steps=5,
)
