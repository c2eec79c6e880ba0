"""Conversation memory of one agent."""

from __future__ import annotations

from pydantic import BaseModel, Field

from myagent.schema import Message, Role, ToolCall


class Memory(BaseModel):
    """The messages of a conversation, oldest first, trimmed to max_messages."""

    messages: list[Message] = Field(default_factory=list)
    max_messages: int = Field(default=200, ge=2)

    def add(self, message: Message) -> None:
        self.messages.append(message)
        self._trim()

    def clear(self) -> None:
        self.messages.clear()

    def _trim(self) -> None:
        """Drop the oldest messages, never leaving a tool result without its assistant call."""
        excess = len(self.messages) - self.max_messages
        if excess <= 0:
            return
        del self.messages[:excess]
        while self.messages and self.messages[0].role is Role.TOOL:
            del self.messages[0]

    def pending_tool_calls(self) -> list[tuple[str, str]]:
        """(id, name) of tool calls in the last assistant message that have no result yet."""
        return [(call.id, call.function.name) for call in self.last_tool_calls()]

    def last_tool_calls(self) -> list[ToolCall]:
        """The tool calls of the last assistant message that have no result yet."""
        answered = set()
        for message in reversed(self.messages):
            if message.role is Role.TOOL and message.tool_call_id:
                answered.add(message.tool_call_id)
            elif message.role is Role.ASSISTANT:
                return [call for call in message.tool_calls if call.id not in answered]
            else:
                return []
        return []
