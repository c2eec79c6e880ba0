"""Who is asking: the real client address, believing forwarded headers from trusted proxies only."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import web

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


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


def parse_network(value: object) -> object:
    """An entry of server.trusted_proxies as a network (a CIDR, or one address), for pydantic's
    IPvAnyNetwork; ValueError naming the entry if it is neither."""
    if not isinstance(value, str):
        return value
    try:
        return ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None


class ClientResolver:
    """The client's address: X-Forwarded-For / X-Real-IP are believed only from a trusted peer."""

    def __init__(self, trusted_proxies: Iterable[str | Network] = ()) -> None:
        self.trusted = tuple(  # the settings hold networks; a test may name an address
            ip_network(entry, strict=False) if isinstance(entry, str) else entry
            for entry in trusted_proxies
        )

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
