"""Sessions across replicas: follow another replica's session, and run what others ask of ours."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from service.errors import ServiceError, SessionNotFound, StoreUnavailable, TooManySessions
from service.keys import connections_key, metrics_key, sessions_key
from service.protocol import AgentErrorEvent, AgentSessionClosed, ErrorCode, ServerEvent
from service.store import RedisState

log = structlog.get_logger("myagent_ws.replicas")
RETRY_STORE_S = 1.0


@contextlib.asynccontextmanager
async def shared_state() -> AsyncIterator[None]:
    """Turn Redis being away into an error the client can act on (and no traceback)."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as exc:  # redis.exceptions.RedisError, OSError: Redis is away
        log.warning("redis_unavailable", error=str(exc))
        raise StoreUnavailable(
            "the shared session store (Redis) is unreachable, so sessions of other servers "
            "cannot be reached now; retry in a moment",
            retry_after_s=RETRY_STORE_S,
        ) from exc


def owner_gone(session_id: str) -> SessionNotFound:
    return SessionNotFound(
        f"session {session_id!r} takes no more messages: the server that ran it has stopped; "
        "user.resume_session still replays its events; create a new session to go on"
    )


class RemoteSessions:
    """One connection's sessions owned by other replicas: followed through their streams."""

    def __init__(
        self,
        store: RedisState,
        identity: str,
        connection_id: str,
        deliver: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.identity = identity
        self.connection_id = connection_id
        self.deliver = deliver
        self.followed: dict[str, tuple[str, asyncio.Task[None]]] = {}  # id -> (replica, task)

    async def owner(self, session_id: str) -> str:
        """The replica that runs this session, checking it belongs to this identity."""
        if session_id in self.followed:
            return self.followed[session_id][0]
        async with shared_state():
            record = await self.store.lookup(session_id)
        if record is None or record.get("owner") != self.identity:
            raise SessionNotFound(f"no session {session_id!r} for this client")
        return record["replica"]

    def check_room(self, session_id: str) -> None:
        """sessions.max_per_connection holds for other replicas' sessions too: each one
        followed costs a task and a Redis connection (a blocking XREAD)."""
        if session_id not in self.followed and len(self.followed) >= self.store.max_followed:
            raise TooManySessions(
                f"this connection already follows {len(self.followed)} sessions of other "
                "servers, the limit; close one with user.close_session"
            )

    def follow(self, session_id: str, replica: str, after_id: str, after_seq: int = 0) -> None:
        if session_id not in self.followed:
            task = self.store.spawn_follower(session_id, after_id, self.deliver, after_seq)
            self.followed[session_id] = (replica, task)

    def forget(self, session_id: str) -> None:
        if (entry := self.followed.pop(session_id, None)) is not None:
            entry[1].cancel()

    def close(self) -> None:
        for session_id in list(self.followed):
            self.forget(session_id)

    async def resume(self, session_id: str, last_seq: int) -> tuple[list[tuple[str, str]], int]:
        """The frames after last_seq from the shared log; then follow it live."""
        replica = await self.owner(session_id)
        self.check_room(session_id)
        self.forget(session_id)  # already following: replay from the log again
        async with shared_state():
            frames, last_id = await self.store.replay(session_id, last_seq)
        resumed_at = last_seq + len(frames)
        self.follow(session_id, replica, last_id, after_seq=resumed_at)
        return frames, resumed_at

    async def command(
        self, session_id: str, kind: str, request_id: str | None, **fields: Any
    ) -> None:
        """Ask the owner to act on the session; its events reach us through the stream."""
        replica = await self.owner(session_id)
        if not replica:  # its replica shut down and left it ownerless
            raise owner_gone(session_id)
        self.check_room(session_id)
        async with shared_state():
            if session_id not in self.followed:
                self.follow(session_id, replica, await self.store.tail_id(session_id))
            received = await self.store.send(
                replica,
                {
                    "op": "command",
                    "kind": kind,
                    "session_id": session_id,
                    "identity": self.identity,
                    "request_id": request_id,
                    "reply_to": self.store.replica,
                    "connection_id": self.connection_id,
                    **fields,
                },
            )
        if received == 0:  # nobody listens on its channel: the replica died
            self.forget(session_id)
            raise owner_gone(session_id)


async def handle_command(app: web.Application, store: RedisState, message: dict[str, Any]) -> None:
    """A message on this replica's channel: a command for a local session, or a frame to deliver."""
    if message.get("op") == "deliver":
        for connection in app[connections_key]:
            if connection.id == message.get("connection_id"):
                connection.deliver(message["data"], message["event"])
        return
    if message.get("op") != "command":
        return
    registry = app[sessions_key]
    request_id = message.get("request_id")
    session_id = str(message.get("session_id"))
    answer: ServerEvent | tuple[str, str] | None = None  # a reply, or a frame already made
    try:
        session = registry.get(session_id, str(message.get("identity")))
        match message.get("kind"):
            case "message":
                answer = session.submit(str(message.get("content")), request_id)
            case "cancel":
                session.cancel_run()
            case "close":
                await registry.close(session)
                answer = AgentSessionClosed(session_id=session_id, request_id=request_id)
    except ServiceError as exc:
        app[metrics_key].errors_total.labels(ErrorCode(exc.code).value).inc()
        answer = AgentErrorEvent(
            error=str(exc),
            code=exc.code,
            request_id=request_id,
            session_id=session_id,
            retry_after_s=exc.retry_after_s,
        )
    if isinstance(answer, ServerEvent):
        answer = (answer.to_json(), answer.event)
    if answer is not None:
        await store.send(
            str(message.get("reply_to")),
            {
                "op": "deliver",
                "connection_id": message.get("connection_id"),
                "data": answer[0],
                "event": answer[1],
            },
        )
