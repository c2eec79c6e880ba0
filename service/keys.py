"""Every web.AppKey and web.RequestKey of the service, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent_loader.loader import AgentSpec
from middleware.keys import client_ip_key as client_ip_key  # set by the stack
from middleware.keys import identity_key as identity_key  # the token's name, set by auth
from middleware.store import LimitSlot
from service.commands import Commands
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.sessions import SessionRegistry
from service.settings import Settings

if TYPE_CHECKING:
    from service.dispatcher import Connection, FrameHook
    from service.replicas import Replicas
    from service.state.base import StateStore

settings_key = web.AppKey("settings", Settings)
agents_key = web.AppKey("agents", dict[str, AgentSpec])
metrics_key = web.AppKey("metrics", Metrics)
lifecycle_key = web.AppKey("lifecycle", Lifecycle)
store_key: web.AppKey[StateStore] = web.AppKey("store", object)  # type: ignore[arg-type]
sessions_key = web.AppKey("sessions", SessionRegistry)
commands_key = web.AppKey("commands", Commands)
replicas_key: web.AppKey[Replicas | None] = web.AppKey("replicas", object)  # type: ignore[arg-type]
connections_key: web.AppKey[set[Connection]] = web.AppKey("connections", set)
frame_hooks_key: web.AppKey[list[FrameHook]] = web.AppKey("frame_hooks", list)
limit_slot_key = web.AppKey("limit_slot", LimitSlot)  # the limiter's store: Redis once it is up

__all__: list[Any] = []
