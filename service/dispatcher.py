"""One connection: the single read loop, routing client events to sessions; a bounded writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from agent_loader.loader import AgentSpec
from middleware.frames import FrameInfo, FrameRejected
from service.errors import (
    InternalError,
    InvalidMessage,
    ServiceError,
    ShuttingDown,
    TooManySessions,
)
from service.frames import parse_frame
from service.metrics import Metrics
from service.outbox import FrameWriter
from service.protocol import (
    AgentErrorEvent,
    AgentSessionClosed,
    AgentSessionCreated,
    AgentSessionResumed,
    ErrorCode,
    ServerEvent,
    SystemPong,
    UserCancel,
    UserCloseSession,
    UserCreateSession,
    UserMessage,
    UserPing,
    UserResumeSession,
)
from service.replicas import RemoteSessions
from service.sessions import Session, SessionRegistry
from service.settings import Settings

log = structlog.get_logger("myagent_ws.connection")
FrameHook = Callable[[FrameInfo], Awaitable[None]]  # a middleware; raises FrameRejected
TRY_AGAIN_LATER = 1013
BATCH_BYTES = 256 * 1024  # at most about this much payload in one socket write
INVALID_FRAME = "(invalid)"  # the event name frame hooks see for a frame that does not parse


class Connection:
    """A client socket: its sessions, its bounded send queue, and the one task that reads it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        request: web.BaseRequest,
        identity: str,
        settings: Settings,
        agents: dict[str, AgentSpec],
        sessions: SessionRegistry,
        metrics: Metrics,
        frame_hooks: Sequence[FrameHook] = (),
    ) -> None:
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.out = FrameWriter(ws, request)
        self.debug_frames = log.is_enabled_for(logging.DEBUG)
        self.identity = identity
        self.settings = settings
        self.agents = agents
        self.registry = sessions
        self.metrics = metrics
        self.frame_hooks = frame_hooks
        self.sessions: dict[str, Session] = {}  # attached here
        self.remote = (  # sessions owned by other replicas, through Redis
            None
            if sessions.store is None
            else RemoteSessions(sessions.store, self.identity, self.id, self.deliver)
        )
        self.queue: deque[tuple[str, str]] = deque()  # live frames, bounded
        self.queued_bytes = 0  # of the live frames (replays are bounded by the session's log)
        self.burst = False  # a frame went out at once this turn: the next ones queue
        self.backlog: deque[tuple[str, str]] = deque()  # replayed frames, sent first
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()  # set while nothing waits to be sent
        self.drained.set()
        self.closing = False
        self.close_code: int | None = None
        self.last_frame_at = time.monotonic()  # the client's last frame, for idle_timeout_s
        self.writer: asyncio.Task[None] | None = None
        self.handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            UserCreateSession: self.on_create_session,
            UserMessage: self.on_message,
            UserCancel: self.on_cancel,
            UserResumeSession: self.on_resume,
            UserCloseSession: self.on_close_session,
            UserPing: self.on_ping,
        }

    # --- sending ----------------------------------------------------------------------------

    def deliver(self, data: str, event: str) -> None:
        """Send a frame, or queue it; a client too slow to drain its queue is closed with 1013.

        With nothing queued and the peer keeping up, the frame is written at once: the first
        frame of a burst (a run's first token) does not wait for the writer task's turn, and
        the rest of the burst queues behind it, for the writer to send in one write.
        """
        if self.closing:
            return
        if not self.burst and not self.queue and not self.backlog and self.out.batching:
            self.write([(data, event)])
            self.burst = True  # until the writer's turn, frames queue behind this one
            self.wakeup.set()
            return
        server = self.settings.server
        if (
            len(self.queue) >= server.send_queue_frames
            or self.queued_bytes + len(data) > server.send_queue_bytes
        ):
            self.metrics.slow_consumers_total.inc()
            log.warning("slow_consumer_closed", queued=len(self.queue), bytes=self.queued_bytes)
            self.close(TRY_AGAIN_LATER, "send queue full: the client does not read")
            return
        self.queue.append((data, event))
        self.queued_bytes += len(data)
        self.drained.clear()
        self.wakeup.set()

    def send(self, event: ServerEvent) -> None:
        self.deliver(event.to_json(), event.event)

    def error(
        self,
        exc: ServiceError | FrameRejected,
        request_id: str | None,
        session_id: str | None = None,
    ) -> None:
        code = ErrorCode(exc.code)
        self.metrics.errors_total.labels(code.value).inc()
        self.send(
            AgentErrorEvent(
                error=str(exc),
                code=code,
                request_id=request_id,
                retry_after_s=exc.retry_after_s,
                session_id=session_id,
                oldest_seq=getattr(exc, "oldest_seq", None),
            )
        )

    async def write_loop(self) -> None:
        """Send the queued frames: a burst in one socket write (FrameWriter), replays first."""
        queue, backlog, out = self.queue, self.backlog, self.out
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while backlog or queue:
                if not out.batching:  # a slow peer: one frame at a time, aiohttp waits for it
                    data, event = self.next_frame()
                    if not await out.send(data):
                        break
                    self.metrics.sent(event).inc()
                    continue
                frames, size = [], 0
                while (backlog or queue) and size < BATCH_BYTES:
                    frames.append(frame := self.next_frame())
                    size += len(frame[0])
                if not self.write(frames):
                    break
            self.burst = False
            self.drained.set()

    def write(self, frames: list[tuple[str, str]]) -> bool:
        """Write frames to the socket in one call and count them; False if it is closing."""
        if not self.out.write([data.encode() for data, _ in frames]):
            return False
        counts: dict[str, int] = {}
        for data, event in frames:
            counts[event] = counts.get(event, 0) + 1
            if self.debug_frames:
                log.debug("frame_out", frame=event, size=len(data))
        for event, count in counts.items():
            self.metrics.sent(event).inc(count)
        return True

    def next_frame(self) -> tuple[str, str]:
        """The next frame to send: replayed ones first, then live ones."""
        if self.backlog:
            return self.backlog.popleft()
        frame = self.queue.popleft()
        self.queued_bytes -= len(frame[0])
        return frame

    def close(self, code: int, reason: str) -> None:
        """Stop sending and close the socket with `code` (from any task)."""
        if self.closing:
            return
        self.closing, self.close_code = True, code
        self.queue.clear()
        self.queued_bytes = 0
        self.backlog.clear()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(2):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:  # the peer does not read even the close frame
            self.out.abort()

    async def finish(self, code: int, reason: str, within_s: float = 1.0) -> None:
        """Send what is already queued (for a short while), then close with `code`."""
        if self.closing:
            return
        self.closing, self.close_code = True, code
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self.drained.wait()
        await self._close(code, reason)

    # --- reading ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read frames until the socket closes; then detach or stop this connection's sessions."""
        self.writer = asyncio.create_task(self.write_loop(), name=f"writer-{self.id}")
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
        """Seconds since the client's last frame, or since a run last streamed to this socket."""
        if self.closing:
            return 0.0
        if any(s.running for s in self.sessions.values() if s.listener is self):
            self.last_frame_at = now  # not idle: idle time counts from the run's end
        return now - self.last_frame_at

    def release(self) -> None:
        """Stop the writer; detach this connection's sessions, or cancel them (on_disconnect).

        Synchronous on purpose: aiohttp may cancel the handler task as the peer goes away, and
        an await here would leave the cleanup half done.
        """
        if self.writer is not None:
            self.writer.cancel()
        if self.remote is not None:
            self.remote.close()
        cancel = self.settings.sessions.on_disconnect == "cancel"
        for session in self.sessions.values():
            if session.listener is not self:  # another socket took it over: not ours to end
                continue
            session.detach(self)
            if cancel:
                self.registry.discard(session)
        self.sessions.clear()

    async def run_hooks(self, event: str, size: int) -> None:
        info = FrameInfo(identity=self.identity, event=event, size=size)
        for hook in self.frame_hooks:
            await hook(info)

    async def on_text(self, text: str | None, binary_size: int = 0) -> None:
        """Handle a text frame; `text` None is a binary frame (refused, after the hooks)."""
        request_id: str | None = None
        session_id: str | None = None
        try:
            try:
                if text is None:
                    raise InvalidMessage("text frames only: send each event as a JSON text frame")
                frame = parse_frame(text)
            except ServiceError:  # junk spends the frame allowance too: a flood of it is closed
                await self.run_hooks(INVALID_FRAME, binary_size if text is None else len(text))
                raise
            request_id, session_id = frame.request_id, getattr(frame, "session_id", None)
            self.metrics.received(frame.event).inc()
            await self.run_hooks(frame.event, len(text))
            await self.handlers[type(frame)](frame)
        except FrameRejected as exc:
            self.error(exc, request_id)
            if exc.close:  # from the reader: were the handler to return first, aiohttp sends 1000
                await self.finish(WSCloseCode.POLICY_VIOLATION, "too many rejected frames")
        except ServiceError as exc:
            self.error(exc, request_id, session_id)
        except Exception:  # a bug: log it, tell the client no more, keep the socket
            log.exception("frame_handling_failed")
            error = InternalError("the server failed to handle this frame; see its log")
            self.error(error, request_id, session_id)

    # --- events -----------------------------------------------------------------------------

    def refuse_new_work(self) -> None:
        """While the server drains, runs going may finish, but nothing new starts here."""
        retry = self.registry.draining_retry_s
        if retry is not None:
            raise ShuttingDown(
                "the server is shutting down and starts no new session or run; reconnect "
                f"(another server, or this one once restarted) in {retry:g} s and resume",
                retry_after_s=retry,
            )

    async def on_create_session(self, frame: UserCreateSession) -> None:
        self.refuse_new_work()
        name = frame.agent or next(iter(self.agents))
        spec = self.agents.get(name)
        if spec is None:
            raise InvalidMessage(
                f"agent: no agent named {name!r}; available: {', '.join(self.agents)}"
            )
        if len(self.sessions) >= self.settings.sessions.max_per_connection:
            raise TooManySessions(
                f"this connection already has {len(self.sessions)} sessions, the limit; "
                "close one with user.close_session"
            )
        session = self.registry.create(spec.name, self.identity, spec.factory())
        self.sessions[session.id] = session
        session.attach(self)
        log.info("session_created", session_id=session.id, agent=spec.name)
        session.publish(AgentSessionCreated, agent=spec.name, request_id=frame.request_id)

    def session(self, session_id: str) -> Session:
        session = self.registry.get(session_id, self.identity)
        if session.listener is not self:  # another socket of the same identity took it over
            session.attach(self)
            self.sessions[session.id] = session
        return session

    def is_remote(self, session_id: str) -> bool:
        """Not a session of this process, but another replica may own it."""
        return self.remote is not None and session_id not in self.registry.sessions

    async def on_message(self, frame: UserMessage) -> None:
        self.refuse_new_work()
        if self.remote is not None and self.is_remote(frame.session_id):
            await self.remote.command(
                frame.session_id, "message", frame.request_id, content=frame.content
            )
        else:
            again = self.session(frame.session_id).submit(frame.content, frame.request_id)
            if again is not None:  # a retried request_id: the first run's terminal frame
                self.deliver(*again)

    async def on_cancel(self, frame: UserCancel) -> None:
        if self.remote is not None and self.is_remote(frame.session_id):
            await self.remote.command(frame.session_id, "cancel", frame.request_id)
        else:
            self.session(frame.session_id).cancel_run()

    async def on_resume(self, frame: UserResumeSession) -> None:
        """Replay what the client missed, then stream live; no await between the two."""
        if self.remote is not None and self.is_remote(frame.session_id):
            frames, last_seq = await self.remote.resume(frame.session_id, frame.last_seq)
            self.replay(frames, frame.session_id, last_seq, frame.request_id)
            return
        session = self.registry.get(frame.session_id, self.identity)
        if len(self.sessions) >= self.settings.sessions.max_per_connection and (
            session.id not in self.sessions
        ):
            raise TooManySessions("this connection has too many sessions to resume another")
        missed = session.events_after(frame.last_seq)
        session.attach(self)  # live events from now on queue behind the replay
        self.sessions[session.id] = session
        self.replay(
            [(data, event) for _, data, event in missed], session.id, session.seq, frame.request_id
        )

    def replay(
        self, frames: list[tuple[str, str]], session_id: str, last_seq: int, request_id: str | None
    ) -> None:
        resumed = AgentSessionResumed(
            session_id=session_id, replayed=len(frames), last_seq=last_seq, request_id=request_id
        )
        self.backlog.extend(frames)
        self.backlog.append((resumed.to_json(), resumed.event))
        self.drained.clear()
        self.wakeup.set()

    async def on_close_session(self, frame: UserCloseSession) -> None:
        if self.remote is not None and self.is_remote(frame.session_id):
            await self.remote.command(frame.session_id, "close", frame.request_id)
            self.remote.forget(frame.session_id)
            return
        session = self.registry.get(frame.session_id, self.identity)
        self.sessions.pop(session.id, None)
        await self.registry.close(session)
        self.send(AgentSessionClosed(session_id=session.id, request_id=frame.request_id))

    async def on_ping(self, frame: UserPing) -> None:
        self.send(SystemPong(request_id=frame.request_id))
