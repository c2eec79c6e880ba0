"""Origin on the WebSocket upgrade (403) and CORS on the HTTP routes."""

from __future__ import annotations

import pytest

from middleware.origin import canonical, parse_origin
from service.errors import ConfigError
from service.settings import load_settings
from tests.middleware.conftest import BEARER, UPGRADE, make_settings, sample, stack_app

AUTH_ONLY = {"middlewares": ["auth"]}


async def get_ws(client, origin: str | None, **headers: str):
    """An upgrade request (without a handshake key: the small app answers 200 if let through)."""
    extra = {"Origin": origin} if origin is not None else {}
    return await client.get("/ws", headers={**UPGRADE, **BEARER, **extra, **headers})


async def test_origin_foreign_page_is_403_before_the_token_is_checked(aiohttp_client) -> None:
    app, _, metrics = stack_app(make_settings(**AUTH_ONLY))
    client = await aiohttp_client(app)
    resp = await get_ws(client, "https://evil.example")
    assert resp.status == 403
    body = await resp.json()
    assert body["code"] == "forbidden" and "cors.allowed_origins" in body["error"]
    assert sample(metrics, "myagent_ws_auth_failures_total", reason="origin") == 1
    no_token = await client.get("/ws", headers={**UPGRADE, "Origin": "https://evil.example"})
    assert no_token.status == 403


async def test_origin_empty_list_means_same_origin_only_on_a_public_bind(aiohttp_client) -> None:
    public = make_settings(server={"host": "0.0.0.0"}, **AUTH_ONLY)  # loopback: test_browser_rules
    client = await aiohttp_client(stack_app(public)[0])
    own = f"http://{client.host}:{client.port}"
    assert (await get_ws(client, own)).status == 200
    assert (await get_ws(client, f"http://{client.host}:1")).status == 403  # another port
    assert (await get_ws(client, f"https://{client.host}:{client.port}")).status == 200
    assert (await get_ws(client, "null")).status == 403  # sandboxed frames, file:// pages


async def test_origin_without_header_is_judged_by_the_token_alone(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    assert (await get_ws(client, None)).status == 200
    resp = await client.get("/ws", headers=UPGRADE)
    assert resp.status == 401


async def test_origin_listed_or_star_is_allowed(aiohttp_client) -> None:
    listed = make_settings(cors={"allowed_origins": ["https://App.Example.com/"]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(listed)[0])
    assert (await get_ws(client, "https://app.example.com")).status == 200
    assert (await get_ws(client, "https://app.example.com:443")).status == 200
    assert (await get_ws(client, "http://app.example.com")).status == 403
    anyone = make_settings(cors={"allowed_origins": ["*"]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(anyone)[0])
    assert (await get_ws(client, "https://evil.example")).status == 200


async def test_origin_behind_a_trusted_proxy_uses_x_forwarded_host(aiohttp_client) -> None:
    settings = make_settings(server={"trusted_proxies": ["127.0.0.0/8"]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(settings)[0])
    proxied = {"X-Forwarded-Host": "chat.example.com"}
    assert (await get_ws(client, "https://chat.example.com", **proxied)).status == 200
    assert (await get_ws(client, "https://chat.example.com")).status == 403


async def test_cors_headers_for_a_listed_origin_and_preflight_without_token(
    aiohttp_client,
) -> None:
    settings = make_settings(cors={"allowed_origins": ["https://app.example.com"]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(settings)[0])
    resp = await client.get("/health", headers={"Origin": "https://app.example.com"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await client.options(
        "/metrics",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status == 200
    assert "AUTHORIZATION" in preflight.headers["Access-Control-Allow-Headers"].upper()
    refused = await client.get("/ws", headers={"Origin": "https://app.example.com"})
    assert refused.status == 401  # CORS lets the page read the 401, not skip it
    assert refused.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_origin_entries_are_validated_and_canonical() -> None:
    assert parse_origin("HTTP://Example.com:80/") == ("http", "example.com", 80)
    assert canonical("https://a.example:443") == "https://a.example"
    assert canonical("http://[::1]:8080") == "http://[::1]:8080"
    with pytest.raises(ConfigError, match=r"cors\.allowed_origins.*not an origin"):
        load_settings(env={"MYAGENT_WS_ALLOWED_ORIGINS": "https://ok.example,example.com/path"})
