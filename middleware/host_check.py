"""The `host_check` layer: 421 for a Host the server does not answer to (DNS rebinding)."""

from __future__ import annotations

from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

from middleware.access import AccessLog
from middleware.base import Middleware, StackContext, error_response
from middleware.options import StackMetrics
from middleware.origin import OriginPolicy

MISDIRECTED = (
    "this server does not answer to that host name; browse to it by a loopback address, or add "
    "the name to server.allowed_hosts on the server"
)


class HostCheck(Middleware):
    """421 for a Host the server does not answer to (DNS rebinding), before any other layer.

    Not configurable: it runs right after request_context, whatever `middlewares:` says.
    """

    name = "host_check"

    def __init__(self, policy: OriginPolicy, access: AccessLog, metrics: StackMetrics) -> None:
        self.policy = policy
        self.access = access
        self.metrics = metrics

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls(ctx.browsers, ctx.access, ctx.metrics)

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.policy.host_allowed(request):
            return await handler(request)
        self.metrics.auth_failures_total.labels("host").inc()
        response = error_response(421, "misdirected", MISDIRECTED)
        self.access.record(request, 421, reason="host")
        return response
