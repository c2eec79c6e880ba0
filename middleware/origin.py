"""Browser rules: the Host check, the WebSocket upgrade's Origin check, and CORS (aiohttp-cors).

Which pages may open the WebSocket depends on who can reach the server. Bound to loopback (and
not reached through a trusted proxy), only this machine can: pages on any loopback origin
(`http://localhost:*`, `http://127.0.0.1:*`, `http://[::1]:*`) are allowed, so a dev server's
page works, and the `Host` must name a loopback address or one of `server.allowed_hosts`, else
421: a DNS-rebinding page (Host `rebind.evil.example`) never gets an answer. Bound to a public
address, or behind a proxy: the server's own origin (Origin host:port = the Host) and the listed
`cors.allowed_origins`; `*` allows any; the Host is checked only if `allowed_hosts` is set. A
request without Origin is not from a browser page and is judged by its token alone; `Origin:
null` (file:// pages, sandboxed frames) is refused unless `*` is set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import web

from middleware.client import ClientResolver

ANY = "*"
HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
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


def spelled(origin: Origin) -> str:
    """The spelling browsers send: scheme://host, with the port only when it is not the default."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def canonical(text: str) -> str:
    return spelled(parse_origin(text))


@dataclass(frozen=True)
class AllowedOrigins:
    """`cors.allowed_origins`, parsed once: `*` (any), and the listed origins in their order."""

    any: bool = False
    listed: tuple[Origin, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowedOrigins:
        """ValueError naming the first entry that is neither an origin nor `*`."""
        texts = [entry.strip() for entry in entries]
        listed = [parse_origin(text) for text in texts if text != ANY]
        return cls(any=ANY in texts, listed=tuple(dict.fromkeys(listed)))

    def cors_origins(self) -> list[str]:
        """The origins CORS headers are sent for: `*`, the listed ones, or none."""
        return [ANY] if self.any else [spelled(origin) for origin in self.listed]


def is_loopback(host: str) -> bool:
    """`localhost`, or an address of 127.0.0.0/8 or ::1 (brackets allowed)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(text: str) -> str | None:
    """The name of a Host header (`Name:8080`, `[::1]:80`) in lower case, without its port."""
    try:
        name = urlsplit(f"//{text.strip()}").hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def check_hosts(entries: Iterable[str]) -> None:
    """ValueError for an entry of server.allowed_hosts that is no bare host name or address."""
    for entry in entries:
        text = entry.strip()
        if text == ANY or HOST.fullmatch(text):
            continue
        try:
            ip_address(text.strip("[]"))
        except ValueError:
            raise ValueError(
                f"{entry[:100]!r} is not a host name like agent.example.com (no scheme, port "
                "or path)"
            ) from None


def listed_host(entry: str) -> str:
    return entry.strip().strip("[]").lower().rstrip(".")


class OriginPolicy:
    """Which browser pages may reach the server (DNS rebinding, cross-site WebSocket hijacking).

    `local_bind`: the server listens on loopback; requests not from a trusted proxy then follow
    the loopback rules (module docstring).
    """

    def __init__(
        self,
        allowed: AllowedOrigins,
        clients: ClientResolver,
        *,
        local_bind: bool = False,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.any = allowed.any
        self.allowed = frozenset(allowed.listed)
        self.clients = clients
        self.local_bind = local_bind
        hosts = [entry.strip() for entry in allowed_hosts]
        self.any_host = ANY in hosts
        self.hosts = frozenset(listed_host(entry) for entry in hosts if entry != ANY)

    def local(self, request: web.Request) -> bool:
        """Only this machine can send this request: a loopback bind, not through a proxy."""
        return self.local_bind and not self.clients.peer_is_trusted(request)

    def host_allowed(self, request: web.Request) -> bool:
        """The Host names this server: loopback or listed (on a loopback bind, or if listed)."""
        if self.any_host or not (self.hosts or self.local(request)):
            return True
        name = host_name(self.clients.host(request))
        return name is not None and (name in self.hosts or is_loopback(name))

    def allows(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or self.any:
            return True
        try:
            parsed = parse_origin(origin)
        except ValueError:  # "null" (sandboxed frames, file://) and garbage
            return False
        if parsed in self.allowed or self.same_origin(parsed, request):
            return True
        return self.local(request) and is_loopback(parsed[1])  # a dev server's page

    def same_origin(self, origin: Origin, request: web.Request) -> bool:
        scheme, host, port = origin
        try:
            own = urlsplit(f"{scheme}://{self.clients.host(request)}")
            own_port = own.port or DEFAULT_PORTS[scheme]
        except ValueError:
            return False
        return own.hostname == host and own_port == port


def setup_cors(app: web.Application, allowed: AllowedOrigins) -> None:
    """CORS headers on every route for the listed origins (none needed for same-origin pages)."""
    origins = allowed.cors_origins()
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        allow_methods=("GET", "HEAD", "OPTIONS"),
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    for route in list(app.router.routes()):
        cors.add(route)
