"""The per-request values the stack sets: who is asking, from where, under which request id."""

from __future__ import annotations

from aiohttp import web

ANONYMOUS = "anonymous"  # the identity when auth is off or open (loopback without tokens)

identity_key = web.RequestKey("identity", str)  # the token's name; set by the auth middleware
client_ip_key = web.RequestKey("client_ip", str)  # the real client address (trusted proxies)
request_id_key = web.RequestKey("request_id", str)
started_key = web.RequestKey("started", float)  # clock reading when the request came in
logged_key = web.RequestKey("access_logged", bool)  # its http_request line is written


def subject(request: web.Request) -> str:
    """Whom the request's limits and sessions belong to: the token's name, else its address.

    With auth off or open every client is `anonymous` in the logs, and `ip:<address>` here (the
    address through trusted proxies), so one client can neither spend another's allowance nor
    name its sessions.
    """
    identity: str = request.get(identity_key, ANONYMOUS)
    if identity != ANONYMOUS:
        return identity
    return f"ip:{request.get(client_ip_key) or request.remote}"
