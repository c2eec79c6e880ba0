"""The state store: `memory` (one process), `sqlite` (one process, survives restarts) or `redis`
(replicas). Each implements service.state.base.StateStore; the same contract tests run all three."""

from __future__ import annotations

from service.settings import Settings
from service.state.base import StateStore


def open_store(settings: Settings) -> StateStore:
    """The backend the settings name (not started: `await store.start()` in cleanup_ctx)."""
    state, sessions = settings.state, settings.sessions
    bounds = {"max_events": sessions.buffer_events, "max_bytes": sessions.buffer_bytes}
    if state.redis_url:
        from service.state.redis import RedisState

        return RedisState(
            state.redis_url, retention_s=sessions.retention_s, lease_s=state.lease_s, **bounds
        )
    if state.sqlite_path is not None:
        from service.state.sqlite import SqliteState

        return SqliteState(state.sqlite_path, retention_s=sessions.retention_s, **bounds)
    from service.state.memory import MemoryState

    return MemoryState(**bounds)
