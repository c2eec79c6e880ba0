"""What a run looks like on the wire: each SDK event as its frame, and its metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, assert_never

from myagent.errors import ErrorKind
from myagent.events import (
    Answer,
    AnswerDelta,
    ApprovalRequired,
    ModelCalled,
    RunEvent,
    RunFailed,
    Thinking,
    ToolFinished,
    ToolStarted,
)
from myagent.llm import closing_stream
from service.approvals import ApprovalBook
from service.eventlog import EventLog
from service.metrics import Metrics
from service.protocol import ErrorCode
from service.state.base import MemoryDump, RunState
from service.text_frames import (
    PARTIAL_ANSWER,
    THINKING,
    TOOL_CALL,
    TOOL_RESULT,
    RunFrames,
    partial_answer,
    thinking,
    tool_call,
    tool_meta,
    tool_result,
)
from service.usage import RunMeter


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


StepEvent = Thinking | ToolStarted | ToolFinished | ModelCalled  # not the last, nor a delta


async def play(
    stream: AsyncIterator[RunEvent],
    common: dict[str, Any],
    meter: RunMeter,
    approvals: ApprovalBook,
    agent: str,
    metrics: Metrics,
    memory: MemoryDump,
) -> Answer | RunFailed:
    """Publish a run's events until its end (returned, for the run to publish). The meter sees
    each event first: BudgetExceeded closes the agent's stream there, as a cancel would. Text
    deltas (most events) take the short way: the meter has nothing to count in them."""
    events, state = approvals.events, approvals.run_state
    publish, frames = events.publish_text, RunFrames(events.id, **common)
    async with closing_stream(stream) as steps:
        async for event in steps:
            if isinstance(event, AnswerDelta):  # its frame: service.text_frames
                publish(frames, PARTIAL_ANSWER, partial_answer(event.content))
            else:
                if isinstance(event, ModelCalled):  # spent, so counted in the metrics anyway
                    publish_run_event(events, event, frames, agent, metrics, memory)
                meter.see(event)
                if isinstance(event, Answer | RunFailed):
                    return event
                if isinstance(event, ApprovalRequired):
                    approvals.announce(event, common, memory)
                elif not isinstance(event, ModelCalled):
                    publish_run_event(events, event, frames, agent, metrics, memory, state)
            if events.lagging:  # the store lags: pause the run
                await events.wait_room()
    raise RuntimeError("the agent's run ended without an answer or an error")


def publish_run_event(
    events: EventLog,
    event: StepEvent,
    frames: RunFrames,
    agent: str,
    metrics: Metrics,
    memory: MemoryDump,
    state: Callable[[], RunState] | None = None,
) -> None:
    """Publish the wire frame of an agent event that does not end the run (Answer and
    RunFailed do, and the run publishes those itself). Steps, tool calls and tool results are
    step boundaries: the agent's memory is saved with them (the user's message, the model's
    calls, their results), so a replica that adopts the session has every turn; a tool call
    saves the run state too (what the run used so far). Their JSON is written as text
    (service.text_frames), as the models write it."""
    match event:
        case Thinking(content=content, step=step):
            events.publish_text(frames, THINKING, thinking(content, step), memory=memory)
        case ToolStarted(step_id=step_id, tool=tool, args=args, status=status):
            members = tool_call(step_id, tool_meta(tool, status, args))
            run_state = state() if state is not None else None
            events.publish_text(frames, TOOL_CALL, members, state=run_state, memory=memory)
        case ToolFinished(step_id=step_id, tool=tool, status=status):
            metrics.child(metrics.tool_calls_total, tool, status).inc()
            result = event.output if status == "success" else event.error
            meta = tool_meta(tool, status, duration_s=event.duration_s)
            members = tool_result(step_id, result or "", meta)
            events.publish_text(frames, TOOL_RESULT, members, memory=memory)
        case ModelCalled():
            child, model = metrics.child, event.model
            child(metrics.agent_tokens_total, agent, "prompt").inc(event.prompt_tokens)
            child(metrics.agent_tokens_total, agent, "completion").inc(event.completion_tokens)
            child(metrics.llm_request_duration_seconds, model).observe(event.duration_s)
            child(metrics.llm_tokens_total, model, "prompt").inc(event.prompt_tokens)
            child(metrics.llm_tokens_total, model, "completion").inc(event.completion_tokens)
        case _:
            assert_never(event)
