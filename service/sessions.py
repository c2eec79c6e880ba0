"""Session (one conversation held here) and SessionRegistry (the sessions of this process, how
they are created, adopted from the store, released and reaped)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import structlog

from agent_loader.loader import AgentSpec
from myagent.agent.base import BaseAgent
from myagent.agent.toolcall import ToolCallAgent
from service.errors import SessionNotFound
from service.eventlog import EventLog, Listener
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.runs import Runs
from service.settings import SessionSettings
from service.state.base import Held, LostReason, RunState, SessionRecord, StateStore
from service.usage import RunMeter

log = structlog.get_logger("myagent_ws.sessions")


def not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"no session {session_id!r} for this client")  # never says whose


class Session:
    """One conversation held by this process: its agent, its event log and its runs."""

    def __init__(
        self,
        events: EventLog,
        identity: str,
        agent_name: str,
        agent: BaseAgent,
        runs: Runs,
    ) -> None:
        self.id = events.id
        self.identity = identity
        self.agent_name = agent_name
        self.agent = agent
        self.events = events
        self.runs = runs
        self.detached_at: float | None = time.monotonic()

    @property
    def listeners(self) -> list[Listener]:
        return self.events.listeners

    @property
    def running(self) -> bool:
        return self.runs.running

    def attach(self, listener: Listener) -> None:
        """One more socket gets the live events (one already attached gets them once)."""
        if listener not in self.events.listeners:
            self.events.listeners.append(listener)
        self.detached_at = None

    def detach(self, listener: Listener) -> None:
        listeners = self.events.listeners
        if listener in listeners:
            listeners.remove(listener)
            if not listeners:
                self.detached_at = time.monotonic()

    def ran(self) -> None:
        """A run ended: retention counts from now if no socket is attached."""
        if not self.events.listeners:
            self.detached_at = time.monotonic()


LostHandler = Callable[[Session, LostReason], None]


class SessionRegistry:
    """The sessions this process holds; others are adopted from the store when touched."""

    def __init__(
        self,
        store: StateStore,
        agents: dict[str, AgentSpec],
        config: SessionSettings,
        metrics: Metrics,
        lifecycle: Lifecycle,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.agents = agents
        self.config = config
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.adopting: dict[str, asyncio.Task[Session | Held | None]] = {}
        self.on_lost: LostHandler | None = None  # set by the app: what becomes of the sockets
        metrics.active_sessions.set_function(lambda: len(self.sessions))  # read at each scrape
        metrics.running_sessions.set_function(lambda: self.lifecycle.running)

    def __len__(self) -> int:
        return len(self.sessions)

    def _build(
        self, events: EventLog, identity: str, spec: AgentSpec, agent: BaseAgent,
        state: RunState | None = None,
    ) -> Session:  # fmt: skip
        runs = Runs(
            events,
            agent,
            agent_name=spec.name,
            multitask=self.config.multitask,
            metrics=self.metrics,
            lifecycle=self.lifecycle,
            state=state,
            budget=spec.budget,
            approval_timeout_s=spec.approval_timeout_s,
        )
        if isinstance(agent, ToolCallAgent):  # the config's policies, a person to ask
            agent.tool_approvals = {**agent.tool_approvals, **spec.approvals}
            agent.set_approver(runs.approvals.wait)
        session = Session(events, identity, spec.name, agent, runs)
        runs.on_end = session.ran
        events.on_lost = lambda reason: self._lost(session, reason)
        self.sessions[session.id] = session
        return session

    def create(self, spec: AgentSpec, identity: str) -> Session:
        """A new session of this agent, owned here; nothing is published yet."""
        events = EventLog(uuid.uuid4().hex, self.store)
        record = SessionRecord(
            session_id=events.id, identity=identity, agent=spec.name, epoch=events.epoch
        )
        self.store.create(record, events)
        return self._build(events, identity, spec, spec.factory())

    def get(self, session_id: str, identity: str) -> Session | None:
        """The session if this process holds it (None if not); SessionNotFound if it is
        another identity's."""
        session = self.sessions.get(session_id)
        if session is not None and session.identity != identity:
            raise not_found(session_id)  # the same answer as for a session that does not exist
        return session

    async def adopt(self, record: SessionRecord, *, gone: str = "") -> Session | Held | None:
        """Take a session from the store (another replica's that is gone, or one left by a
        drain or a restart): its agent rebuilt, its memory restored, a cut run ended."""
        if (held := self.sessions.get(record.session_id)) is not None:
            return held
        task = self.adopting.get(record.session_id)
        if task is None:  # one adoption at a time per session
            task = asyncio.ensure_future(self._adopt(record.session_id, record.agent, gone))
            self.adopting[record.session_id] = task
            task.add_done_callback(lambda _: self.adopting.pop(record.session_id, None))
        return await asyncio.shield(task)

    async def _adopt(self, session_id: str, agent: str, gone: str) -> Session | Held | None:
        spec = self.agents.get(agent)
        if spec is None:  # a replica that serves other agents: not ours to run
            log.warning("session_not_adopted", session_id=session_id, agent=agent)
            raise not_found(session_id)
        events = EventLog(session_id, self.store)
        found = await self.store.acquire(session_id, events, gone=gone)
        if not isinstance(found, SessionRecord):
            return found
        agent_obj = spec.factory()
        if found.memory:
            agent_obj.memory = type(agent_obj.memory).model_validate_json(found.memory)
        events.seq = events.written_seq = events.sent_seq = found.last_seq
        events.epoch = found.epoch
        state = found.state
        session = self._build(events, found.identity, spec, agent_obj, state)
        if state.run_id and state.approvals and isinstance(agent_obj, ToolCallAgent):
            # cut while it waited for a person: it waits here, until the same deadlines
            session.runs.go_on(agent_obj.continue_run({a.step_id for a in state.approvals}), state)
            log.info("session_adopted", session_id=session_id, epoch=found.epoch, waiting=True)
            return session
        lost = [(state.run_id, state.request_id)] if state.run_id else []
        lost += [(f"queued:{uuid.uuid4().hex}", m.request_id) for m in state.pending]
        if lost:
            agent_obj.close_pending_tool_calls("the server running this call stopped")
            session.runs.pending.clear()
            for run_id, request_id in lost:
                if run_id == state.run_id:  # what it used before it was cut counts too
                    session.runs.meter = RunMeter(spec.budget, state.usage, state.run_usage)
                session.runs.end_lost(run_id, request_id)
        log.info("session_adopted", session_id=session_id, epoch=found.epoch, runs_lost=len(lost))
        return session

    def _lost(self, session: Session, reason: LostReason) -> None:
        """Another replica owns the session now (or its record is gone): stop it here."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        session.runs.closed = True
        session.runs.cancel_task()  # its frames are not published: the log is not ours
        log.warning("session_lost", session_id=session.id, reason=reason)
        if self.on_lost is not None:
            self.on_lost(session, reason)

    def forget(self, session: Session) -> None:
        """Stop holding a session here without waiting: its run is cancelled, it is deleted."""
        if self.sessions.pop(session.id, None) is not None:
            self.store.delete(session.id, session.events.epoch)
        if session.running:
            session.runs.cancel_task()

    async def close(self, session: Session) -> None:
        """Delete a session: cancel its run and wait for it (agent.interrupted is published)."""
        await session.runs.stop()
        if self.sessions.pop(session.id, None) is not None:
            self.store.delete(session.id, session.events.epoch)

    async def release(self, session: Session) -> None:
        """Stop holding a session: its run interrupted and saved, its lease given up, so any
        replica (or this one, restarted) goes on with it; a run waiting for approval is not
        ended: the next holder waits on."""
        session.runs.approvals.hand_over()
        await session.runs.stop()
        if self.sessions.pop(session.id, None) is not None:
            self.store.release(session.id, session.events.epoch)

    async def reap(self, retention_s: float) -> int:
        """Stop holding sessions left without a socket and a run for retention_s."""
        now = self.clock()
        expired = [
            s
            for s in self.sessions.values()
            if not s.listeners
            and not s.running
            and s.detached_at is not None
            and now - s.detached_at >= retention_s
        ]
        for session in expired:
            if self.store.name == "memory":
                await self.close(session)
            else:  # followers elsewhere may keep it; else its record expires soon
                await self.release(session)
        return len(expired)

    async def release_all(self) -> None:
        """Interrupt every run and release every session (drain, shutdown)."""
        await asyncio.gather(*(self.release(s) for s in [*self.sessions.values()]))
