"""Browser origins: the WebSocket upgrade's Origin check, and CORS (aiohttp-cors) on HTTP routes.

`cors.allowed_origins` means: the server's own origin (Origin host:port = the Host header) is
always allowed, so the console it serves works; listed origins are allowed too; `*` allows any.
An empty list is therefore "same origin only". A request without Origin is not from a browser
page and is judged by its token alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import web

from middleware.client import ClientResolver

ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
ALLOW_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
EXPOSE_HEADERS = ("Retry-After", "WWW-Authenticate", "X-Request-ID")

Origin = tuple[str, str, int]  # scheme, host, port


def parse_origin(text: str) -> Origin:
    """`https://app.example.com[:port]` as (scheme, host, port); ValueError if it is not one."""
    problem = ValueError(f"{text[:100]!r} is not an origin like https://app.example.com or *")
    try:
        url = urlsplit(text.strip().rstrip("/"))
        port = url.port
    except ValueError:
        raise problem from None
    scheme = url.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url.hostname or url.path or url.query or url.username:
        raise problem
    return scheme, url.hostname, port or DEFAULT_PORTS[scheme]


def canonical(text: str) -> str:
    """The spelling browsers send: scheme://host, with the port only when it is not the default."""
    scheme, host, port = parse_origin(text)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def check_origins(entries: Iterable[str]) -> None:
    for entry in entries:
        if entry.strip() != ANY:
            parse_origin(entry)


class OriginPolicy:
    """Which browser pages may open the WebSocket (cross-site WebSocket hijacking defence)."""

    def __init__(self, allowed: Iterable[str], clients: ClientResolver) -> None:
        entries = [entry.strip() for entry in allowed]
        self.any = ANY in entries
        self.allowed = {parse_origin(entry) for entry in entries if entry != ANY}
        self.clients = clients

    def allows(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or self.any:
            return True
        try:
            parsed = parse_origin(origin)
        except ValueError:  # "null" (sandboxed frames, file://) and garbage
            return False
        return parsed in self.allowed or self.same_origin(parsed, request)

    def same_origin(self, origin: Origin, request: web.Request) -> bool:
        scheme, host, port = origin
        try:
            own = urlsplit(f"{scheme}://{self.clients.host(request)}")
            own_port = own.port or DEFAULT_PORTS[scheme]
        except ValueError:
            return False
        return own.hostname == host and own_port == port


def setup_cors(app: web.Application, allowed: Iterable[str]) -> None:
    """CORS headers on every route for the listed origins (none needed for same-origin pages)."""
    entries = [entry.strip() for entry in allowed]
    if not entries:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        allow_methods=("GET", "HEAD", "OPTIONS"),
    )
    origins = [ANY] if ANY in entries else [canonical(entry) for entry in entries]
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    for route in list(app.router.routes()):
        cors.add(route)
