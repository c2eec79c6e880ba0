"""Commands: the one path for session commands, from a local socket or forwarded by a replica.

Create, message, cancel, close and resume are carried out here, whoever asks: a Connection on
this process, or a RemoteCaller standing for a socket on another replica. This is where new
work is refused while draining, where a session held by another replica is forwarded to it (or
adopted, when that replica is gone), and where every error becomes `agent.error` and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, assert_never

import structlog

from agent_loader.loader import AgentSpec
from service.errors import (
    InternalError,
    InvalidMessage,
    MessageTooLarge,
    ReplayUnavailable,
    ServiceError,
    StoreUnavailable,
)
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.protocol import (
    AgentErrorEvent,
    AgentSessionClosed,
    AgentSessionCreated,
    AgentSessionResumed,
    ClientEvent,
    ServerEvent,
    SystemPong,
    UserCancel,
    UserCloseSession,
    UserCreateSession,
    UserMessage,
    UserPing,
    UserResumeSession,
)
from service.sessions import Session, SessionRegistry, not_found
from service.settings import SessionSettings
from service.state.base import Frame, Held, SessionRecord, StateStore

log = structlog.get_logger("myagent_ws.commands")
PAGE = 200  # frames read from the store at a time for a replay


class Caller(Protocol):
    """Who a command comes from: a socket here (local), or one on another replica."""

    identity: str
    local: bool  # a socket of this process: it can attach, follow and replay

    def send(self, event: ServerEvent) -> None: ...

    def deliver(self, data: str, event: str) -> None: ...

    def redeliver(self, session_id: str, frame: Frame) -> None:
        """Send a frame of a session's log again (a retry's answer), unless it has it."""

    def check_room(self, session_id: str) -> None:
        """TooManySessions if one more session would pass sessions.max_per_connection."""

    def attach(self, session: Session, since: int | None = None) -> None:
        """Listen to a session of this process, having every frame after `since` (default:
        what it has sent so far); a remote caller's replica follows the log instead."""

    def detach(self, session: Session) -> None:
        """Stop listening to a session (it is being closed)."""

    def follow(self, session_id: str, position: int, running: bool) -> None: ...

    def unfollow(self, session_id: str) -> int | None:
        """Stop following a session; the last seq it got, or None if it did not follow it."""

    async def replay(self, frames: list[tuple[str, str]]) -> bool: ...


class Forwarder(Protocol):
    """Sends a command to the replica that holds its session (service.replicas)."""

    async def forward(self, owner: str, frame: ClientEvent, caller: Caller) -> int: ...

    async def probe(self, owner: str) -> int: ...


class Moved(Exception):  # a signal between replicas, not an error of anyone's
    """A forwarded command's session is no longer held by the replica it was sent to."""


@dataclass(frozen=True, slots=True)
class Remote:
    """A session held by another replica whose lease still runs."""

    record: SessionRecord
    owner: str


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
        self.forwarder: Forwarder | None = None  # with Redis: set by the app

    async def handle(self, caller: Caller, frame: ClientEvent, *, moved: bool = False) -> None:
        """Carry out a client event; `moved`: the replica it was forwarded to no longer holds
        its session (so it is adopted here, whatever the lease in the store still says)."""
        session_id = getattr(frame, "session_id", None)
        try:
            match frame:
                case UserCreateSession():
                    self.create(caller, frame)
                case UserMessage():
                    await self.message(caller, frame, moved)
                case UserCancel():
                    await self.cancel(caller, frame, moved)
                case UserResumeSession():
                    await self.resume(caller, frame)
                case UserCloseSession():
                    await self.close(caller, frame, moved)
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
            )
        )

    # --- finding a session ----------------------------------------------------------------

    async def locate(
        self, caller: Caller, session_id: str, moved: bool = False
    ) -> Session | Remote:
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
        found = await self.registry.adopt(record, force=moved)
        if isinstance(found, Held):
            if found.owner == self.store.replica or self.forwarder is None:
                raise StoreUnavailable(  # moving between replicas right now
                    f"session {session_id!r} is changing servers; retry in a moment",
                    retry_after_s=1.0,
                )
            return Remote(record, found.owner)
        if found is None:
            raise not_found(session_id)
        return found

    async def take_over(self, record: SessionRecord) -> Session:
        """Adopt a session whose owner does not answer (it died, its lease not yet run out)."""
        self.lifecycle.refuse_new_work()  # draining: another replica will take it
        found = await self.registry.adopt(record, force=True)
        if not isinstance(found, Session):
            raise not_found(record.session_id)
        return found

    async def forward(self, caller: Caller, remote: Remote, frame: ClientEvent) -> Session | None:
        """Send the command to the session's owner (None), or adopt the session here if that
        owner is gone (the Session, for the command to be carried out here)."""
        assert self.forwarder is not None
        caller.follow(
            remote.record.session_id, remote.record.last_seq, bool(remote.record.state.run_id)
        )
        if await self.forwarder.forward(remote.owner, frame, caller):
            return None
        session = await self.take_over(remote.record)
        await self.attach(caller, session)
        return session

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

    async def message(self, caller: Caller, frame: UserMessage, moved: bool = False) -> None:
        limit = self.config.max_message_chars
        if len(frame.content) > limit:
            raise MessageTooLarge(
                f"content: {len(frame.content)} characters, over the limit of {limit} "
                "(sessions.max_message_chars); send a shorter message"
            )
        target = await self.locate(caller, frame.session_id, moved)
        if isinstance(target, Remote):
            session = await self.forward(caller, target, frame)
            if session is None:
                return
        else:
            session = target
            await self.attach(caller, session)
        if not session.runs.answers(frame.request_id):  # a retry is no new work
            self.lifecycle.refuse_new_work()
        again = session.runs.submit(frame.content, frame.request_id)
        if isinstance(again, Frame):  # a retried request_id: the first run's terminal frame
            caller.redeliver(session.id, again)
        elif isinstance(again, int):
            await self.send_held(caller, session.id, again)

    async def send_held(self, caller: Caller, session_id: str, seq: int) -> None:
        """Send again the frame `seq` of a session's log (a retried request's answer)."""
        page = await self.store.read(session_id, seq - 1, 1)
        if page is None or not page.frames or page.frames[0].seq != seq:
            raise ReplayUnavailable(
                f"this request_id was answered at seq {seq}, which is no longer held",
                oldest_seq=page.oldest_seq if page is not None else None,
            )
        caller.redeliver(session_id, page.frames[0])

    async def cancel(self, caller: Caller, frame: UserCancel, moved: bool = False) -> None:
        target = await self.locate(caller, frame.session_id, moved)
        if isinstance(target, Remote):
            session = await self.forward(caller, target, frame)
            if session is None:
                return
        else:
            session = target
            await self.attach(caller, session)
        session.runs.cancel_run()

    async def close(self, caller: Caller, frame: UserCloseSession, moved: bool = False) -> None:
        target = await self.locate(caller, frame.session_id, moved)
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
                target = await self.take_over(target.record)
        if isinstance(target, Remote):
            position, replayed = await self.replay_shared(caller, target.record, frame.last_seq)
            caller.follow(target.record.session_id, position, bool(target.record.state.run_id))
        else:
            position, replayed = await self.replay_held(caller, target, frame.last_seq)
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
            await self.replay_held(caller, session, position, check=False)
        else:
            caller.attach(session)

    async def replay_held(
        self, caller: Caller, session: Session, after_seq: int, *, check: bool = True
    ) -> tuple[int, int]:
        """Replay a session held here from the store, then attach: (last seq sent, replayed)."""
        events = session.events
        if check and after_seq > events.sent_seq:
            raise ReplayUnavailable(
                f"last_seq {after_seq} is ahead of this session (its last seq is "
                f"{events.sent_seq})",
                oldest_seq=await self.oldest(session.id, events.written_seq),
            )
        caller.unfollow(session.id)
        position, replayed = after_seq, 0
        while position < events.sent_seq:
            if position < events.written_seq:
                page = await self.store.read(session.id, position, PAGE)
                if page is None:
                    raise not_found(session.id)
                if position + 1 < page.oldest_seq:
                    raise self.trimmed(position, page.oldest_seq)
                frames = [f for f in page.frames if f.seq <= events.sent_seq]
            else:  # sent while the store was away, not saved yet
                frames = events.sent_unwritten(position)
            if not frames or not await caller.replay([(f.data, f.event) for f in frames]):
                break
            position, replayed = frames[-1].seq, replayed + len(frames)
        caller.attach(session, after_seq)  # no await since the last check: live frames next
        return position, replayed

    async def replay_shared(
        self, caller: Caller, record: SessionRecord, after_seq: int
    ) -> tuple[int, int]:
        """Replay a session another replica holds, from the shared log: (last seq, replayed)."""
        caller.unfollow(record.session_id)
        position, replayed = after_seq, 0
        while True:
            page = await self.store.read(record.session_id, position, PAGE)
            if page is None:
                raise not_found(record.session_id)
            if after_seq > page.last_seq:
                raise ReplayUnavailable(
                    f"last_seq {after_seq} is ahead of this session (its last seq is "
                    f"{page.last_seq})",
                    oldest_seq=page.oldest_seq,
                )
            if position + 1 < page.oldest_seq:
                raise self.trimmed(position, page.oldest_seq)
            frames = [(f.data, f.event) for f in page.frames]
            if frames and not await caller.replay(frames):
                break
            if page.frames:
                position, replayed = page.frames[-1].seq, replayed + len(frames)
            if len(page.frames) < PAGE:
                return position, replayed
        return position, replayed

    async def oldest(self, session_id: str, last_seq: int) -> int:
        page = await self.store.read(session_id, last_seq, 0)
        return page.oldest_seq if page is not None else last_seq + 1

    @staticmethod
    def trimmed(after_seq: int, oldest: int) -> ReplayUnavailable:
        return ReplayUnavailable(
            f"events after seq {after_seq} are no longer held; the oldest held is {oldest}",
            oldest_seq=oldest,
        )

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
