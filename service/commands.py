"""Commands: the one path for session commands, from a local socket or forwarded by a replica.

Create, message, cancel, close and resume are carried out here, whoever asks: a Connection on
this process, or a RemoteCaller standing for a socket on another replica. This is where new
work is refused while draining, where a session held by another replica is forwarded to it (or
adopted, when that replica is gone), and where every error becomes `agent.error` and is counted.
"""

from __future__ import annotations

from typing import assert_never

import structlog

from agent_loader.loader import AgentSpec
from service.errors import (
    InternalError,
    InvalidMessage,
    MessageTooLarge,
    ServiceError,
    StoreUnavailable,
)
from service.forwarding import Forwarder, Moved, Remote
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.protocol import (
    AgentErrorEvent,
    AgentSessionClosed,
    AgentSessionCreated,
    AgentSessionResumed,
    ClientEvent,
    SystemPong,
    UserApprove,
    UserCancel,
    UserCloseSession,
    UserCreateSession,
    UserGetUsage,
    UserMessage,
    UserPing,
    UserResumeSession,
)
from service.replay import Caller, Replay
from service.sessions import Session, SessionRegistry, not_found
from service.settings import SessionSettings
from service.state.base import Frame, Held, StateStore

log = structlog.get_logger("myagent_ws.commands")
InSession = UserMessage | UserCancel | UserApprove | UserGetUsage  # carried out where it is held


def changing_servers(session_id: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"session {session_id!r} is changing servers; retry in a moment", retry_after_s=1.0
    )


class Commands:
    """Carries out client events on sessions, for local and forwarded callers alike."""

    def __init__(
        self,
        registry: SessionRegistry,
        store: StateStore,
        agents: dict[str, AgentSpec],
        config: SessionSettings,
        lifecycle: Lifecycle,
        metrics: Metrics,
    ) -> None:
        self.registry = registry
        self.store = store
        self.agents = agents
        self.config = config
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.replay = Replay(store)
        self.forwarder: Forwarder | None = None  # with Redis: set by the app

    async def handle(self, caller: Caller, frame: ClientEvent) -> None:
        """Carry out a client event."""
        session_id = getattr(frame, "session_id", None)
        try:
            match frame:
                case UserCreateSession():
                    self.create(caller, frame)
                case UserMessage():
                    await self.message(caller, frame)
                case UserCancel():
                    if session := await self.reach(caller, frame):
                        session.runs.cancel_run()
                case UserApprove():
                    if session := await self.reach(caller, frame):
                        session.runs.approvals.answer(frame.step_id, frame.approved, frame.reason)
                case UserGetUsage():
                    if session := await self.reach(caller, frame):
                        caller.send(session.runs.usage_event(frame.request_id))
                case UserResumeSession():
                    await self.resume(caller, frame)
                case UserCloseSession():
                    await self.close(caller, frame)
                case UserPing():
                    caller.send(SystemPong(request_id=frame.request_id))
                case _:
                    assert_never(frame)
        except ServiceError as exc:
            self.report(caller, exc, frame.request_id, session_id)
        except Moved:
            raise  # the forwarding replica carries it out itself
        except Exception:  # a bug: log it, tell the client no more, keep the socket
            log.exception("command_failed", frame=frame.event)
            error = InternalError("the server failed to handle this frame; see its log")
            self.report(caller, error, frame.request_id, session_id)

    def report(
        self,
        caller: Caller,
        exc: ServiceError,
        request_id: str | None,
        session_id: str | None = None,
    ) -> None:
        """An error as `agent.error`, counted by code; the socket stays open."""
        self.metrics.errors_total.labels(exc.code.value).inc()
        caller.send(
            AgentErrorEvent(
                error=str(exc),
                code=exc.code,
                request_id=request_id,
                retry_after_s=exc.retry_after_s,
                session_id=session_id,
                oldest_seq=exc.oldest_seq,
                metadata=exc.metadata,
            )
        )

    # --- finding a session ----------------------------------------------------------------

    async def locate(self, caller: Caller, session_id: str) -> Session | Remote:
        """The session, held here (adopted if no live replica holds it), or its live owner."""
        session = self.registry.get(session_id, caller.identity)
        if session is not None:
            return session
        if not caller.local:  # forwarded here, but held here no more: the sender does it
            raise Moved(session_id)
        record = await self.store.peek(session_id)
        if record is None or record.identity != caller.identity:
            raise not_found(session_id)
        if self.lifecycle.draining:  # adopting here now would only hand it over again
            self.lifecycle.refuse_new_work()
        found = await self.registry.adopt(record)
        if isinstance(found, Held):
            if found.owner == self.store.replica or self.forwarder is None:
                raise changing_servers(session_id)  # moving between replicas right now
            return Remote(record, found.owner)
        if found is None:
            raise not_found(session_id)
        return found

    async def take_over(self, remote: Remote) -> Session:
        """Adopt a session whose owner does not answer (it died, its lease not yet run out), or
        that its owner handed back unanswered (it holds it no more: a drain released it). Only
        that owner's lease is overridden: if another replica took the session meanwhile (a
        command for it came there at the same time), it runs there, and this one is told to
        come again, so that one message never runs on two replicas."""
        self.lifecycle.refuse_new_work()  # draining: another replica will take it
        found = await self.registry.adopt(remote.record, gone=remote.owner)
        if isinstance(found, Held):
            raise changing_servers(remote.record.session_id)
        if found is None:
            raise not_found(remote.record.session_id)
        return found

    async def forward(self, caller: Caller, remote: Remote, frame: ClientEvent) -> Session | None:
        """Send the command to the session's owner (None), or adopt the session here if that
        owner is gone or holds it no more (the Session, for the command to be carried out
        here: in this one call, so that it is carried out once)."""
        assert self.forwarder is not None
        caller.follow(
            remote.record.session_id, remote.record.last_seq, bool(remote.record.state.run_id)
        )
        if await self.forwarder.forward(remote.owner, frame, caller):
            return None
        session = await self.take_over(remote)
        await self.attach(caller, session)
        return session

    async def reach(
        self, caller: Caller, frame: InSession, target: Session | Remote | None = None
    ) -> Session | None:
        """The frame's session (`target`, if located already), held here and listened to by
        the caller; None: forwarded."""
        if target is None:
            target = await self.locate(caller, frame.session_id)
        if isinstance(target, Remote):
            return await self.forward(caller, target, frame)
        await self.attach(caller, target)
        return target

    # --- the commands ---------------------------------------------------------------------

    def create(self, caller: Caller, frame: UserCreateSession) -> None:
        self.lifecycle.refuse_new_work()
        name = frame.agent or next(iter(self.agents))
        spec = self.agents.get(name)
        if spec is None:
            raise InvalidMessage(
                f"agent: no agent named {name!r}; available: {', '.join(self.agents)}"
            )
        caller.check_room("")
        session = self.registry.create(spec, caller.identity)
        caller.attach(session)
        log.info("session_created", session_id=session.id, agent=spec.name)
        session.events.publish(AgentSessionCreated, agent=spec.name, request_id=frame.request_id)

    async def message(self, caller: Caller, frame: UserMessage) -> None:
        limit = self.config.max_message_chars
        if len(frame.content) > limit:
            raise MessageTooLarge(
                f"content: {len(frame.content)} characters, over the limit of {limit} "
                "(sessions.max_message_chars); send a shorter message"
            )
        target = await self.locate(caller, frame.session_id)
        # What the session had sent when the command came: a later frame reaches the caller
        # as every frame does (live, or from the log that a take-over replays), not again.
        sent = target.record.last_seq if isinstance(target, Remote) else target.events.sent_seq
        session = await self.reach(caller, frame, target)
        if session is None:
            return
        if not session.runs.answers(frame.request_id):  # a retry is no new work
            self.lifecycle.refuse_new_work()
        again = session.runs.submit(frame.content, frame.request_id)
        if isinstance(again, Frame) and again.seq <= sent:  # a retry: its run's terminal frame
            caller.redeliver(session.id, again)
        elif isinstance(again, int) and again <= sent:
            await self.replay.send_again(caller, session.id, again)

    async def close(self, caller: Caller, frame: UserCloseSession) -> None:
        target = await self.locate(caller, frame.session_id)
        if isinstance(target, Remote):
            session = await self.forward(caller, target, frame)
            caller.unfollow(frame.session_id)
            if session is None:
                return
        else:
            session = target
        await self.registry.close(session)  # its run's agent.interrupted reaches the caller
        caller.detach(session)
        caller.send(AgentSessionClosed(session_id=session.id, request_id=frame.request_id))

    async def resume(self, caller: Caller, frame: UserResumeSession) -> None:
        """Replay what the client missed, then stream live: from this process or, for a
        session held by a live replica, from the shared log and then by following it."""
        if not caller.local:
            raise InvalidMessage("user.resume_session is never forwarded")
        caller.check_room(frame.session_id)
        target = await self.locate(caller, frame.session_id)
        if isinstance(target, Remote) and target.record.state.run_id:
            assert self.forwarder is not None  # a run goes there: is its server alive?
            if not await self.forwarder.probe(target.owner):
                target = await self.take_over(target)
        if isinstance(target, Remote):
            position, replayed = await self.replay.shared(caller, target.record, frame.last_seq)
            caller.follow(target.record.session_id, position, bool(target.record.state.run_id))
        else:
            position, replayed = await self.replay.held(caller, target, frame.last_seq)
        caller.send(
            AgentSessionResumed(
                session_id=frame.session_id,
                replayed=replayed,
                last_seq=position,
                request_id=frame.request_id,
            )
        )

    async def attach(self, caller: Caller, session: Session) -> None:
        """Make the caller listen to a session held here; one that followed it on another
        replica (adopted here since) gets what it missed from where its follow got to."""
        position = caller.unfollow(session.id)
        if position is not None:
            await self.replay.held(caller, session, position, check=False)
        else:
            caller.attach(session)

    async def adopt_followed(self, caller: Caller, session_id: str) -> None:
        """A followed session's owner is gone while a run went: adopt it here (ending the cut
        run with run_lost) and listen to it, so the follower is not left in silence."""
        try:
            record = await self.store.peek(session_id)
            if record is None or record.identity != caller.identity:
                return
            found = await self.registry.adopt(record)
            if isinstance(found, Session):
                await self.attach(caller, found)
        except ServiceError as exc:  # another replica was quicker, or Redis is away: it retries
            log.info("follow_adoption_failed", session_id=session_id, code=exc.code.value)
