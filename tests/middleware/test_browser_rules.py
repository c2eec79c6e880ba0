"""Browser rules: loopback origins on a loopback bind, the Host check against DNS rebinding."""

from __future__ import annotations

import pytest

from service.errors import ConfigError
from service.settings import load_settings
from tests.middleware.conftest import BEARER, UPGRADE, make_settings, stack_app

AUTH_ONLY = {"middlewares": ["auth"]}
PUBLIC = {"host": "0.0.0.0"}  # protected mode: make_settings gives it tokens
REBIND = "rebind.evil.example"


async def upgrade(client, origin: str | None = None, host: str | None = None, **headers: str):
    """An upgrade request (no handshake key: the small app answers 200 if it is let through)."""
    extra = {"Origin": origin} if origin is not None else {}
    if host is not None:
        extra["Host"] = host
    return await client.get("/ws", headers={**UPGRADE, **BEARER, **extra, **headers})


@pytest.mark.parametrize(
    "origin", ["http://localhost:5173", "http://127.0.0.1:5173", "http://[::1]:5173"]
)
async def test_browser_loopback_bind_accepts_pages_on_any_loopback_origin(
    aiohttp_client, origin: str
) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    assert (await upgrade(client, origin)).status == 200


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://localhost.evil.example"]
)
async def test_browser_loopback_bind_refuses_other_origins(aiohttp_client, origin: str) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    assert (await upgrade(client, origin)).status == 403


async def test_browser_loopback_bind_refuses_a_rebound_host_with_421(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    rebound = f"{REBIND}:{client.port}"
    resp = await upgrade(client, f"http://{rebound}", host=rebound)  # "same origin" as its Host
    assert resp.status == 421 and (await resp.json())["code"] == "misdirected"
    assert (await client.get("/", headers={"Host": rebound})).status == 421  # plain GETs too
    assert (await client.get("/health", headers={"Host": rebound})).status == 200  # probes
    for host in (f"localhost:{client.port}", f"127.0.0.2:{client.port}", f"[::1]:{client.port}"):
        assert (await upgrade(client, host=host)).status == 200


async def test_browser_allowed_hosts_are_accepted_on_a_loopback_bind(aiohttp_client) -> None:
    settings = make_settings(server={"allowed_hosts": ["Agent.Test"]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(settings)[0])
    own = f"agent.test:{client.port}"
    assert (await upgrade(client, f"http://{own}", host=own)).status == 200
    assert (await upgrade(client, host=f"{REBIND}:{client.port}")).status == 421


async def test_browser_public_bind_allows_its_own_and_listed_origins_only(aiohttp_client) -> None:
    settings = make_settings(
        server=PUBLIC, cors={"allowed_origins": ["https://app.example.com"]}, **AUTH_ONLY
    )
    client = await aiohttp_client(stack_app(settings)[0])
    own = f"agent.example.com:{client.port}"
    assert (await upgrade(client, f"http://{own}", host=own)).status == 200  # any Host
    assert (await upgrade(client, "https://app.example.com")).status == 200
    assert (await upgrade(client, "http://localhost:5173")).status == 403
    assert (await upgrade(client, "null")).status == 403


async def test_browser_public_bind_checks_host_only_when_hosts_are_listed(aiohttp_client) -> None:
    settings = make_settings(server={**PUBLIC, "allowed_hosts": ["agent.example.com"]})
    client = await aiohttp_client(stack_app(settings)[0])
    assert (await upgrade(client, host="agent.example.com")).status == 200
    assert (await upgrade(client, host=f"{REBIND}:{client.port}")).status == 421


async def test_browser_requests_from_a_trusted_proxy_follow_the_public_rules(
    aiohttp_client,
) -> None:
    settings = make_settings(server={"trusted_proxies": ["127.0.0.1"]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(settings)[0])
    forwarded = {"X-Forwarded-Host": "agent.example.com"}
    origin = "https://agent.example.com"
    assert (await upgrade(client, origin, host="agent.example.com", **forwarded)).status == 200
    assert (await upgrade(client, "http://localhost:5173", **forwarded)).status == 403


def test_browser_allowed_hosts_entries_are_validated() -> None:
    env = {"MYAGENT_WS_ALLOWED_HOSTS": "a.example, b.example"}
    assert load_settings(env=env).server.allowed_hosts == ["a.example", "b.example"]
    for bad in (["https://a.example"], ["a.example/path"], [""]):
        with pytest.raises(ConfigError, match="allowed_hosts"):
            load_settings(flags={"server": {"allowed_hosts": bad}}, env={})
