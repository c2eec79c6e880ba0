"""create_app(settings, agents): routes, cleanup_ctx, /health and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

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
from service.dispatcher import Connection
from service.errors import ConfigError
from service.keys import (
    agents_key,
    connections_key,
    draining_key,
    frame_hooks_key,
    metrics_key,
    sessions_key,
    settings_key,
    started_key,
    store_key,
)
from service.limits import RedisLimitStore
from service.metrics import Metrics
from service.protocol import SystemConnected, SystemShutdown
from service.replicas import handle_command
from service.sessions import SessionRegistry
from service.settings import Settings
from service.store import RedisState

log = structlog.get_logger("myagent_ws.app")
STATIC = Path(__file__).parent / "static"
REAP_EVERY_S = 5.0


def load_agents(settings: Settings) -> dict[str, AgentSpec]:
    """The agents named in the settings, loaded from their files (AgentLoadError if one fails)."""
    specs = [load_agent_factory(entry.file, entry.name or None) for entry in settings.agents]
    return {spec.name: spec for spec in specs}


def as_specs(agents: Mapping[str, AgentSpec | AgentFactory]) -> dict[str, AgentSpec]:
    return {
        name: a if isinstance(a, AgentSpec) else AgentSpec(name=name, factory=a)
        for name, a in agents.items()
    }


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    store = app[store_key]
    app[sessions_key] = sessions = SessionRegistry(app[metrics_key], settings.sessions, store=store)
    if store is not None:
        await store.start(functools.partial(handle_command, app, store))
    reaper = asyncio.create_task(reap_forever(sessions, settings.sessions.retention_s))
    yield
    reaper.cancel()
    await asyncio.gather(reaper, return_exceptions=True)
    await sessions.close_all()  # cancels running agents and awaits them
    if store is not None:
        await store.close()


async def reap_forever(sessions: SessionRegistry, retention_s: float) -> None:
    while True:
        await asyncio.sleep(min(REAP_EVERY_S, max(retention_s / 2, 0.05)))
        await tend(sessions, retention_s)


async def tend(sessions: SessionRegistry, retention_s: float) -> None:
    """Close detached sessions past retention; keep the shared records of the others alive."""
    reaped = await sessions.reap(retention_s)
    if reaped:
        log.info("sessions_expired", count=reaped)
    if sessions.store is not None:  # else a session in use longer than its TTL is lost
        sessions.store.touch([*sessions.sessions])  # it writes once a third of the TTL


async def health(request: web.Request) -> web.Response:
    app = request.app
    if app[draining_key][0]:
        return web.json_response({"status": "draining"}, status=503)
    sessions = app[sessions_key]
    store = app[store_key]
    return web.json_response(
        {
            "status": "healthy",
            "timestamp": datetime.now(UTC),
            "version": service.__version__,
            "uptime_s": round(time.monotonic() - app[started_key], 3),
            "active_connections": len(app[connections_key]),
            "active_sessions": len(sessions),
            "running_sessions": sessions.running,
            "agents": [*app[agents_key]],
            "state": {
                "backend": "memory" if store is None else "redis",
                "status": "ok" if store is None else store.status,
            },
        },
        dumps=to_json,
    )


def to_json(value: object) -> str:
    """JSON by pydantic-core: a fifth of json.dumps's time, on a path polled all day."""
    return pydantic_core.to_json(value).decode()


async def console(request: web.Request) -> web.StreamResponse:
    index = STATIC / "index.html"
    if not index.is_file():
        return web.json_response(
            {"error": "no web console in this build; connect a WebSocket client to /ws"}, status=404
        )
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


def static_files(folder: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The console's files, by name. They are checked with the server on each load (ETag,
    Last-Modified: no-cache), so a browser never runs an old app.js against a new page."""
    files = {path.name: path for path in folder.iterdir() if path.is_file()}

    async def static_file(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            return web.json_response({"error": "no such file"}, status=404)
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return static_file


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
    if app[draining_key][0]:
        return web.json_response({"status": "draining"}, status=503)
    if not upgrade:
        return web.json_response({"error": "this endpoint takes a WebSocket upgrade"}, status=400)
    await ws.prepare(request)
    metrics = app[metrics_key]
    hooks = app[frame_hooks_key]
    connection = Connection(
        ws,
        request=request,
        identity=subject(request),  # the token's name, or ip:<address> with auth off
        settings=settings,
        agents=app[agents_key],
        sessions=app[sessions_key],
        metrics=metrics,
        frame_hooks=hooks,
    )
    app[connections_key].add(connection)
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
            code = int(connection.close_code or ws.close_code or 1006)
            metrics.connections_closed_total.labels(str(code)).inc()
            log.info("ws_closed", code=code)
    return ws


async def drain(app: web.Application) -> None:
    """Refuse new work, tell clients, let runs finish for the grace, close 1001 (once).

    The CLI calls it on SIGTERM while still listening; on_shutdown calls it again (a no-op).
    Every socket is closed at once: one by one, clients that do not read (each may take the
    close timeout) would add up past the orchestrator's stop grace period.
    """
    if app[draining_key][0]:
        return
    app[draining_key][0] = True
    settings = app[settings_key]
    grace = settings.server.shutdown_grace_s
    told: set[Connection] = set()

    def tell_everyone() -> None:
        """system.shutdown to every socket not told yet (one may register during the drain)."""
        for connection in [*app[connections_key]]:
            if connection not in told:
                told.add(connection)
                connection.send(SystemShutdown(retry_after_s=max(1.0, grace)))

    sessions = app[sessions_key]
    sessions.draining_retry_s = max(1.0, grace)
    tell_everyone()
    if (store := app[store_key]) is not None:
        store.retire()  # other replicas can still replay our sessions once we are gone
    running = [s.task for s in sessions.sessions.values() if s.task is not None and s.running]
    if running:
        await asyncio.wait(running, timeout=grace)
    await sessions.close_all()
    tell_everyone()
    connections = [*app[connections_key]]
    await asyncio.gather(
        *(c.finish(WSCloseCode.GOING_AWAY, "server shutdown") for c in connections),
        return_exceptions=True,
    )
    log.info("drained", connections=len(connections))


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
    store = None
    if settings.state.redis_url:  # shared by every replica: sessions, event logs, rate limits
        store = RedisState(
            settings.state.redis_url,
            retention_s=settings.sessions.retention_s,
            max_events=settings.sessions.buffer_events,
            max_followed=settings.sessions.max_per_connection,
        )
    try:
        stack = build_middlewares(
            settings, metrics, store=None if store is None else RedisLimitStore(store.redis)
        )
    except StackConfigError as exc:
        raise ConfigError(str(exc)) from exc
    app = web.Application(middlewares=stack.http)  # docs/middleware.md
    app[settings_key] = settings
    app[store_key] = store
    app[agents_key] = specs
    app[metrics_key] = metrics
    connections: set[Connection] = set()
    app[connections_key] = connections
    metrics.active_connections.set_function(lambda: len(connections))  # read at each scrape
    app[started_key] = time.monotonic()
    app[draining_key] = [False]
    app[frame_hooks_key] = stack.frame_hooks
    app.cleanup_ctx.append(sessions_ctx)
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
