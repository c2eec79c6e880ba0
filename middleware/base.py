"""The base of every middleware: one object guards HTTP requests and WebSocket frames."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from middleware.frames import FrameInfo

if TYPE_CHECKING:
    from middleware.access_log import AccessLog
    from middleware.client import ClientResolver
    from middleware.origin import OriginPolicy
    from middleware.store import LimitStore


class StackConfigError(ValueError):
    """The stack cannot be built as configured; the message says what to change."""


class TokenLike(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def token(self) -> str: ...


class AuthOptions(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def tokens(self) -> Sequence[TokenLike | str]: ...
    @property
    def metrics_token(self) -> str | None: ...


class LimitOptions(Protocol):
    @property
    def http_per_s(self) -> float: ...
    @property
    def http_burst(self) -> int: ...
    @property
    def messages_per_s(self) -> float: ...
    @property
    def messages_burst(self) -> int: ...
    @property
    def frames_per_s(self) -> float: ...
    @property
    def frames_burst(self) -> int: ...
    @property
    def violations_before_close(self) -> int: ...
    @property
    def connections_per_identity(self) -> int: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def auth_failures_per_min(self) -> int: ...


class ServerOptions(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def trusted_proxies(self) -> Sequence[str]: ...
    @property
    def allowed_hosts(self) -> Sequence[str]: ...


class CorsOptions(Protocol):
    @property
    def allowed_origins(self) -> Sequence[str]: ...


class StackSettings(Protocol):
    """What the stack reads of the service's settings (service.settings.Settings fits)."""

    @property
    def middlewares(self) -> Sequence[str]: ...
    @property
    def server(self) -> ServerOptions: ...
    @property
    def auth(self) -> AuthOptions: ...
    @property
    def rate_limit(self) -> LimitOptions: ...
    @property
    def cors(self) -> CorsOptions: ...


class StackMetrics(Protocol):
    """The collectors the stack counts into (service.metrics.Metrics fits)."""

    @property
    def http_requests_total(self) -> Counter: ...
    @property
    def http_request_duration_seconds(self) -> Histogram: ...
    @property
    def auth_failures_total(self) -> Counter: ...
    @property
    def rate_limited_total(self) -> Counter: ...


@dataclass(frozen=True)
class StackContext:
    """Everything a middleware may be built from: settings and the shared collaborators."""

    settings: StackSettings
    metrics: StackMetrics
    clock: Callable[[], float]
    store: LimitStore
    clients: ClientResolver
    access: AccessLog
    browsers: OriginPolicy  # the Host and Origin rules (middleware.origin)


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


HEALTH_PATH = "/health"  # answered in front of the layers: public, never limited
METRICS_PATH = "/metrics"  # takes only the metrics token, if one is set; never limited


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(seconds)))


def round_up(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The JSON body every refusal of the stack has: {error, code, retry_after_s?}."""
    body: dict[str, object] = {"error": message, "code": code}
    out = dict(headers or {})
    if retry_after_s is not None:
        body["retry_after_s"] = round_up(retry_after_s)
        out[hdrs.RETRY_AFTER] = retry_after_header(retry_after_s)
    return web.json_response(body, status=status, headers=out)


class bound_context:
    """Bind log context for a block, then put back what was there.

    structlog's `bound_contextvars` copies the whole context to save it; this keeps only the
    tokens of what it set, which matters on every request.
    """

    __slots__ = ("fields", "tokens")

    def __init__(self, **fields: object) -> None:
        self.fields = fields
        self.tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        self.tokens = structlog.contextvars.bind_contextvars(**self.fields)

    def __exit__(self, *exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self.tokens)
