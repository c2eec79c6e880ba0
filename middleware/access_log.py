"""The `logging` middleware: one http_request line per request, HTTP metrics, frames at debug.

Requests stopped by an outer layer (auth's 401/403/429, the limiter's 429/503) never reach this
layer's handler; the layer that stops one writes its line with the same AccessLog, so every
request has exactly one line, whatever the order of the stack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Self

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from middleware.base import HEALTH_PATH, METRICS_PATH, Middleware, StackContext, StackMetrics
from middleware.frames import FrameInfo
from middleware.keys import (
    ANONYMOUS,
    client_ip_key,
    identity_key,
    logged_key,
    request_id_key,
    started_key,
)
from middleware.redaction import redact

log = structlog.get_logger("myagent_ws.http")
frame_log = structlog.get_logger("myagent_ws.frames")
CLIENT_CLOSED = 499  # the client went away before an answer (nginx's convention)
PROBES = frozenset({HEALTH_PATH, METRICS_PATH})  # polled every few seconds: their lines are debug
MAX_PATH = 200


def logged_path(request: web.Request) -> str:
    """The path as logged: never the query string, and a token in it redacted (the logging
    pipeline redacts again; this keeps the field clean wherever the record goes)."""
    path = request.path
    clean = redact(path) if "=" in path or "%" in path else path  # most paths have neither
    return clean[:MAX_PATH]


def route_template(request: web.Request) -> str:
    """The route's template (`/ws`, `/static`), never the raw path: a closed set for labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class AccessLog:
    """Writes the http_request line and counts the HTTP metrics, once per request.

    The line has the route template and the path, never the query string (where `?token=`
    lives); the identity is the token's name.
    """

    def __init__(self, metrics: StackMetrics, clock: Callable[[], float]) -> None:
        self.metrics = metrics
        self.clock = clock
        self.probe_lines = log.is_enabled_for(logging.DEBUG)
        self._requests: dict[tuple[str, int], Counter] = {}  # children, cached: per request
        self._durations: dict[str, Histogram] = {}

    def count(self, route: str, status: int, duration: float) -> None:
        requests = self._requests.get((route, status))
        if requests is None:
            requests = self.metrics.http_requests_total.labels(route, str(status))
            self._requests[route, status] = requests
        durations = self._durations.get(route)
        if durations is None:
            durations = self._durations[route] = self.metrics.http_request_duration_seconds.labels(
                route
            )
        requests.inc()
        durations.observe(duration)

    def probe(self, request: web.Request, status: int, started: float) -> None:
        """A health probe's count; its line only when debug is on (probes come all day)."""
        if self.probe_lines or status >= 400:
            request[started_key] = started
            self.record(request, status)
        else:
            self.count(request.path, status, self.clock() - started)

    def record(self, request: web.Request, status: int, *, reason: str | None = None) -> None:
        if request.get(logged_key):
            return
        request[logged_key] = True
        route = route_template(request)
        started = request.get(started_key)
        duration = max(0.0, self.clock() - started) if started is not None else 0.0
        self.count(route, status, duration)
        probe = route in PROBES and status < 400
        if probe and not self.probe_lines:  # a debug line nobody reads: no need to build it
            return
        fields: dict[str, object] = {
            "method": request.method,
            "route": route,
            "path": logged_path(request),
            "status": status,
            "duration_s": round(duration, 6),
            "client_ip": request.get(client_ip_key) or request.remote,
            "identity": request.get(identity_key, ANONYMOUS),
        }
        if (request_id := request.get(request_id_key)) is not None:  # probes have none
            fields["request_id"] = request_id
        if reason is not None:
            fields["reason"] = reason
        if status >= 500 and status != 503:
            log.error("http_request", **fields)
        elif probe:
            log.debug("http_request", **fields)
        else:
            log.info("http_request", **fields)


class LoggingMiddleware(Middleware):
    """One http_request line per request; a WebSocket's when its handshake is done (101)."""

    name = "logging"

    def __init__(self, access: AccessLog) -> None:
        self.access = access

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls(ctx.access)

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.access.record(request, exc.status)
            raise
        except asyncio.CancelledError:
            self.access.record(request, CLIENT_CLOSED)
            raise
        except Exception:
            self.access.record(request, 500)
            raise
        self.access.record(request, response.status)  # a no-op for a WebSocket: logged at 101
        return response

    async def on_frame(self, frame: FrameInfo) -> None:
        frame_log.debug("frame_in", frame=frame.event, size=frame.size)

    def install(self, app: web.Application) -> None:
        app.on_response_prepare.append(self.on_prepare)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if response.status == 101 and started_key in request:
            self.access.record(request, 101)
