"""The `request_context` layer, always the outermost: client address, request id, start time."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

from middleware.base import Middleware, StackContext, bound_context
from middleware.client import ClientResolver
from middleware.keys import ANONYMOUS, client_ip_key, request_id_key, started_key

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestContext(Middleware):
    """Always the outermost layer (not configurable): client address, request id, start time.

    The request id comes from a trusted proxy's X-Request-ID or is made here; it is bound to the
    structlog context for every line the request (or its WebSocket) logs, and sent back in
    X-Request-ID. `identity` is bound as anonymous, so lines carry it with auth open or absent.
    """

    name = "request_context"

    def __init__(self, clients: ClientResolver, clock: Callable[[], float]) -> None:
        self.clients = clients
        self.clock = clock

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls(ctx.clients, ctx.clock)

    def request_id(self, request: web.Request) -> str:
        given = request.headers.get("X-Request-ID", "")
        if given and REQUEST_ID.fullmatch(given) and self.clients.peer_is_trusted(request):
            return given
        return os.urandom(16).hex()  # as uuid4().hex looks, at a third of the cost

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[started_key] = self.clock()
        request[client_ip_key] = self.clients.address(request)
        request[request_id_key] = request_id = self.request_id(request)
        # identity: anonymous until the auth layer (if any) binds the token's name over it
        with bound_context(request_id=request_id, identity=ANONYMOUS):
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers.setdefault("X-Request-ID", request_id)
                raise
        if not response.prepared:
            response.headers.setdefault("X-Request-ID", request_id)
        return response
