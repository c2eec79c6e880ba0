"""The `metadata` objects of server frames (service.protocol): steps, tools, approvals, usage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ThinkingMeta(BaseModel):
    model_config = ConfigDict(frozen=True)
    step: int


class ToolMeta(BaseModel):
    model_config = ConfigDict(frozen=True)
    tool: str
    args: dict[str, Any] | None = None
    status: Literal["running", "awaiting_approval", "success", "failed", "denied", "expired"]
    duration_s: float | None = None


class UsageMeta(BaseModel):
    """What a run (or a session, in all) used."""

    model_config = ConfigDict(frozen=True)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    duration_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: UsageMeta) -> UsageMeta:
        return UsageMeta(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            model_calls=self.model_calls + other.model_calls,
            tool_calls=self.tool_calls + other.tool_calls,
            duration_s=round(self.duration_s + other.duration_s, 6),
        )


class RunMeta(BaseModel):
    model_config = ConfigDict(frozen=True)
    usage: UsageMeta


class ErrorMeta(BaseModel):
    """With a run-ending error: the run's usage; with budget_exceeded, which limit and how
    much of it was used."""

    model_config = ConfigDict(frozen=True)
    usage: UsageMeta | None = None
    limit: str | None = None
    max: int | None = None
    used: int | None = None


class ApprovalMeta(BaseModel):
    model_config = ConfigDict(frozen=True)
    tool: str
    args: dict[str, Any]
