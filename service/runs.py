"""What a run looks like on the wire: each SDK event as its frame, and its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from myagent.events import (
    Answer,
    AnswerDelta,
    ModelCalled,
    RunEvent,
    RunFailed,
    Thinking,
    ToolFinished,
    ToolStarted,
)
from service.protocol import (
    AgentErrorEvent,
    AgentFinalAnswer,
    AgentPartialAnswer,
    AgentThinking,
    AgentToolCall,
    AgentToolResult,
    ErrorCode,
    ThinkingMeta,
    ToolMeta,
)

if TYPE_CHECKING:
    from service.sessions import Session

RUN_ERROR_CODES = {
    "llm_failed": ErrorCode.LLM_FAILED,
    "max_steps": ErrorCode.MAX_STEPS,
    "rate_limited": ErrorCode.RATE_LIMITED,
}


@dataclass
class RunTally:
    """What a run used, for its run_finished line."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


def publish_run_event(
    session: Session, event: RunEvent, common: dict[str, Any], tally: RunTally
) -> str | None:
    """Publish the wire frame for an agent event; return the outcome if it ends the run."""
    match event:
        case AnswerDelta(content=content):
            session.publish(AgentPartialAnswer, content=content, **common)
        case Thinking(content=content, step=step):
            session.publish(
                AgentThinking, content=content, metadata=ThinkingMeta(step=step), **common
            )
        case ToolStarted(step_id=step_id, tool=tool, args=args):
            session.publish(
                AgentToolCall,
                step_id=step_id,
                **common,
                metadata=ToolMeta(tool=tool, args=args, status="running"),
            )
        case ToolFinished(step_id=step_id, tool=tool, status=status):
            session.metrics.tool_calls_total.labels(tool, status).inc()
            result = event.output if status == "success" else event.error
            session.publish(
                AgentToolResult,
                step_id=step_id,
                content=result or "",
                **common,
                metadata=ToolMeta(tool=tool, status=status, duration_s=event.duration_s),
            )
        case ModelCalled():
            tally.prompt_tokens += event.prompt_tokens
            tally.completion_tokens += event.completion_tokens
            session.metrics.llm_request_duration_seconds.labels(event.model).observe(
                event.duration_s
            )
            session.metrics.llm_tokens_total.labels(event.model, "prompt").inc(event.prompt_tokens)
            session.metrics.llm_tokens_total.labels(event.model, "completion").inc(
                event.completion_tokens
            )
        case Answer(content=content):
            session.publish(AgentFinalAnswer, content=content, **common)
            return "finished"
        case RunFailed():
            code = RUN_ERROR_CODES.get(event.code, ErrorCode.AGENT_FAILED)
            session.metrics.errors_total.labels(code.value).inc()
            session.publish(
                AgentErrorEvent,
                error=event.error,
                code=code,
                retry_after_s=event.retry_after_s,
                **common,
            )
            return "error"
    return None
