"""The `rate_limit` middleware: GCRA allowances per identity, and caps on open sockets.

The subject is the identity (the token's name), or `ip:<address>` when anonymous. HTTP requests
(upgrades included) over `http_per_s` get 429 + Retry-After; frames over their limit get
`agent.error{code: rate_limited, retry_after_s}` and the socket stays open, unless the client
goes on after `violations_before_close` refusals in a row: then it is closed with 1008.
`user.message` (it costs model tokens) has its own, lower limit. Open sockets are capped per
subject (429 at the upgrade) and per process (503).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Self

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from middleware.access_log import AccessLog
from middleware.base import (
    METRICS_PATH,
    LimitOptions,
    Middleware,
    StackContext,
    StackMetrics,
    error_response,
    is_upgrade,
    round_up,
)
from middleware.frames import FrameInfo, FrameRejected
from middleware.keys import subject as request_subject
from middleware.store import LimitStore, MemoryStore

log = structlog.get_logger("myagent_ws.rate_limit")
EXEMPT_PATHS = (METRICS_PATH,)  # scrapes are never throttled (health probes skip the stack)
CAPACITY_RETRY_S = 5.0  # Retry-After when a connection cap is reached (no better estimate)
MESSAGE = "user.message"


@dataclass(slots=True)
class SocketState:
    """What the frame hook knows of one socket: whose allowance it spends, refusals in a row."""

    subject: str
    violations: int = 0


_socket: ContextVar[SocketState | None] = ContextVar("rate_limited_socket", default=None)


class RateLimitMiddleware(Middleware):
    """429 with Retry-After over the rate; connection caps at the upgrade; frame limits."""

    name = "rate_limit"

    def __init__(
        self,
        limits: LimitOptions,
        *,
        store: LimitStore,
        access: AccessLog,
        metrics: StackMetrics,
        clock: Callable[[], float],
        exempt_paths: Iterable[str] = EXEMPT_PATHS,
    ) -> None:
        self.limits = limits
        self.store = store
        self.access = access
        self.metrics = metrics
        self.clock = clock
        self.exempt = frozenset(exempt_paths)
        self.local = MemoryStore()  # frames other than user.message: per process, no round trip
        self.open: dict[str, int] = {}  # subject -> open sockets (this process)
        self.total = 0

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls(
            ctx.limits,
            store=ctx.store,
            access=ctx.access,
            metrics=ctx.metrics,
            clock=ctx.clock,
        )

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self.exempt:
            return await handler(request)
        limits, subject = self.limits, request_subject(request)
        wait = await self.store.take(
            f"http:{subject}", limits.http_per_s, limits.http_burst, self.clock()
        )
        if wait is not None:
            message = (
                f"too many requests: at most {limits.http_per_s:g} per second "
                f"(bursts of {limits.http_burst}); retry in {round_up(wait):g} s"
            )
            return self.refuse(request, 429, "http", message, wait)
        if not is_upgrade(request):
            return await handler(request)
        if self.total >= limits.max_connections:
            message = "the server is at its connection limit; retry later"
            return self.refuse(request, 503, "server", message, CAPACITY_RETRY_S)
        if self.open.get(subject, 0) >= limits.connections_per_identity:
            message = (
                f"too many open connections for this client (limit "
                f"{limits.connections_per_identity}); close one and retry"
            )
            return self.refuse(request, 429, "connection", message, CAPACITY_RETRY_S)
        self.open[subject] = self.open.get(subject, 0) + 1
        self.total += 1
        token = _socket.set(SocketState(subject))
        try:
            return await handler(request)
        finally:
            _socket.reset(token)
            self.total -= 1
            left = self.open[subject] - 1
            if left:
                self.open[subject] = left
            else:
                del self.open[subject]

    def refuse(
        self, request: web.Request, status: int, level: str, message: str, wait: float
    ) -> web.Response:
        self.metrics.rate_limited_total.labels(level).inc()
        code = "rate_limited" if status == 429 else "over_capacity"
        response = error_response(status, code, message, retry_after_s=wait)
        self.access.record(request, status, reason=f"rate_limited_{level}")
        return response

    async def on_frame(self, frame: FrameInfo) -> None:
        state = _socket.get() or SocketState(frame.identity)  # outside a stack: never closes
        limits = self.limits
        if frame.event == MESSAGE:  # they cost model tokens: limited across replicas
            key, rate, burst = f"msg:{state.subject}", limits.messages_per_s, limits.messages_burst
            wait = await self.store.take(key, rate, burst, self.clock())
        else:
            key, rate, burst = f"frame:{state.subject}", limits.frames_per_s, limits.frames_burst
            wait = await self.local.take(key, rate, burst, self.clock())
        if wait is None:
            state.violations = 0
            return
        state.violations += 1
        self.metrics.rate_limited_total.labels("frame").inc()
        close = state.violations >= limits.violations_before_close
        if close:
            log.warning("frame_flood_closed", violations=state.violations, frame=frame.event)
        elif state.violations == 1:  # one line per episode, not per refused frame
            log.info("frames_rate_limited", frame=frame.event, retry_after_s=round_up(wait))
        what = "user.message frames" if frame.event == MESSAGE else "frames"
        raise FrameRejected(
            "rate_limited",
            f"too many {what}: at most {rate:g} per second (bursts of {burst}); "
            f"retry in {round_up(wait):g} s"
            + ("; closing: the client kept sending after being told" if close else ""),
            retry_after_s=round_up(wait),
            close=close,
        )
