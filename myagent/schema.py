"""Conversation schema: roles, messages, tool calls and agent states."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

STEP_PROMPT = "next_step_prompt"  # the name that marks a step prompt; never sent to the API


class AgentState(StrEnum):
    """Lifecycle of an agent: IDLE -> RUNNING -> FINISHED | ERROR, then IDLE again."""

    IDLE = "IDLE"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ERROR = "ERROR"


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Function(BaseModel):
    name: str
    arguments: str = ""  # JSON text, as the model produced it


class ToolCall(BaseModel):
    id: str
    type: str = "function"
    function: Function


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Message(BaseModel):
    """One chat message, in the OpenAI chat-completions shape."""

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    _wire: bytes | None = PrivateAttr(default=None)  # to_openai() as JSON, made once

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name != "_wire" and self.__pydantic_private__ is not None:
            self.__pydantic_private__["_wire"] = None  # a changed field: serialise it again

    def __eq__(self, other: object) -> bool:
        """Equal fields (the cached wire form does not count)."""
        if not isinstance(other, Message):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, as BaseModel is

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role=Role.SYSTEM, content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role=Role.USER, content=content)

    @classmethod
    def step_prompt(cls, content: str) -> Message:
        """A user message the agent adds to a request (next_step_prompt), not to memory."""
        return cls(role=Role.USER, content=content, name=STEP_PROMPT)

    @property
    def is_step_prompt(self) -> bool:
        return self.role is Role.USER and self.name == STEP_PROMPT

    @classmethod
    def assistant(cls, content: str | None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role=Role.ASSISTANT, content=content, tool_calls=tool_calls or [])

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str, name: str) -> Message:
        return cls(role=Role.TOOL, content=content, tool_call_id=tool_call_id, name=name)

    def to_openai(self) -> dict[str, Any]:
        """The dict the chat-completions API takes."""
        out: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role is Role.TOOL:
            out["name"] = self.name
        return out

    def wire_json(self) -> bytes:
        """to_openai() as compact JSON, computed once: a conversation's earlier messages cost
        nothing to send again (change a message by assigning its fields, not in place)."""
        private = self.__pydantic_private__  # not self._wire: pydantic's __getattr__ is slow
        wire: bytes | None = private.get("_wire") if private is not None else None
        if wire is None:
            wire = json.dumps(self.to_openai(), ensure_ascii=False, separators=(",", ":")).encode()
            self._wire = wire
        return wire
