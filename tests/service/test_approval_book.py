"""The ApprovalBook on its own, with a clock the test moves."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from myagent.approval import ApprovalRequest
from myagent.events import ApprovalRequired
from service.approvals import ApprovalBook, NoPendingApproval
from service.eventlog import EventLog
from service.metrics import Metrics
from service.state.base import RunState, SessionRecord
from service.state.memory import MemoryState


def book_at(now: list[float]) -> tuple[ApprovalBook, MemoryState]:
    store = MemoryState(max_events=100, max_bytes=100_000)
    events = EventLog("s1", store)
    store.create(SessionRecord(session_id="s1", identity="i", agent="a", epoch=1), events)
    book = ApprovalBook(
        events,
        Metrics.create(CollectorRegistry()),
        lambda: RunState(run_id="r1", approvals=book.state()),
        timeout_s=10,
        clock=lambda: now[0],
    )
    return book, store


def announce(book: ApprovalBook, step_id: str) -> None:
    event = ApprovalRequired(step=1, step_id=step_id, tool="send_email", args={"to": "a@b.c"})
    book.announce(event, {"run_id": "r1"}, lambda: "{}")


async def test_an_answer_after_the_deadline_is_refused_and_the_call_expires() -> None:
    now = [1000.0]
    book, store = book_at(now)
    announce(book, "c1")
    assert [a.deadline for a in store.entries["s1"].state.approvals] == [1010.0]  # saved
    now[0] = 1010.5  # its turn has not come yet (another call waits first), its time has
    with pytest.raises(NoPendingApproval, match="expired"):
        book.answer("c1", True, None)
    decision = await book.wait(ApprovalRequest(step_id="c1", tool="send_email", args={}))
    assert decision.outcome == "expired"
    assert store.entries["s1"].state.approvals == ()  # an adopter no longer waits for it


async def test_an_answer_before_its_turn_is_kept_until_the_call_waits() -> None:
    now = [1000.0]
    book, _ = book_at(now)
    announce(book, "c1")
    book.answer("c1", False, "no")
    decision = await book.wait(ApprovalRequest(step_id="c1", tool="send_email", args={}))
    assert (decision.outcome, decision.reason) == ("denied", "no")
    with pytest.raises(NoPendingApproval):
        book.answer("c1", True, None)
