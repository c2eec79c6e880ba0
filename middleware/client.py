"""Who is asking: the real client address (trusted proxies only), a request id, the start time."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Handler

from middleware.base import Middleware, StackContext, bound_context
from middleware.keys import ANONYMOUS, client_ip_key, request_id_key, started_key

IPAddress = IPv4Address | IPv6Address
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@functools.lru_cache(maxsize=4096)  # per request, and the same few peers again and again
def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a header hop: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80` or `::1`."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def peer_text(peer: str) -> str:
    """The peer's address as logged and limited: `::ffff:1.2.3.4` is `1.2.3.4`."""
    return str(parse_ip(peer) or peer)


def check_proxies(entries: Iterable[str]) -> None:
    """ValueError naming the first entry of server.trusted_proxies that is no IP or CIDR."""
    for entry in entries:
        try:
            ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None


class ClientResolver:
    """The client's address: X-Forwarded-For / X-Real-IP are believed only from a trusted peer."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted = tuple(ip_network(entry, strict=False) for entry in trusted_proxies)

    def trusts(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(ip in network for network in self.trusted)

    def peer_is_trusted(self, request: web.Request) -> bool:
        return bool(self.trusted) and self.trusts(parse_ip(request.remote))

    def address(self, request: web.Request) -> str:
        """The rightmost X-Forwarded-For hop that is not one of our proxies, else the peer."""
        peer = request.remote or "unknown"
        if not self.peer_is_trusted(request):
            return peer_text(peer)
        forwarded = request.headers.getall("X-Forwarded-For", ())
        hops = [hop for value in forwarded for hop in value.split(",")]
        client: IPAddress | None = None
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                break  # garbage: believe nothing to its left
            client = ip
            if not self.trusts(ip):
                break
        if client is None:
            client = parse_ip(request.headers.get("X-Real-IP"))
        return str(client or parse_ip(peer) or peer)

    def host(self, request: web.Request) -> str:
        """The Host the browser used: X-Forwarded-Host from a trusted proxy, else Host."""
        if self.peer_is_trusted(request) and (forwarded := request.headers.get("X-Forwarded-Host")):
            return forwarded.split(",", 1)[0].strip()
        return request.host


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
