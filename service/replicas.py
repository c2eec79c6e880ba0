"""Commands between replicas: run what another replica's client asked of a session owned here."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from service.errors import ServiceError
from service.keys import connections_key, metrics_key, sessions_key
from service.protocol import AgentErrorEvent, AgentSessionClosed, ErrorCode, ServerEvent
from service.store import RedisState

log = structlog.get_logger("myagent_ws.replicas")


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
    reply: ServerEvent | None = None
    try:
        session = registry.get(session_id, str(message.get("identity")))
        match message.get("kind"):
            case "message":
                session.submit(str(message.get("content")), request_id)
            case "cancel":
                session.cancel_run()
            case "close":
                await registry.close(session)
                reply = AgentSessionClosed(session_id=session_id, request_id=request_id)
    except ServiceError as exc:
        app[metrics_key].errors_total.labels(ErrorCode(exc.code).value).inc()
        reply = AgentErrorEvent(
            error=str(exc),
            code=exc.code,
            request_id=request_id,
            session_id=session_id,
            retry_after_s=exc.retry_after_s,
        )
    if reply is not None:
        await store.send(
            str(message.get("reply_to")),
            {
                "op": "deliver",
                "connection_id": message.get("connection_id"),
                "data": reply.to_json(),
                "event": reply.event,
            },
        )
