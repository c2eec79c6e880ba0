"""Every web.AppKey and web.RequestKey of the service, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent_loader.loader import AgentSpec
from middleware.keys import client_ip_key as client_ip_key  # set by the stack
from middleware.keys import identity_key as identity_key  # the token's name, set by auth
from service.metrics import Metrics
from service.sessions import SessionRegistry
from service.settings import Settings
from service.store import RedisState

if TYPE_CHECKING:
    from service.dispatcher import Connection, FrameHook

settings_key = web.AppKey("settings", Settings)
agents_key = web.AppKey("agents", dict[str, AgentSpec])
metrics_key = web.AppKey("metrics", Metrics)
sessions_key = web.AppKey("sessions", SessionRegistry)
connections_key: web.AppKey[set[Connection]] = web.AppKey("connections", set)
frame_hooks_key: web.AppKey[list[FrameHook]] = web.AppKey("frame_hooks", list)
started_key = web.AppKey("started", float)
store_key: web.AppKey[RedisState | None] = web.AppKey("store", object)  # type: ignore[arg-type]
draining_key: web.AppKey[list[bool]] = web.AppKey("draining", list)  # [flag], set on shutdown

__all__: list[Any] = []
