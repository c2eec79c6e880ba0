"""AccessLog: the one http_request line of a request and its HTTP metrics, written by whichever
layer ends the request (the logging layer, or the one that refuses it)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import structlog
from aiohttp import web
from prometheus_client import Counter, Histogram

from middleware.http import HEALTH_PATH, METRICS_PATH
from middleware.keys import (
    ANONYMOUS,
    client_ip_key,
    identity_key,
    logged_key,
    request_id_key,
    started_key,
)
from middleware.options import StackMetrics
from middleware.redaction import redact

log = structlog.get_logger("myagent_ws.http")
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
