"""Helpers for the middleware tests: settings, a fake clock, small apps, captured logs."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry

from middleware import FrameInfo, FrameRejected, Stack, build_middlewares
from middleware.base import Middleware
from middleware.keys import client_ip_key, identity_key
from service.app import create_app
from service.metrics import Metrics
from service.settings import Settings
from tests.service.conftest import offline_weather

TOKEN = "tok-alpha-7f3a9c"  # a token whose text must never show up in logs or metrics
OTHER = "tok-beta-51d0e2"
METRICS_TOKEN = "scrape-me-8812"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket"}
hooks_key = web.AppKey("hooks", list)


def sha256(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class Clock:
    """A clock the test moves by hand (limiter tests never sleep)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(**sections: Any) -> Settings:
    """Settings with two named tokens, unless `auth` is given or the stack has no auth layer."""
    tokens = [{"name": "alice", "token": TOKEN}, {"name": "bob", "token": OTHER}]
    if "auth" not in sections.get("middlewares", ["auth"]):
        tokens = []  # tokens no layer checks are refused at start (protected mode)
    data: dict[str, Any] = {"auth": {"tokens": tokens}}
    data.update(sections)
    return Settings.model_validate(data)


async def whoami(request: web.Request) -> web.Response:
    return web.json_response(
        {"identity": request.get(identity_key), "client_ip": request.get(client_ip_key)}
    )


async def socket(request: web.Request) -> web.StreamResponse:
    """A tiny dispatcher: each text frame is an event name, run through the frame hooks."""
    ws = web.WebSocketResponse()
    if not ws.can_prepare(request).ok:
        return await whoami(request)
    await ws.prepare(request)
    identity = request.get(identity_key, "anonymous")
    async for msg in ws:  # hold the socket until the client closes it
        if msg.type is not WSMsgType.TEXT:
            continue
        try:
            for hook in request.app[hooks_key]:
                await hook(FrameInfo(identity, msg.data, len(msg.data)))
        except FrameRejected as exc:
            await ws.send_json({"code": exc.code, "retry_after_s": exc.retry_after_s})
            if exc.close:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION)
        else:
            await ws.send_str(msg.data)
    return ws


def stack_app(
    settings: Settings, clock: Clock | None = None
) -> tuple[web.Application, Stack, Metrics]:
    """A small app behind the stack the settings name: the same routes as the service."""
    metrics = Metrics.create(CollectorRegistry())
    stack = build_middlewares(settings, metrics, clock=clock or Clock())
    app = web.Application(middlewares=stack.http)
    for path in ("/", "/ws"):
        app.router.add_get(path, socket)
    for path in ("/health", "/metrics", "/static/app.js"):
        app.router.add_get(path, whoami)
    app[hooks_key] = stack.frame_hooks
    stack.install(app)
    return app, stack, metrics


def layer(stack: Stack, name: str) -> Middleware:
    return next(m for m in stack.layers if m.name == name)


async def until(condition: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the loop run until `condition` holds (server-side cleanup after a close)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def service_app(settings: Settings) -> web.Application:
    return create_app(settings, {"weather": offline_weather})


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every log entry (context included) while the test runs, debug lines too."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as entries:
            yield entries
    finally:
        structlog.configure(wrapper_class=old["wrapper_class"])


def requests_logged(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == "http_request"]
