"""The drain on SIGTERM: refuse new work, let runs finish, hand sessions over, close sockets."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import WSCloseCode, web

from service.dispatcher import Connection
from service.keys import connections_key, lifecycle_key, sessions_key, settings_key, store_key
from service.protocol import SystemShutdown

log = structlog.get_logger("myagent_ws.app")
SAVE_WITHIN_S = 2.0  # the drain waits this long for the store to take the sessions


async def drain(app: web.Application) -> None:
    """Refuse new work, tell clients, let runs finish for the grace, hand sessions over, close
    1001 (once).

    The CLI calls it on SIGTERM while still listening; on_shutdown calls it again (a no-op).
    Runs still going after the grace are interrupted; then every session is saved and its
    lease released, so a client's next message on any replica (or on this one, restarted,
    with a durable store) goes on with the conversation. Every socket is closed at once: one by
    one, clients that do not read would add up past the orchestrator's stop grace period.
    """
    settings = app[settings_key]
    grace = settings.server.shutdown_grace_s
    if not app[lifecycle_key].drain(max(1.0, grace)):
        return
    told: set[Connection] = set()

    def tell_everyone() -> None:
        """system.shutdown to every socket not told yet (one may register during the drain)."""
        for connection in [*app[connections_key]]:
            if connection not in told:
                told.add(connection)
                connection.send(SystemShutdown(retry_after_s=max(1.0, grace)))

    tell_everyone()
    sessions = app[sessions_key]
    running = [s.runs.task for s in sessions.sessions.values() if s.running and s.runs.task]
    if running:
        await asyncio.wait(running, timeout=grace)
    await sessions.release_all()
    try:  # the releases reach the store before the sockets close (if it answers)
        await asyncio.wait_for(app[store_key].sync(), SAVE_WITHIN_S)
    except TimeoutError:
        log.warning("drain_state_not_saved", within_s=SAVE_WITHIN_S)
    tell_everyone()
    connections = [*app[connections_key]]
    await asyncio.gather(
        *(c.finish(WSCloseCode.GOING_AWAY, "server shutdown") for c in connections),
        return_exceptions=True,
    )
    log.info("drained", connections=len(connections))
