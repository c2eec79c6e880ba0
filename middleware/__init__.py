"""The middleware stack: one ordered list, applied to HTTP requests and to WebSocket frames.

`build_middlewares(settings, metrics)` reads `middlewares:` (outermost first) and builds each
layer: a built-in name from MIDDLEWARES, or a class of the user's as `module:Class` or
`path/to/file.py:Class`; the same objects give the app its aiohttp middlewares and the
dispatcher its frame hooks. See docs/middleware.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.typedefs import Middleware as AiohttpMiddleware

from middleware.access_log import AccessLog, LoggingMiddleware
from middleware.auth import AuthMiddleware, protected_mode_problem
from middleware.base import (
    HEALTH_PATH,
    Middleware,
    StackConfigError,
    StackContext,
    StackMetrics,
    StackSettings,
)
from middleware.client import ClientResolver
from middleware.frames import FrameInfo, FrameRejected
from middleware.host_check import HostCheck
from middleware.origin import AllowedOrigins, OriginPolicy, is_loopback, setup_cors
from middleware.rate_limit import RateLimitMiddleware
from middleware.request_context import RequestContext
from middleware.store import LimitStore, MemoryStore

MIDDLEWARES: dict[str, type[Middleware]] = {
    layer.name: layer for layer in (AuthMiddleware, RateLimitMiddleware, LoggingMiddleware)
}
FrameHook = Callable[[FrameInfo], Awaitable[None]]


@dataclass(frozen=True)
class Stack:
    """The built stack: RequestContext and HostCheck first, then the configured layers."""

    context: RequestContext
    host_check: HostCheck
    layers: tuple[Middleware, ...]
    allowed_origins: AllowedOrigins
    access: AccessLog
    clock: Callable[[], float]

    @functools.cached_property
    def http(self) -> list[AiohttpMiddleware]:
        """The stack as one aiohttp middleware; the first layer is the outermost.

        Each route handler's chain of layers is built once, as aiohttp builds its own. A health
        probe (polled every few seconds by Docker, nginx, Kubernetes) needs no token, limit or
        request id: it skips the layers, and is only counted and logged at debug.
        """
        layers = (self.context, self.host_check, *self.layers)
        access, clock = self.access, self.clock

        @functools.lru_cache(maxsize=1024)  # handlers are the app's routes: a few
        def chain(handler: Handler) -> Handler:
            for layer in reversed(layers):
                handler = functools.partial(layer.handle, handler=handler)
            return handler

        @web.middleware
        async def stack(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path == HEALTH_PATH:  # no socket is served there, whatever the headers
                started = clock()
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    access.probe(request, exc.status, started)
                    raise
                access.probe(request, response.status, started)
                return response
            return await chain(handler)(request)

        return [stack]

    @property
    def frame_hooks(self) -> list[FrameHook]:
        return [layer.on_frame for layer in self.layers if layer.sees_frames()]

    def install(self, app: web.Application) -> None:
        """After the routes are added: CORS on them, and each layer's signals."""
        setup_cors(app, self.allowed_origins)
        for layer in self.layers:
            layer.install(app)


def resolve(entry: str) -> type[Middleware]:
    """The class a `middlewares:` entry names; StackConfigError saying why if none."""
    layer = MIDDLEWARES.get(entry)
    if layer is not None:
        return layer
    check_names([entry])
    target, _, attr = entry.rpartition(":")
    try:
        module = _import_file(target) if target.endswith(".py") else importlib.import_module(target)
    except StackConfigError:
        raise
    except Exception as exc:  # the user's module: any error at import is a config error
        raise StackConfigError(
            f"middleware {entry!r}: importing {target} failed: {type(exc).__name__}: {exc}"
        ) from exc
    layer = getattr(module, attr, None)
    if not (isinstance(layer, type) and issubclass(layer, Middleware)):
        raise StackConfigError(
            f"middleware {entry!r}: {target} has no Middleware subclass named {attr!r}"
        )
    return layer


def _import_file(path: str) -> object:
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    name = f"myagent_ws_middleware_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StackConfigError(f"middleware file {path} cannot be loaded (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def check_names(names: Sequence[str]) -> None:
    """StackConfigError for an entry that is neither a built-in name nor `module:Class` /
    `file.py:Class`, or one listed twice. Imports nothing: build_middlewares resolves them."""
    for entry in names:
        target, sep, attr = entry.rpartition(":")
        if entry not in MIDDLEWARES and not (sep and target and attr.isidentifier()):
            known = ", ".join(MIDDLEWARES)
            raise StackConfigError(
                f"unknown middleware {entry!r}; known: {known}, or a class of yours as "
                "`module:Class` or `path/to/file.py:Class`"
            )
    if len(set(names)) != len(names):
        raise StackConfigError(f"a middleware is listed twice in {list(names)}")


def build_middlewares(
    settings: StackSettings,
    metrics: StackMetrics,
    *,
    clock: Callable[[], float] = time.monotonic,
    store: LimitStore | None = None,
) -> Stack:
    """The stack `settings.middlewares` names; StackConfigError if it must not run as set."""
    names = list(settings.middlewares)
    check_names(names)
    classes = [resolve(name) for name in names]  # the only place user middleware is imported
    if len(set(classes)) != len(classes):
        raise StackConfigError(f"a middleware is listed twice in {names}")
    auth = settings.auth
    problem = protected_mode_problem(
        settings.server.host,
        auth.enabled,
        has_tokens=bool(auth.client_tokens),
        in_stack="auth" in names,
    )
    if problem is not None:
        raise StackConfigError(problem)
    server = settings.server
    clients = ClientResolver(server.trusted_proxies)
    ctx = StackContext(
        settings=settings,
        metrics=metrics,
        clock=clock,
        store=store if store is not None else MemoryStore(),
        clients=clients,
        access=AccessLog(metrics, clock),
        browsers=OriginPolicy(
            settings.cors.allowed_origins,
            clients,
            local_bind=is_loopback(server.host),
            allowed_hosts=server.allowed_hosts,
        ),
        tokens=auth.client_tokens,
        metrics_tokens=auth.metrics_tokens,
        limits=settings.rate_limit,
    )
    return Stack(
        context=RequestContext.create(ctx),
        host_check=HostCheck.create(ctx),
        layers=tuple(layer.create(ctx) for layer in classes),
        allowed_origins=settings.cors.allowed_origins,
        access=ctx.access,
        clock=clock,
    )


__all__ = [
    "MIDDLEWARES",
    "FrameInfo",
    "FrameRejected",
    "Middleware",
    "Stack",
    "StackConfigError",
    "StackContext",
    "build_middlewares",
    "check_names",
    "resolve",
]
