"""The `logging` middleware: one http_request line per request, HTTP metrics, frames at debug.

Requests stopped by an outer layer (auth's 401/403/429, the limiter's 429/503) never reach this
layer's handler; the layer that stops one writes its line with the same AccessLog, so every
request has exactly one line, whatever the order of the stack.
"""

from __future__ import annotations

import asyncio
from typing import Self

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from middleware.access import AccessLog as AccessLog
from middleware.base import Middleware, StackContext
from middleware.frames import FrameInfo
from middleware.keys import started_key

frame_log = structlog.get_logger("myagent_ws.frames")
CLIENT_CLOSED = 499  # the client went away before an answer (nginx's convention)


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
