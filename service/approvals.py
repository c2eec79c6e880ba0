"""Approvals: the tool calls of a session's run that wait for a person (user.approve).

The agent announces a call (myagent.events.ApprovalRequired); the book saves it in the run
state with its deadline, then publishes agent.approval_required, so a resume replays the card
and a replica that adopts the session waits for the same answer until the same deadline. The
agent's approver (`wait`) returns the person's Decision, or `expired` at the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from myagent.approval import ApprovalRequest, Decision, Outcome
from myagent.events import ApprovalRequired
from service.errors import ServiceError
from service.eventlog import EventLog
from service.metadata import ApprovalMeta
from service.metrics import Metrics
from service.protocol import AgentApprovalRequired, ErrorCode
from service.state.base import MemoryDump, PendingApproval, RunState

log = structlog.get_logger("myagent_ws.approvals")
DEFAULT_TIMEOUT_S = 300.0


class NoPendingApproval(ServiceError):
    code = ErrorCode.NO_PENDING_APPROVAL


class ApprovalBook:
    """The calls of one session's run that wait for an answer, and the answers not yet read."""

    def __init__(
        self,
        events: EventLog,
        metrics: Metrics,
        state: Callable[[], RunState],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.events = events
        self.metrics = metrics
        self.run_state = state
        self.timeout_s = timeout_s
        self.clock = clock
        self.waiting: dict[str, PendingApproval] = {}
        self.answers: dict[str, asyncio.Future[Decision]] = {}
        self.handed_over = False

    def hand_over(self) -> bool:
        """The session is released (a drain) while calls wait: its run is to stop without an
        end, so the state saved says it waits, and the next holder waits on for the answers."""
        self.handed_over = bool(self.waiting)
        return self.handed_over

    def state(self) -> tuple[PendingApproval, ...]:
        return tuple(self.waiting.values())

    def restore(self, approvals: tuple[PendingApproval, ...]) -> None:
        """Calls that waited on the server that ran the run before (adoption)."""
        for approval in approvals:
            self._open(approval)

    def _open(self, approval: PendingApproval) -> None:
        self.waiting[approval.step_id] = approval
        self.answers[approval.step_id] = asyncio.get_running_loop().create_future()

    def announce(self, event: ApprovalRequired, common: dict[str, Any], memory: MemoryDump) -> None:
        """Save the call as waiting, then publish agent.approval_required."""
        approval = PendingApproval(
            step_id=event.step_id, tool=event.tool, args=event.args, timeout_s=self.timeout_s,
            deadline=self.clock() + self.timeout_s,
        )  # fmt: skip
        self._open(approval)
        self.events.publish(
            AgentApprovalRequired,
            step_id=event.step_id,
            metadata=ApprovalMeta(tool=event.tool, args=event.args),
            timeout_s=self.timeout_s,
            state=self.run_state(),
            memory=memory,
            **common,
        )

    def answer(self, step_id: str, approved: bool, reason: str | None) -> None:
        """A person's answer; NoPendingApproval if that call does not wait (any more)."""
        future = self.answers.get(step_id)
        if future is None or future.done():
            raise NoPendingApproval(
                f"no tool call {step_id!r} waits for approval in this session (answered, "
                "expired, or its run ended)"
            )
        approval = self.waiting.get(step_id)
        if approval is not None and self.clock() >= approval.deadline:  # not yet its turn
            self._expire(approval, future)
            raise NoPendingApproval(f"tool call {step_id!r} expired before this answer came")
        outcome: Outcome = "approved" if approved else "denied"
        future.set_result(Decision(outcome=outcome, reason=reason))
        self._close(step_id, outcome)

    def _expire(self, approval: PendingApproval, future: asyncio.Future[Decision]) -> None:
        reason = f"no answer within {approval.timeout_s:g} s"
        future.set_result(Decision(outcome="expired", reason=reason))
        self._close(approval.step_id, "expired")

    def _close(self, step_id: str, outcome: Outcome) -> None:
        approval = self.waiting.pop(step_id, None)
        if approval is None:
            return
        waited = max(0.0, self.clock() - (approval.deadline - approval.timeout_s))
        self.metrics.approvals_total.labels(approval.tool, outcome).inc()
        self.metrics.approval_wait_seconds.observe(waited)
        log.info(
            "approval_answered", tool=approval.tool, outcome=outcome, waited_s=round(waited, 3)
        )
        self.events.save(self.run_state())  # an adopter no longer waits for it

    async def wait(self, request: ApprovalRequest) -> Decision:
        """The agent's approver: the answer to this call, or `expired` at its deadline."""
        future = self.answers.get(request.step_id)
        approval = self.waiting.get(request.step_id)
        if future is None:  # announced by no one (an agent driven without events): ask now
            approval = PendingApproval(
                step_id=request.step_id, tool=request.tool, args=request.args,
                timeout_s=self.timeout_s, deadline=self.clock() + self.timeout_s,
            )  # fmt: skip
            self._open(approval)
            future = self.answers[request.step_id]
        if not future.done() and approval is not None:
            try:
                async with asyncio.timeout(max(0.0, approval.deadline - self.clock())):
                    return await asyncio.shield(future)
            except TimeoutError:
                if not future.done():
                    self._expire(approval, future)
        return future.result()

    def clear(self) -> None:
        """The run ended: nothing of it waits any more."""
        for future in self.answers.values():
            if not future.done():
                future.cancel()
        self.waiting.clear()
        self.answers.clear()
