"""The `auth` middleware: the Origin check, then a bearer token, before any upgrade.

Tokens come as `Authorization: Bearer T` or `?token=T` (browsers cannot set WebSocket headers).
Each configured token is kept only as its SHA-256 (YAML may hold `sha256:<hex>` instead of the
secret), compared in constant time; its name is the identity in logs and session ownership.
A token never appears in a log line, a metric label or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Self
from urllib.parse import unquote_plus

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from middleware.access_log import AccessLog
from middleware.base import (
    METRICS_PATH,
    Middleware,
    StackContext,
    StackMetrics,
    bound_context,
    error_response,
    is_upgrade,
)
from middleware.keys import ANONYMOUS, client_ip_key, identity_key
from middleware.origin import OriginPolicy, is_loopback
from middleware.store import LimitStore
from middleware.tokens import Token as Token
from middleware.tokens import parse_token as parse_token
from middleware.tokens import parse_tokens as parse_tokens

PAGE_PATHS = frozenset({"/"})  # the web console: its page is public, its upgrade is not
PUBLIC_PREFIXES = ("/static/",)
REALM = 'Bearer realm="myagent-ws"'
MISSING = (
    "a token is required: send the header `Authorization: Bearer <token>`, "
    "or add ?token=<token> to the URL"
)
INVALID = "the token is not valid; check it against the server's auth.tokens"
THROTTLED = "too many failed logins from this address; retry later"
FOREIGN_ORIGIN = (
    "this page's origin may not open the WebSocket; add it to cors.allowed_origins on the server"
)


def match_token(presented: str, tokens: Sequence[Token]) -> Token | None:
    """The token equal to `presented`, comparing every digest in constant time."""
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    found = None
    for token in tokens:
        if hmac.compare_digest(digest, token.digest) and found is None:
            found = token
    return found


def presented_token(request: web.Request) -> str | None:
    """The bearer token of the Authorization header, else the `token` query parameter."""
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query_token(request.rel_url.raw_query_string)


def query_token(raw_query: str) -> str | None:
    """The first `token=` of the undecoded query: the key spelled literally, so `tok%65n=` is
    no token parameter (nor logged as one); the value is decoded as browsers encode it."""
    for part in raw_query.split("&"):
        key, sep, value = part.partition("=")
        if key == "token" and sep:
            return unquote_plus(value) or None
    return None


def protected_mode_problem(
    host: str, enabled: bool, *, has_tokens: bool, in_stack: bool
) -> str | None:
    """Why this server must not start (Redis-style protected mode), or None."""
    if enabled and has_tokens and not in_stack:  # tokens nobody checks: open, wherever it binds
        return (
            "auth tokens are configured but `auth` is not in `middlewares:`, so no token would "
            "be checked. Add `auth` to the list, or set `auth.enabled: false` to run open"
        )
    if not enabled or is_loopback(host):
        return None
    if not has_tokens:
        return (
            f"refusing to listen on {host!r} with no auth token (protected mode): anyone who can "
            "reach this address could run the agent. Set MYAGENT_WS_TOKENS=<token> or auth.tokens "
            "in the config, listen on 127.0.0.1, or turn auth off explicitly with "
            "`auth.enabled: false` (MYAGENT_WS_AUTH__ENABLED=false)"
        )
    return None


class AuthMiddleware(Middleware):
    """Origin, then token: 403 for a foreign page, 401 + WWW-Authenticate, 429 for guessers.

    With no tokens (auth off, or loopback without tokens) every request is `anonymous`. /health
    and the console page are public; /metrics takes only `metrics_token` when one is set.
    Failures are counted per client address: past `failures_per_min` every attempt from that
    address gets 429 without its token being checked, so guessing runs at that rate at most.
    """

    name = "auth"

    def __init__(
        self,
        tokens: Sequence[Token],
        *,
        metrics_tokens: Sequence[Token] = (),
        origins: OriginPolicy,
        failures_per_min: int,
        store: LimitStore,
        access: AccessLog,
        metrics: StackMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.tokens = tuple(tokens)
        self.metrics_tokens = tuple(metrics_tokens)
        self.origins = origins
        self.failure_rate = failures_per_min / 60.0
        self.failure_burst = failures_per_min
        self.store = store
        self.access = access
        self.metrics = metrics
        self.clock = clock

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls(
            ctx.tokens,
            metrics_tokens=ctx.metrics_tokens,
            origins=ctx.browsers,
            failures_per_min=ctx.limits.auth_failures_per_min,
            store=ctx.store,
            access=ctx.access,
            metrics=ctx.metrics,
            clock=ctx.clock,
        )

    @staticmethod
    def public(request: web.Request, upgrade: bool) -> bool:
        if request.method == hdrs.METH_OPTIONS:
            return True  # a CORS preflight never carries credentials
        path = request.path
        if path.startswith(PUBLIC_PREFIXES):
            return True  # no socket is served there, whatever the headers say
        return not upgrade and path in PAGE_PATHS

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        upgrade = is_upgrade(request)
        if upgrade and not self.origins.allows(request):
            self.metrics.auth_failures_total.labels("origin").inc()
            return self.refuse(request, error_response(403, "forbidden", FOREIGN_ORIGIN), "origin")
        if self.public(request, upgrade):
            return await handler(request)
        # /metrics is a plain GET whatever its headers: an Upgrade header must not swap in the
        # client tokens (or none at all) for the metrics token
        tokens = self.metrics_tokens if request.path == METRICS_PATH else self.tokens
        if not tokens:
            request[identity_key] = ANONYMOUS
            return await handler(request)
        key = f"auth_failures:{request.get(client_ip_key) or request.remote}"
        rate, burst = self.failure_rate, self.failure_burst
        if (wait := await self.store.peek(key, rate, burst, self.clock())) is not None:
            return self.throttled(request, wait)
        presented = presented_token(request)
        token = match_token(presented, tokens) if presented is not None else None
        if token is None:
            reason = "missing" if presented is None else "invalid"
            self.metrics.auth_failures_total.labels(reason).inc()
            if (wait := await self.store.take(key, rate, burst, self.clock())) is not None:
                return self.throttled(request, wait)
            challenge = REALM if presented is None else f'{REALM}, error="invalid_token"'
            response = error_response(
                401,
                "unauthorized",
                MISSING if presented is None else INVALID,
                headers={hdrs.WWW_AUTHENTICATE: challenge},
            )
            return self.refuse(request, response, f"{reason}_token")
        request[identity_key] = token.name
        with bound_context(identity=token.name):
            return await handler(request)

    def throttled(self, request: web.Request, wait: float) -> web.Response:
        self.metrics.auth_failures_total.labels("throttled").inc()
        response = error_response(429, "rate_limited", THROTTLED, retry_after_s=wait)
        return self.refuse(request, response, "auth_throttled")

    def refuse(self, request: web.Request, response: web.Response, reason: str) -> web.Response:
        self.access.record(request, response.status, reason=reason)
        return response
