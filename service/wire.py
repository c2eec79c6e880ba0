"""What a run looks like on the wire: each SDK event as its frame, and its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from myagent.errors import ErrorKind
from myagent.events import AnswerDelta, ModelCalled, Thinking, ToolFinished, ToolStarted
from service.eventlog import EventLog
from service.metrics import Metrics
from service.protocol import (
    AgentPartialAnswer,
    AgentThinking,
    AgentToolCall,
    AgentToolResult,
    ErrorCode,
    ThinkingMeta,
    ToolMeta,
)
from service.state.base import MemoryDump


def run_error_code(code: ErrorKind) -> ErrorCode:
    """The agent.error code of a failed run: every kind of the SDK's errors has one."""
    match code:
        case "llm_failed":
            return ErrorCode.LLM_FAILED
        case "max_steps":
            return ErrorCode.MAX_STEPS
        case "rate_limited":
            return ErrorCode.RATE_LIMITED
        case "agent_failed" | "tool_failed" | "agent_busy":
            return ErrorCode.AGENT_FAILED
        case _:
            assert_never(code)


StepEvent = Thinking | ToolStarted | ToolFinished | AnswerDelta | ModelCalled  # not the last


@dataclass
class RunTally:
    """What a run used, for its run_finished line."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


def publish_run_event(
    events: EventLog,
    event: StepEvent,
    common: dict[str, Any],
    tally: RunTally,
    metrics: Metrics,
    memory: MemoryDump,
) -> None:
    """Publish the wire frame of an agent event that does not end the run (Answer and
    RunFailed do, and the run publishes those itself). Steps, tool calls and tool results are
    step boundaries: the agent's memory is saved with them (the user's message, the model's
    calls, their results), so a replica that adopts the session has every turn."""
    match event:
        case AnswerDelta(content=content):
            events.publish(AgentPartialAnswer, content=content, **common)
        case Thinking(content=content, step=step):
            events.publish(
                AgentThinking,
                content=content,
                metadata=ThinkingMeta(step=step),
                memory=memory,
                **common,
            )
        case ToolStarted(step_id=step_id, tool=tool, args=args):
            events.publish(
                AgentToolCall,
                step_id=step_id,
                memory=memory,
                **common,
                metadata=ToolMeta(tool=tool, args=args, status="running"),
            )
        case ToolFinished(step_id=step_id, tool=tool, status=status):
            metrics.tool_calls_total.labels(tool, status).inc()
            result = event.output if status == "success" else event.error
            events.publish(
                AgentToolResult,
                step_id=step_id,
                content=result or "",
                memory=memory,
                **common,
                metadata=ToolMeta(tool=tool, status=status, duration_s=event.duration_s),
            )
        case ModelCalled():
            tally.prompt_tokens += event.prompt_tokens
            tally.completion_tokens += event.completion_tokens
            metrics.llm_request_duration_seconds.labels(event.model).observe(event.duration_s)
            metrics.llm_tokens_total.labels(event.model, "prompt").inc(event.prompt_tokens)
            metrics.llm_tokens_total.labels(event.model, "completion").inc(event.completion_tokens)
        case _:
            assert_never(event)
