"""Runs: at most one at a time in a session, the multitask policy, and retried request_ids.

A run is the agent's event stream for one user.message, mapped to wire frames (service.wire).
Its state (what runs, what waits, which request_ids were answered, which tool calls wait for
approval, what the session used) is saved with its first and last frames, and the agent's
memory with every tool result and the run's end, so a replica that adopts the session knows
what was going and goes on from the last step (or waits on for the same approvals).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import structlog

from middleware.base import bound_context
from myagent.agent.base import BaseAgent
from myagent.events import Answer, RunEvent
from service.approvals import DEFAULT_TIMEOUT_S, ApprovalBook
from service.errors import NoActiveRun, SessionBusy
from service.eventlog import EventLog
from service.lifecycle import Lifecycle
from service.metadata import UsageMeta
from service.metrics import Metrics
from service.protocol import (
    AgentErrorEvent,
    AgentFinalAnswer,
    AgentInterrupted,
    AgentUsage,
    ErrorCode,
)
from service.state.base import AnsweredRequest, Frame, PendingMessage, RunState
from service.usage import BudgetExceeded, RunMeter, session_check, with_usage
from service.wire import play, run_error_code

log = structlog.get_logger("myagent_ws.runs")
MAX_PENDING = 16
REMEMBERED_REQUESTS = 64  # request_ids a session remembers: a retry of one never runs twice
Steps = AsyncIterator[RunEvent]  # a run's events, as the agent streams them


class Runs:
    """The runs of one session's agent."""

    def __init__(
        self,
        events: EventLog,
        agent: BaseAgent,
        *,
        agent_name: str,
        multitask: str,
        metrics: Metrics,
        lifecycle: Lifecycle,
        state: RunState | None = None,
        on_end: Callable[[], None] | None = None,
        budget: Mapping[str, int] | None = None,
        approval_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.events = events
        self.agent = agent
        self.agent_name = agent_name
        self.multitask = multitask
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.on_end = on_end
        state = state or RunState()
        self.pending: deque[PendingMessage] = deque(state.pending)
        self.requests: OrderedDict[str, AnsweredRequest] = OrderedDict(
            (r.request_id, r) for r in state.requests
        )
        self.terminal: dict[str, Frame] = {}  # run_id -> its last frame, for retries
        self.task: asyncio.Task[None] | None = None
        self.run_id: str | None = None
        self.request_id: str | None = None
        self.run_started = False  # the run's task has taken its first step
        self.cancel_at_start = False  # cancelled before that: it stops at its first step
        self.closed = False
        self.budget = budget or {}
        self.usage = state.usage  # the session's ended runs
        self.meter: RunMeter | None = None  # the running run's
        self.approvals = ApprovalBook(events, metrics, self.state, timeout_s=approval_timeout_s)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def state(self) -> RunState:
        """What is going, as the store keeps it."""
        return RunState(
            run_id=self.run_id if self.running else None,
            request_id=self.request_id if self.running else None,
            pending=tuple(self.pending),
            requests=tuple(self.requests.values()),
            approvals=self.approvals.state(),
            usage=self.usage,
            run_usage=self.meter.usage() if self.running and self.meter else None,
        )

    def usage_event(self, request_id: str | None) -> AgentUsage:
        """agent.usage: what the session used so far, with the running run."""
        totals = self.usage + self.meter.usage() if self.running and self.meter else self.usage
        return AgentUsage(session_id=self.events.id, totals=totals, request_id=request_id)

    def memory(self) -> str:
        return self.agent.memory.model_dump_json()

    def answers(self, request_id: str | None) -> bool:
        """Is this request_id one the session has seen (a retry)?"""
        return request_id is not None and request_id in self.requests

    def submit(self, text: str, request_id: str | None) -> Frame | int | None:
        """A user.message: start a run, or apply the multitask policy if one is going.

        A request_id seen before never starts a second run: the first run's terminal frame (or
        its seq, when this process did not run it) is returned for the caller to send again;
        None while that run still goes.
        """
        if request_id is not None and (seen := self.requests.get(request_id)) is not None:
            return self.terminal.get(seen.run_id) or seen.terminal_seq or None
        session_check(self.budget, self.usage)
        if not self.running:
            self._start(self.agent.stream_run(text), request_id)
        elif self.multitask == "reject":
            raise SessionBusy(
                "a run is already going in this session; wait for its final answer or send "
                "user.cancel"
            )
        elif len(self.pending) >= MAX_PENDING:
            raise SessionBusy(f"{MAX_PENDING} messages are already waiting in this session")
        else:
            if self.multitask == "interrupt":  # the newest message wins, also over waiting ones
                while self.pending:
                    self._supersede(self.pending.popleft().request_id)
            self.pending.append(PendingMessage(content=text, request_id=request_id))
            self._remember(request_id, "pending")
            self.events.save(self.state())
            if self.multitask == "interrupt":
                self.cancel_task()
        return None

    def _supersede(self, request_id: str | None) -> None:
        """A waiting message replaced by a newer one: it ends, as a run would, interrupted."""
        run_id = f"superseded:{request_id}"
        self._remember(request_id, run_id, self.events.seq + 1)
        frame = self.events.publish(AgentInterrupted, request_id=request_id, state=self.state())
        if frame is not None:
            self.terminal[run_id] = frame

    def _remember(self, request_id: str | None, run_id: str, terminal_seq: int = 0) -> None:
        if request_id is None:
            return
        self.requests[request_id] = AnsweredRequest(
            request_id=request_id, run_id=run_id, terminal_seq=terminal_seq
        )
        self.requests.move_to_end(request_id)
        while len(self.requests) > REMEMBERED_REQUESTS:
            _, old = self.requests.popitem(last=False)
            self.terminal.pop(old.run_id, None)

    def _start(
        self, steps: Steps, request_id: str | None, run_id: str | None = None,
        carried: UsageMeta | None = None,
    ) -> None:  # fmt: skip
        self.run_id = run_id = run_id or uuid.uuid4().hex
        self.request_id = request_id
        self._remember(request_id, run_id)
        self.lifecycle.running += 1
        self.run_started = self.cancel_at_start = False
        self.meter = RunMeter(self.budget, self.usage, carried)
        self.task = asyncio.create_task(self._run(steps, run_id, request_id), name=f"run-{run_id}")
        self.events.save(self.state())  # an adopter knows this run was going

    def go_on(self, steps: Steps, state: RunState) -> None:
        """Continue a run adopted while its tool calls waited for approval: they wait here."""
        self.approvals.restore(state.approvals)
        self._start(steps, state.request_id, state.run_id, state.run_usage)

    def _next(self) -> None:
        """After a run: start the next waiting message, if any."""
        if self.pending and not self.closed:
            message = self.pending.popleft()
            self._start(self.agent.stream_run(message.content), message.request_id)

    def cancel_run(self) -> None:
        if not self.running:
            raise NoActiveRun("nothing is running in this session")
        self.cancel_task()

    def cancel_task(self) -> None:
        """Cancel the run. A task cancelled before its first step would run none of _run, so it
        would send no agent.interrupted nor start the next message: it stops there instead."""
        if self.task is None or self.task.done():
            return
        if self.run_started:
            self.task.cancel()
        else:
            self.cancel_at_start = True

    async def stop(self) -> None:
        """Cancel the running run, if any, drop what waits, and wait for the run to end."""
        self.closed = True
        self.pending.clear()
        if self.task is not None and not self.task.done():
            self.cancel_task()
            await asyncio.gather(self.task, return_exceptions=True)

    def _end(
        self, cls: Callable[..., Any], run_id: str, request_id: str | None, **fields: Any
    ) -> None:
        """Publish the run's one terminal frame, with the state and memory after the run, and
        (but for agent.interrupted) what the run used in its metadata."""
        if cls is AgentInterrupted and self.approvals.handed_over:
            return  # released while it waited for a person: it goes on elsewhere
        self._remember(request_id, run_id, self.events.seq + 1)
        self.run_id = None
        meter, self.meter = self.meter, None
        if meter is not None:
            self.usage += (usage := meter.usage())
            fields["metadata"] = with_usage(cls is AgentFinalAnswer, fields.get("metadata"), usage)
        state = RunState(
            pending=tuple(self.pending), requests=tuple(self.requests.values()), usage=self.usage
        )
        frame = self.events.publish(
            cls, run_id=run_id, request_id=request_id, state=state, memory=self.memory, **fields
        )
        if frame is not None:
            self.terminal[run_id] = frame

    def end_lost(self, run_id: str, request_id: str | None) -> None:
        """A run (or waiting message) cut by the death of the server that held it: its one
        terminal frame, written by the replica that adopted the session."""
        self.metrics.errors_total.labels(ErrorCode.RUN_LOST.value).inc()
        self.metrics.run_ended(self.agent_name, "lost")
        self._end(
            AgentErrorEvent, run_id, request_id, code=ErrorCode.RUN_LOST,
            error="the server running this run stopped before it ended; the events it sent "
            "are kept, and the conversation goes on here: send the message again to retry",
        )  # fmt: skip

    async def _run(self, steps: Steps, run_id: str, request_id: str | None) -> None:
        started = time.perf_counter()
        outcome = "error"
        common = {"run_id": run_id, "request_id": request_id}
        meter = self.meter or RunMeter(self.budget, self.usage)
        with bound_context(session_id=self.events.id, run_id=run_id):
            try:
                self.run_started = True
                if self.cancel_at_start:
                    raise asyncio.CancelledError
                ended = await play(steps, common, meter, self.approvals, self.agent_name,
                                   self.metrics, self.memory)  # fmt: skip
                if isinstance(ended, Answer):
                    self._end(AgentFinalAnswer, run_id, request_id, content=ended.content)
                    outcome = "finished"
                else:
                    code = run_error_code(ended.code)
                    self.metrics.errors_total.labels(code.value).inc()
                    self._end(
                        AgentErrorEvent, run_id, request_id, error=ended.error, code=code,
                        retry_after_s=ended.retry_after_s,
                    )  # fmt: skip
            except BudgetExceeded as exc:  # the agent was closed, its memory repaired
                outcome = "budget"
                self.metrics.budget_exceeded_total.labels(exc.metadata.limit).inc()
                self.metrics.errors_total.labels(exc.code.value).inc()
                self._end(AgentErrorEvent, run_id, request_id, error=str(exc), code=exc.code,
                          metadata=exc.metadata)  # fmt: skip
            except asyncio.CancelledError:
                outcome = "handed_over" if self.approvals.handed_over else "interrupted"
                self._end(AgentInterrupted, run_id, request_id)
                raise
            except Exception:
                log.exception("run_crashed", agent=self.agent_name)
                self._end(
                    AgentErrorEvent, run_id, request_id, code=ErrorCode.INTERNAL,
                    error="the agent failed unexpectedly; the error is in the server log",
                )  # fmt: skip
            finally:
                duration = time.perf_counter() - started
                self.approvals.clear()
                self.lifecycle.running -= 1
                self._next()
                if self.on_end is not None:
                    self.on_end()
                self.metrics.run_ended(self.agent_name, outcome, duration)
                log.info(
                    "run_finished",
                    agent=self.agent_name,
                    outcome=outcome,
                    message_request_id=request_id,  # the user.message's (request_id: the HTTP one)
                    duration_s=round(duration, 4),
                    steps=self.agent.current_step,
                    prompt_tokens=meter.prompt_tokens,
                    completion_tokens=meter.completion_tokens,
                )
