"""The client address: forwarded headers are believed only from trusted proxies."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from middleware.client import ClientResolver, parse_ip
from service.errors import ConfigError
from service.settings import load_settings
from tests.middleware.conftest import make_settings, stack_app


def request_from(peer: str, *headers: tuple[str, str]) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 50000) if name == "peername" else default
    )
    return make_mocked_request("GET", "/ws", headers=CIMultiDict(headers), transport=transport)


def test_client_address_ignores_forwarded_headers_from_an_untrusted_peer() -> None:
    resolver = ClientResolver(["10.0.0.0/8"])
    request = request_from("203.0.113.9", ("X-Forwarded-For", "1.1.1.1"), ("X-Real-IP", "2.2.2.2"))
    assert resolver.address(request) == "203.0.113.9"
    assert ClientResolver().address(request_from("::ffff:198.51.100.7")) == "198.51.100.7"


@pytest.mark.parametrize(
    "headers, client",
    [
        ([("X-Forwarded-For", "198.51.100.7")], "198.51.100.7"),
        ([("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.2")], "198.51.100.7"),  # rightmost
        ([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")], "198.51.100.7"),
        ([("X-Forwarded-For", "198.51.100.7:4711")], "198.51.100.7"),
        ([("X-Forwarded-For", "6.6.6.6, junk, 10.0.0.3")], "10.0.0.3"),  # stop at garbage
        ([("X-Real-IP", "198.51.100.8")], "198.51.100.8"),
        ([("X-Forwarded-For", "[2001:db8::1]:443")], "2001:db8::1"),
        ([], "10.0.0.1"),
    ],
)
def test_client_address_from_a_trusted_proxy(headers: Any, client: str) -> None:
    resolver = ClientResolver(["10.0.0.0/8", "192.0.2.1"])
    assert resolver.address(request_from("10.0.0.1", *headers)) == client


def test_client_parse_ip_accepts_only_addresses() -> None:
    assert str(parse_ip(" 192.0.2.1 ")) == "192.0.2.1"
    assert parse_ip("unknown") is None and parse_ip("") is None and parse_ip(None) is None


def test_client_trusted_proxies_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies.*'10\.0\.0\.0/33'"):
        load_settings(flags={"server": {"trusted_proxies": ["10.0.0.0/33"]}}, env={})


async def test_client_address_reaches_the_handler(aiohttp_client) -> None:
    trusted = make_settings(server={"trusted_proxies": ["127.0.0.1"]}, middlewares=["auth"])
    client = await aiohttp_client(stack_app(trusted)[0])
    resp = await client.get("/static/app.js", headers={"X-Forwarded-For": "198.51.100.7"})
    assert (await resp.json())["client_ip"] == "198.51.100.7"
    assert resp.headers["X-Request-ID"]
    untrusted = await aiohttp_client(stack_app(make_settings(middlewares=["auth"]))[0])
    resp = await untrusted.get("/static/app.js", headers={"X-Forwarded-For": "198.51.100.7"})
    assert (await resp.json())["client_ip"] == "127.0.0.1"
