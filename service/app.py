"""create_app(settings, agents): routes, cleanup_ctx, /health and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import pydantic_core
import structlog
from aiohttp import WSCloseCode, web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

import service
from agent_loader.loader import AgentFactory, AgentSpec, load_agent_factory
from middleware import StackConfigError, build_middlewares
from middleware.base import bound_context
from middleware.keys import subject
from middleware.store import LimitSlot
from service.commands import Commands
from service.console import STATIC, console, static_files
from service.dispatcher import Connection
from service.errors import ConfigError
from service.keys import (
    agents_key,
    commands_key,
    connections_key,
    frame_hooks_key,
    lifecycle_key,
    limit_slot_key,
    metrics_key,
    replicas_key,
    sessions_key,
    settings_key,
    store_key,
)
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.protocol import SystemConnected
from service.sessions import Session, SessionRegistry
from service.settings import Settings
from service.shutdown import drain as drain
from service.state import open_store
from service.state.base import LostReason

log = structlog.get_logger("myagent_ws.app")
REAP_EVERY_S = 5.0
CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 1012, 1013})


def load_agents(settings: Settings) -> dict[str, AgentSpec]:
    """The agents named in the settings, loaded from their files (AgentLoadError if one fails)."""
    specs = [
        load_agent_factory(entry.file, entry.name or None, **entry.loader_options())
        for entry in settings.agents
    ]
    return {spec.name: spec for spec in specs}


def as_specs(agents: Mapping[str, AgentSpec | AgentFactory]) -> dict[str, AgentSpec]:
    specs = {
        name: a if isinstance(a, AgentSpec) else AgentSpec(name=name, factory=a)
        for name, a in agents.items()
    }
    for spec in specs.values():
        spec.check()  # a policy for a tool the agent lacks: refused at start
    return specs


def session_lost(session: Session, reason: LostReason) -> None:
    """A session is no longer held here: its sockets follow it elsewhere, or are told."""
    for listener in [*session.listeners]:
        if isinstance(listener, Connection):
            listener.session_lost(session, reason)


async def state_ctx(app: web.Application) -> AsyncIterator[None]:
    """The state store and everything built on it: sessions, commands, replicas."""
    settings = app[settings_key]
    store = open_store(settings)
    await store.start()
    registry = SessionRegistry(
        store, app[agents_key], settings.sessions, app[metrics_key], app[lifecycle_key]
    )
    registry.on_lost = session_lost
    commands = Commands(
        registry, store, app[agents_key], settings.sessions, app[lifecycle_key], app[metrics_key]
    )
    replicas = None
    if settings.state.redis_url:  # Redis: commands for other replicas' sessions, limits shared
        from service.limits import RedisLimitStore
        from service.replicas import Replicas
        from service.state.redis import RedisState

        assert isinstance(store, RedisState)  # what open_store makes of a redis_url
        replicas = commands.forwarder = Replicas(store.bus, commands)
        app[limit_slot_key].target = RedisLimitStore(store.redis)
    app[store_key] = store
    app[sessions_key] = registry
    app[commands_key] = commands
    app[replicas_key] = replicas
    reaper = asyncio.create_task(reap_forever(registry, settings.sessions.retention_s))
    yield
    reaper.cancel()
    await asyncio.gather(reaper, return_exceptions=True)
    await registry.release_all()  # cancels running agents and awaits them
    await store.close()


async def reap_forever(sessions: SessionRegistry, retention_s: float) -> None:
    while True:
        await asyncio.sleep(min(REAP_EVERY_S, max(retention_s / 2, 0.05)))
        if reaped := await sessions.reap(retention_s):
            log.info("sessions_expired", count=reaped)


async def health(request: web.Request) -> web.Response:
    app = request.app
    lifecycle = app[lifecycle_key]
    if lifecycle.draining:
        return web.json_response({"status": "draining"}, status=503)
    store = app[store_key]
    return web.json_response(
        {
            "status": "healthy",
            "timestamp": datetime.now(UTC),
            "version": service.__version__,
            "uptime_s": round(lifecycle.uptime_s, 3),
            "active_connections": len(app[connections_key]),
            "active_sessions": len(app[sessions_key]),
            "running_sessions": lifecycle.running,
            "agents": [*app[agents_key]],
            "state": {"backend": store.name, "status": store.status},
        },
        dumps=to_json,
    )


def to_json(value: object) -> str:
    """JSON by pydantic-core: a fifth of json.dumps's time, on a path polled all day."""
    return pydantic_core.to_json(value).decode()


def websocket_response(settings: Settings) -> web.WebSocketResponse:
    """The socket every client gets: heartbeats, no compression (it costs ~40% on token
    streams), and the frame size limit (a larger frame closes with 1009)."""
    return web.WebSocketResponse(
        heartbeat=settings.server.heartbeat_s,
        compress=False,
        max_msg_size=settings.server.max_message_bytes,
    )


async def close_idle_forever(app: web.Application, idle_s: float) -> None:
    """Close (1000) sockets whose client sent no frame for idle_s while none of their runs went.

    Pongs do not count: heartbeats find dead peers, this ends live but unused sockets. A
    browser keeps its socket with user.ping; its sessions stay resumable.
    """
    closing: set[asyncio.Task[None]] = set()
    while True:
        await asyncio.sleep(min(max(idle_s / 4, 0.05), REAP_EVERY_S))
        now = time.monotonic()
        for connection in [*app[connections_key]]:
            if connection.idle_for(now) >= idle_s:
                log.info("ws_idle_closed", connection_id=connection.id, idle_s=idle_s)
                task = asyncio.create_task(
                    connection.finish(WSCloseCode.OK, f"idle for {idle_s:g} s")
                )
                closing.add(task)
                task.add_done_callback(closing.discard)


async def idle_ctx(app: web.Application) -> AsyncIterator[None]:
    idle_s = app[settings_key].server.idle_timeout_s
    task = asyncio.create_task(close_idle_forever(app, idle_s)) if idle_s else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[settings_key]
    ws = websocket_response(settings)
    upgrade = ws.can_prepare(request).ok
    if not upgrade and request.path == "/":
        return await console(request)
    if app[lifecycle_key].draining:
        return web.json_response({"status": "draining"}, status=503)
    if not upgrade:
        return web.json_response({"error": "this endpoint takes a WebSocket upgrade"}, status=400)
    await ws.prepare(request)
    metrics = app[metrics_key]
    replicas = app[replicas_key]
    hooks = app[frame_hooks_key]
    connection = Connection(
        ws,
        request=request,
        identity=subject(request),  # the token's name, or ip:<address> with auth off
        settings=settings,
        commands=app[commands_key],
        metrics=metrics,
        follows=replicas.bus.follows if replicas is not None else None,
        frame_hooks=hooks,
    )
    app[connections_key].add(connection)
    if replicas is not None:
        replicas.sockets[connection.id] = connection
    metrics.connections_total.inc()
    with bound_context(connection_id=connection.id):
        log.info("ws_connected")
        try:
            connection.send(
                SystemConnected(
                    connection_id=connection.id,
                    agents=[*app[agents_key]],
                    heartbeat_s=settings.server.heartbeat_s,
                )
            )
            await connection.serve()
        finally:
            app[connections_key].discard(connection)
            if replicas is not None:
                replicas.sockets.pop(connection.id, None)
            code = int(connection.close_code or ws.close_code or 1006)
            label = str(code) if code in CLOSE_CODES else "other"  # clients choose 3000-4999
            metrics.connections_closed_total.labels(label).inc()
            log.info("ws_closed", code=code)
    return ws


def create_app(
    settings: Settings,
    agents: Mapping[str, AgentSpec | AgentFactory] | None = None,
    *,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The whole service on one Application; `agents` defaults to those named in settings."""
    specs = as_specs(agents) if agents is not None else load_agents(settings)
    if not specs:
        raise ValueError("no agent to serve: pass an agent file or list agents in the config")
    metrics = Metrics.create(registry or CollectorRegistry())  # one registry per app
    limits = LimitSlot()  # shared through Redis once the state store is up
    try:
        stack = build_middlewares(settings, metrics, store=limits)
    except StackConfigError as exc:
        raise ConfigError(str(exc)) from exc
    app = web.Application(middlewares=stack.http)  # docs/middleware.md
    app[settings_key] = settings
    app[agents_key] = specs
    app[metrics_key] = metrics
    app[lifecycle_key] = Lifecycle()
    app[limit_slot_key] = limits
    connections: set[Connection] = set()
    app[connections_key] = connections
    metrics.active_connections.set_function(lambda: len(connections))  # read at each scrape
    app[frame_hooks_key] = stack.frame_hooks
    app.cleanup_ctx.append(state_ctx)
    app.cleanup_ctx.append(idle_ctx)
    app.on_shutdown.append(drain)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    app.router.add_get("/health", health)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/", ws_handler)
    if STATIC.is_dir():
        app.router.add_get("/static/{name}", static_files(STATIC))
    stack.install(app)  # CORS on the routes; the upgrade's access-log line
    return app
