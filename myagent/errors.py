"""Errors of the agent SDK.

MyAgentError
├── ToolError        a tool could not do its work; becomes a failed ToolResult, the run goes on
├── LLMError         the model endpoint failed (after the SDK's retries); ends the run
│   └── LLMRateLimitError   429 after retries; carries retry_after_s when the server said
├── MaxStepsError    the run used max_steps without a final answer
└── AgentBusyError   arun()/stream_run() called while the agent is already running

Each class has a `code` (ErrorKind): what went wrong, in the SDK's terms; the service maps each
one to a code of its protocol.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal[
    "agent_failed", "tool_failed", "llm_failed", "rate_limited", "max_steps", "agent_busy"
]


class MyAgentError(Exception):
    """Root of every error the SDK raises on purpose."""

    code: ErrorKind = "agent_failed"


class ToolError(MyAgentError):
    """A tool failed in an expected way; the message is shown to the model and the client."""

    code: ErrorKind = "tool_failed"


class LLMError(MyAgentError):
    """The language model could not answer."""

    code: ErrorKind = "llm_failed"


class LLMRateLimitError(LLMError):
    """The model endpoint kept answering 429."""

    code: ErrorKind = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MaxStepsError(MyAgentError):
    """The agent used all its steps without reaching a final answer."""

    code: ErrorKind = "max_steps"


class AgentBusyError(MyAgentError):
    """An agent instance runs one message at a time; copy it for concurrent runs."""

    code: ErrorKind = "agent_busy"
