"""What a run yields: the typed events an agent streams while it works."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from myagent.errors import ErrorKind

ToolStatus = Literal["success", "failed", "denied", "expired"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class Thinking(_Event):
    """The agent starts a step, or explains what it will do next."""

    type: Literal["thinking"] = "thinking"
    step: int
    content: str


class ToolStarted(_Event):
    """The model asked for a tool call and the agent is running it."""

    type: Literal["tool_call"] = "tool_call"
    step: int
    step_id: str
    tool: str
    args: dict[str, Any]
    status: Literal["running", "awaiting_approval"] = "running"


class ApprovalRequired(_Event):
    """A tool call waits for a person's approval (its ToolStarted came first)."""

    type: Literal["approval_required"] = "approval_required"
    step: int
    step_id: str
    tool: str
    args: dict[str, Any]


class ToolFinished(_Event):
    """A tool call ended, successfully or not."""

    type: Literal["tool_result"] = "tool_result"
    step: int
    step_id: str
    tool: str
    status: ToolStatus
    output: str | None = None
    error: str | None = None
    duration_s: float = 0.0


@dataclass(slots=True)
class AnswerDelta:
    """A piece of text as the model streams it.

    A run yields one for every token, so this one is a slotted dataclass, not a validated
    model like the others: built in a third of the time (its one field is the model's text,
    a str already).
    """

    content: str
    type: ClassVar[Literal["partial_answer"]] = "partial_answer"


class Answer(_Event):
    """The whole final answer of a run: the run finished."""

    type: Literal["final_answer"] = "final_answer"
    content: str


class ModelCalled(_Event):
    """The model answered one turn: for metrics and traces, not shown to users."""

    type: Literal["llm_call"] = "llm_call"
    step: int
    model: str
    duration_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RunFailed(_Event):
    """The run ended in ERROR: the model failed or max_steps was reached."""

    type: Literal["error"] = "error"
    error: str
    code: ErrorKind
    retry_after_s: float | None = None


RunEvent = (
    Thinking | ToolStarted | ApprovalRequired | ToolFinished | AnswerDelta | Answer | ModelCalled
    | RunFailed
)  # fmt: skip
