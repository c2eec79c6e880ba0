"""One connection: the single task that reads a socket, routing its frames to the commands.

A Connection is also a Caller (service.replay) of service.commands: the sessions it listens
to here, the ones it follows on other replicas (both count against sessions.max_per_connection
and keep the socket from being idle while a run goes), and its Outbox.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from middleware.frames import FrameInfo, FrameRejected
from service.commands import Commands
from service.errors import (
    InternalError,
    InvalidMessage,
    ServiceError,
    SessionNotFound,
    TooManySessions,
)
from service.frames import parse_frame
from service.metrics import Metrics
from service.outbox import Outbox
from service.protocol import AgentErrorEvent, ErrorCode, ServerEvent
from service.sessions import Session
from service.settings import Settings
from service.state.base import Frame, LostReason
from service.state.redis_bus import Follower, Follows

log = structlog.get_logger("myagent_ws.connection")
FrameHook = Callable[[FrameInfo], Awaitable[None]]  # a middleware; raises FrameRejected
INVALID_FRAME = "(invalid)"  # the event name frame hooks see for a frame that does not parse
TERMINAL = frozenset({"agent.final_answer", "agent.error", "agent.interrupted"})


class Followed:
    """A session of another replica that this socket follows (service.state.redis_bus.Sink)."""

    def __init__(self, connection: Connection, session_id: str, running: bool) -> None:
        self.connection = connection
        self.session_id = session_id
        self.running = running
        self.follower: Follower | None = None

    def deliver(self, frame: Frame) -> None:
        if frame.event in TERMINAL:
            self.running = False
        elif frame.event != "agent.session_created" and '"run_id"' in frame.data:
            self.running = True
        self.connection.deliver(frame.data, frame.event)

    def owner_gone(self) -> None:
        if self.running:  # a run was going there: end it here, rather than leave us silent
            self.connection.spawn(
                self.connection.commands.adopt_followed(self.connection, self.session_id)
            )

    def gone(self) -> None:
        self.connection.unfollow(self.session_id)
        error = SessionNotFound(
            f"session {self.session_id!r} is gone (closed, or its store lost it)"
        )
        self.connection.commands.report(self.connection, error, None, self.session_id)


class Connection:
    """A client socket: its sessions, its Outbox, and the one task that reads it."""

    local = True

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        request: web.BaseRequest,
        identity: str,
        settings: Settings,
        commands: Commands,
        metrics: Metrics,
        follows: Follows | None = None,
        frame_hooks: Sequence[FrameHook] = (),
    ) -> None:
        self.id = uuid.uuid4().hex
        self.ws = ws
        server = settings.server
        self.outbox = Outbox(
            ws,
            request,
            max_frames=server.send_queue_frames,
            max_bytes=server.send_queue_bytes,
            metrics=metrics,
        )
        self.deliver = self.outbox.deliver  # every frame of its sessions: no layer in between
        self.identity = identity
        self.settings = settings
        self.commands = commands
        self.metrics = metrics
        self.follows = follows
        self.frame_hooks = frame_hooks
        self.sessions: dict[str, Session] = {}  # held here, listened to by this socket
        self.followed: dict[str, Followed] = {}  # held by other replicas
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_frame_at = time.monotonic()  # the client's last frame, for idle_timeout_s

    # --- sending (replay.Caller) --------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.outbox.closing

    @property
    def close_code(self) -> int | None:
        return self.outbox.close_code

    def redeliver(self, session_id: str, frame: Frame) -> None:
        followed = self.followed.get(session_id)
        follower = followed.follower if followed is not None else None
        if follower is not None and frame.seq > follower.position:  # the log brings it
            return
        self.outbox.deliver(frame.data, frame.event)

    def send(self, event: ServerEvent) -> None:
        self.outbox.deliver(event.to_json(), event.event)

    async def replay(self, frames: list[tuple[str, str]]) -> bool:
        return await self.outbox.replay(frames)

    def close(self, code: int, reason: str) -> None:
        self.outbox.close(code, reason)

    async def finish(self, code: int, reason: str, within_s: float = 1.0) -> None:
        await self.outbox.finish(code, reason, within_s)

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the sessions it listens to and follows (replay.Caller) --------------------------

    def check_room(self, session_id: str) -> None:
        if session_id in self.sessions or session_id in self.followed:
            return
        limit = self.settings.sessions.max_per_connection
        if len(self.sessions) + len(self.followed) >= limit:
            raise TooManySessions(
                f"this connection already has {limit} sessions, the limit; close one with "
                "user.close_session"
            )

    def attach(self, session: Session, since: int | None = None) -> None:
        if self.sessions.get(session.id) is session:
            return
        self.check_room(session.id)
        session.attach(self)
        self.sessions[session.id] = session

    def detach(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            session.detach(self)

    def follow(self, session_id: str, position: int, running: bool) -> None:
        if session_id in self.followed or self.follows is None:
            return
        self.check_room(session_id)
        followed = Followed(self, session_id, running)
        followed.follower = self.follows.follow(session_id, position, followed)
        self.followed[session_id] = followed

    def unfollow(self, session_id: str) -> int | None:
        followed = self.followed.pop(session_id, None)
        if followed is None or followed.follower is None or self.follows is None:
            return None
        self.follows.unfollow(followed.follower)
        return followed.follower.position

    def session_lost(self, session: Session, reason: LostReason) -> None:
        """A session this socket listened to is no longer held here."""
        if self.sessions.pop(session.id, None) is None:
            return
        if reason == "fenced" and self.follows is not None:  # another replica holds it now
            self.follow(session.id, session.events.sent_seq, running=True)
            return
        error = SessionNotFound(
            f"session {session.id!r} is gone: the session store lost it; create a new session"
        )
        self.commands.report(self, error, None, session.id)

    # --- reading ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read frames until the socket closes; then detach or stop this connection's sessions."""
        self.outbox.start(f"writer-{self.id}")
        try:
            async for msg in self.ws:
                self.last_frame_at = time.monotonic()
                if msg.type is WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await self.on_text(None, len(msg.data))
                if self.closing:
                    break
        finally:
            self.release()

    def idle_for(self, now: float) -> float:
        """Seconds since the client's last frame, or since a run it listens to last went."""
        if self.closing:
            return 0.0
        if any(s.running for s in self.sessions.values()) or any(
            f.running for f in self.followed.values()
        ):
            self.last_frame_at = now  # not idle: idle time counts from the run's end
        return now - self.last_frame_at

    def release(self) -> None:
        """Stop the writer and the follows; detach this socket's sessions, or cancel those no
        other socket listens to (sessions.on_disconnect: cancel).

        Synchronous on purpose: aiohttp may cancel the handler task as the peer goes away, and
        an await here would leave the cleanup half done.
        """
        self.outbox.stop()
        for task in self.tasks:
            task.cancel()
        for session_id in [*self.followed]:
            self.unfollow(session_id)
        cancel = self.settings.sessions.on_disconnect == "cancel"
        for session in self.sessions.values():
            session.detach(self)
            if cancel and not session.listeners:  # the last socket on it: it ends with it
                self.commands.registry.forget(session)
        self.sessions.clear()

    async def run_hooks(self, event: str, size: int) -> None:
        info = FrameInfo(identity=self.identity, event=event, size=size)
        for hook in self.frame_hooks:
            await hook(info)

    async def on_text(self, text: str | None, binary_size: int = 0) -> None:
        """Handle a text frame; `text` None is a binary frame (refused, after the hooks)."""
        try:
            if text is None:
                raise InvalidMessage("text frames only: send each event as a JSON text frame")
            frame = parse_frame(text)
        except ServiceError as exc:  # junk spends the frame allowance too: a flood is closed
            size = binary_size if text is None else len(text)
            if await self.guarded(self.run_hooks(INVALID_FRAME, size), None):
                self.commands.report(self, exc, None)
            return
        self.metrics.received(frame.event).inc()
        if await self.guarded(self.run_hooks(frame.event, len(text)), frame.request_id):
            await self.commands.handle(self, frame)

    async def guarded(self, hooks: Awaitable[None], request_id: str | None) -> bool:
        """Run the frame hooks; False (answered) if one refused the frame."""
        try:
            await hooks
        except FrameRejected as exc:
            code = ErrorCode(exc.code)
            self.metrics.errors_total.labels(code.value).inc()
            self.send(AgentErrorEvent(error=str(exc), code=code, request_id=request_id,
                                      retry_after_s=exc.retry_after_s))  # fmt: skip
            if exc.close:  # from the reader: were the handler to return first, aiohttp sends 1000
                await self.finish(WSCloseCode.POLICY_VIOLATION, "too many rejected frames")
            return False
        except Exception:  # a bug of a middleware: log it, tell the client no more
            log.exception("frame_handling_failed")
            error = InternalError("the server failed to handle this frame; see its log")
            self.commands.report(self, error, request_id)
            return False
        return True
