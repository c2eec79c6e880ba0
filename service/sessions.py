"""Session (seq, replay log, running task) and SessionRegistry (who owns which session)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from middleware.base import bound_context
from myagent.agent.base import BaseAgent
from service.errors import NoActiveRun, ReplayUnavailable, SessionBusy, SessionNotFound
from service.metrics import Metrics
from service.protocol import (
    AgentErrorEvent,
    AgentInterrupted,
    ErrorCode,
    ServerEvent,
)
from service.runs import RunTally, publish_run_event
from service.settings import SessionSettings
from service.store import RedisState

log = structlog.get_logger("myagent_ws.sessions")
MAX_PENDING = 16
REMEMBERED_REQUESTS = 64
Mirror = Callable[["Session", int, str, str], None]  # (session, seq, json, event) -> store


class RunCount:
    """How many runs are going in this process: /health and the gauge read it, without a scan."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class Listener(Protocol):
    """Where a session's live events go: the connection attached to it."""

    def deliver(self, data: str, event: str) -> None: ...


class Session:
    """One conversation: its agent, its numbered event log, and at most one running run."""

    def __init__(
        self,
        session_id: str,
        agent_name: str,
        owner: str,
        agent: BaseAgent,
        *,
        max_events: int,
        max_bytes: int,
        metrics: Metrics,
        runs: RunCount,
        multitask: str = "reject",
        mirror: Mirror | None = None,
    ) -> None:
        self.id = session_id
        self.agent_name = agent_name
        self.owner = owner
        self.agent = agent
        self.metrics = metrics
        self.seq = 0
        self.log: deque[tuple[int, str, str]] = deque()  # (seq, json, event)
        self.log_bytes = 0
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.listener: Listener | None = None
        self.detached_at: float | None = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.run_id: str | None = None
        self.multitask = multitask
        self.runs = runs  # the registry's: shared by its sessions
        self.pending: deque[tuple[str, str | None]] = deque()  # enqueued user.message frames
        self.runs_by_request: OrderedDict[str, str] = OrderedDict()  # request_id -> run_id
        self.terminal_by_run: dict[str, tuple[str, str]] = {}  # run_id -> its last frame
        self.mirror = mirror
        self.closed = False
        self.last_frame: tuple[str, str] | None = None
        self.run_started = False  # the run's task has taken its first step
        self.cancel_at_start = False  # cancelled before that: it stops at its first step

    # --- events ---------------------------------------------------------------------------

    def publish(self, cls: Callable[..., ServerEvent], **fields: Any) -> None:
        """Number an event of this session, keep it for replay, and send it to the listener."""
        self.seq += 1
        event = cls(session_id=self.id, seq=self.seq, **fields)
        data = event.to_json()
        self.log.append((self.seq, data, event.event))
        self.log_bytes += len(data)
        self.last_frame = (data, event.event)
        if self.mirror is not None:
            self.mirror(self, self.seq, data, event.event)
        while len(self.log) > self.max_events or (
            self.log_bytes > self.max_bytes and len(self.log) > 1
        ):
            self.log_bytes -= len(self.log.popleft()[1])
        if self.listener is not None:
            self.listener.deliver(data, event.event)

    def events_after(self, last_seq: int) -> list[tuple[int, str, str]]:
        """Every held event with seq > last_seq, or ReplayUnavailable if some are gone."""
        if last_seq > self.seq:
            raise ReplayUnavailable(
                f"last_seq {last_seq} is ahead of this session (its last seq is {self.seq})",
                oldest_seq=self.log[0][0] if self.log else self.seq + 1,
            )
        oldest = self.log[0][0] if self.log else self.seq + 1
        if last_seq + 1 < oldest:
            raise ReplayUnavailable(
                f"events after seq {last_seq} are no longer held; the oldest held is {oldest}",
                oldest_seq=oldest,
            )
        return [entry for entry in self.log if entry[0] > last_seq]

    def attach(self, listener: Listener) -> None:
        self.listener = listener
        self.detached_at = None

    def detach(self, listener: Listener) -> None:
        if self.listener is listener:
            self.listener = None
            self.detached_at = time.monotonic()

    # --- runs -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def submit(self, text: str, request_id: str | None) -> tuple[str, str] | None:
        """A user.message: start a run, or apply the multitask policy if one is going.

        A request_id seen before never starts a second run: the first run's terminal frame is
        returned, for the caller to send again (None while that run still streams).
        """
        if request_id is not None and request_id in self.runs_by_request:
            return self.terminal_by_run.get(self.runs_by_request[request_id])
        if not self.running:
            self._start(text, request_id)
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
                    self._supersede(self.pending.popleft()[1])
            self.pending.append((text, request_id))
            self._remember(request_id, "pending")
            if self.multitask == "interrupt":
                self.cancel_task()
        return None

    def _supersede(self, request_id: str | None) -> None:
        """A waiting message replaced by a newer one: it ends, as a run would, interrupted."""
        self.publish(AgentInterrupted, request_id=request_id)
        if request_id is not None and self.last_frame is not None:
            self._remember(request_id, f"superseded:{request_id}")
            self.terminal_by_run[f"superseded:{request_id}"] = self.last_frame

    def _remember(self, request_id: str | None, run_id: str) -> None:
        if request_id is None:
            return
        self.runs_by_request[request_id] = run_id
        while len(self.runs_by_request) > REMEMBERED_REQUESTS:
            _, old_run = self.runs_by_request.popitem(last=False)
            self.terminal_by_run.pop(old_run, None)

    def _start(self, text: str, request_id: str | None) -> None:
        self.run_id = run_id = uuid.uuid4().hex
        self._remember(request_id, run_id)
        self.runs.value += 1
        self.run_started = self.cancel_at_start = False
        self.task = asyncio.create_task(self._run(text, run_id, request_id), name=f"run-{run_id}")

    def _next(self) -> None:
        """After a run: start the next enqueued message, if any."""
        if self.pending and not self.closed:
            self._start(*self.pending.popleft())

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
        """Cancel the running run, if any, and wait for it to end."""
        self.closed = True
        self.pending.clear()
        if self.task is not None and not self.task.done():
            self.cancel_task()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self, text: str, run_id: str, request_id: str | None) -> None:
        started = time.perf_counter()
        outcome = "error"
        common = {"run_id": run_id, "request_id": request_id}
        tally = RunTally()
        with bound_context(session_id=self.id, run_id=run_id):
            try:
                self.run_started = True
                if self.cancel_at_start:
                    raise asyncio.CancelledError
                async for event in self.agent.stream_run(text):
                    outcome = publish_run_event(self, event, common, tally) or outcome
            except asyncio.CancelledError:
                outcome = "interrupted"
                self.publish(AgentInterrupted, **common)
                raise
            except Exception:
                log.exception("run_crashed", agent=self.agent_name)
                self.publish(
                    AgentErrorEvent,
                    error="the agent failed unexpectedly; the error is in the server log",
                    code=ErrorCode.INTERNAL,
                    **common,
                )
            finally:
                duration = time.perf_counter() - started
                self.runs.value -= 1
                if self.listener is None:  # retention counts from the end of the last run
                    self.detached_at = time.monotonic()
                if self.last_frame is not None:  # the run's terminal frame, for retries
                    self.terminal_by_run[run_id] = self.last_frame
                self._next()
                self.metrics.runs_total.labels(self.agent_name, outcome).inc()
                self.metrics.run_duration_seconds.labels(self.agent_name).observe(duration)
                log.info(
                    "run_finished",
                    agent=self.agent_name,
                    outcome=outcome,
                    duration_s=round(duration, 4),
                    steps=self.agent.current_step,
                    prompt_tokens=tally.prompt_tokens,
                    completion_tokens=tally.completion_tokens,
                )


class SessionRegistry:
    """Every session of this process, by id; a session is visible only to its owner."""

    def __init__(
        self,
        metrics: Metrics,
        config: SessionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        store: RedisState | None = None,
    ) -> None:
        self.sessions: dict[str, Session] = {}
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self.store = store
        self.runs = RunCount()
        metrics.active_sessions.set_function(lambda: len(self.sessions))  # read at each scrape
        metrics.running_sessions.set_function(lambda: self.runs.value)
        self.draining_retry_s: float | None = None  # set by the drain: no new session or run
        self.mirror: Mirror | None = None
        if store is not None:
            self.mirror = lambda session, seq, data, event: store.append(
                session.id, seq, data, event
            )

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def running(self) -> int:
        return self.runs.value

    def create(self, agent_name: str, owner: str, agent: BaseAgent) -> Session:
        session = Session(
            uuid.uuid4().hex,
            agent_name,
            owner,
            agent,
            max_events=self.config.buffer_events,
            max_bytes=self.config.buffer_bytes,
            metrics=self.metrics,
            multitask=self.config.multitask,
            mirror=self.mirror,
            runs=self.runs,
        )
        self.sessions[session.id] = session
        if self.store is not None:
            self.store.register(session.id, owner, agent_name)
        return session

    def get(self, session_id: str, owner: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner:  # same answer: never reveal it exists
            raise SessionNotFound(f"no session {session_id!r} for this client")
        return session

    def discard(self, session: Session) -> None:
        """Forget a session and cancel its run without waiting for it."""
        if self.sessions.pop(session.id, None) is not None and self.store is not None:
            self.store.unregister(session.id)
        if session.running:
            session.cancel_task()

    async def close(self, session: Session) -> None:
        """Forget a session, cancel its run and wait for the run to end."""
        self.discard(session)
        await session.stop()

    async def reap(self, retention_s: float) -> int:
        """Close detached sessions idle for longer than retention_s; return how many."""
        now = self.clock()
        expired = [
            s
            for s in self.sessions.values()
            if s.listener is None
            and not s.running
            and s.detached_at is not None
            and now - s.detached_at >= retention_s
        ]
        for session in expired:
            await self.close(session)
        return len(expired)

    async def close_all(self) -> None:
        """Cancel every running agent and wait for it."""
        for session in list(self.sessions.values()):
            await self.close(session)
