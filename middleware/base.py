"""The base of every middleware: one object guards HTTP requests and WebSocket frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

from aiohttp import web
from aiohttp.typedefs import Handler

from middleware.frames import FrameInfo
from middleware.http import HEALTH_PATH as HEALTH_PATH
from middleware.http import METRICS_PATH as METRICS_PATH
from middleware.http import bound_context as bound_context
from middleware.http import error_response as error_response
from middleware.http import is_upgrade as is_upgrade
from middleware.http import round_up as round_up
from middleware.options import LimitOptions as LimitOptions
from middleware.options import StackConfigError as StackConfigError
from middleware.options import StackMetrics as StackMetrics
from middleware.options import StackSettings as StackSettings

if TYPE_CHECKING:
    from middleware.access import AccessLog
    from middleware.client import ClientResolver
    from middleware.origin import OriginPolicy
    from middleware.store import LimitStore
    from middleware.tokens import Token


@dataclass(frozen=True)
class StackContext:
    """Everything a middleware is built from, each built once: the built-in layers read these,
    never the settings; `settings` is there for a layer of yours with a section of its own."""

    settings: StackSettings
    metrics: StackMetrics
    clock: Callable[[], float]
    store: LimitStore
    clients: ClientResolver
    access: AccessLog
    browsers: OriginPolicy  # the Host and Origin rules (middleware.origin)
    tokens: tuple[Token, ...]  # the client tokens; none: every request is anonymous
    metrics_tokens: tuple[Token, ...]  # what /metrics takes; none: it is open
    limits: LimitOptions


class Middleware:
    """One layer of the stack.

    `handle` wraps every HTTP request (the WebSocket upgrade included; for an upgrade it returns
    when the socket closes); `on_frame` sees every client frame of the sockets it let through and
    raises FrameRejected to refuse one. Subclasses set `name` (the word in `middlewares:`) and
    `create` (build from settings and shared collaborators).
    """

    name: ClassVar[str] = ""

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        raise NotImplementedError(f"{cls.__name__}.create")

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    async def on_frame(self, frame: FrameInfo) -> None:
        return None

    def install(self, app: web.Application) -> None:
        """Hook into the app once its routes exist (signals); most layers need nothing."""

    def sees_frames(self) -> bool:
        return type(self).on_frame is not Middleware.on_frame
