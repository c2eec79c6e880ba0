"""The auth middleware alone: tokens, where they may be, public routes, guessing, protected mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.settings import Settings, load_settings
from tests.middleware.conftest import (
    BEARER,
    METRICS_TOKEN,
    OTHER,
    TOKEN,
    UPGRADE,
    Clock,
    make_settings,
    sample,
    service_app,
    sha256,
    stack_app,
)

ROOT = Path(__file__).resolve().parents[2]
AUTH_ONLY = {"middlewares": ["auth"]}


async def test_auth_missing_token_is_401_json_with_www_authenticate(aiohttp_client) -> None:
    app, _, metrics = stack_app(make_settings(**AUTH_ONLY))
    client = await aiohttp_client(app)
    resp = await client.get("/ws", headers=UPGRADE)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="myagent-ws"'
    body = await resp.json()
    assert body["code"] == "unauthorized" and "Authorization: Bearer" in body["error"]
    assert sample(metrics, "myagent_ws_auth_failures_total", reason="missing") == 1


async def test_auth_wrong_token_is_401_invalid_token(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    resp = await client.get("/ws", headers={**UPGRADE, "Authorization": "Bearer nope"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert "nope" not in await resp.text()


@pytest.mark.parametrize(
    "headers, query",
    [
        ({"Authorization": TOKEN}, {}),  # no scheme
        ({"Authorization": f"Basic {TOKEN}"}, {}),
        ({"X-Token": TOKEN}, {}),
        ({}, {"access_token": TOKEN}),
    ],
)
async def test_auth_token_in_the_wrong_place_is_401(aiohttp_client, headers, query) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    resp = await client.get("/ws", headers={**UPGRADE, **headers}, params=query)
    assert resp.status == 401


async def test_auth_header_and_query_token_give_the_tokens_name(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    by_header = await client.get("/ws", headers={"Authorization": f"bearer  {TOKEN} "})
    assert (await by_header.json())["identity"] == "alice"
    by_query = await client.get("/ws", params={"token": OTHER})
    assert (await by_query.json())["identity"] == "bob"
    async with client.ws_connect("/ws", params={"token": TOKEN}) as ws:
        await ws.send_str("hi")
        assert await ws.receive_str() == "hi"


async def test_auth_sha256_tokens_and_numbered_names(aiohttp_client) -> None:
    settings = make_settings(auth={"tokens": [sha256(TOKEN), OTHER]}, **AUTH_ONLY)
    client = await aiohttp_client(stack_app(settings)[0])
    resp = await client.get("/ws", headers=BEARER)
    assert (await resp.json())["identity"] == "token-1"
    resp = await client.get("/ws", headers={"Authorization": f"Bearer {OTHER}"})
    assert (await resp.json())["identity"] == "token-2"
    literal = await client.get("/ws", headers={"Authorization": f"Bearer {sha256(TOKEN)}"})
    assert literal.status == 401  # the hash is not the token


async def test_auth_tokens_from_env_are_accepted_and_numbered(aiohttp_client) -> None:
    settings = load_settings(env={"MYAGENT_WS_TOKENS": f"{TOKEN},{OTHER}"}, flags=AUTH_ONLY)
    client = await aiohttp_client(stack_app(settings)[0])
    resp = await client.get("/ws", headers={"Authorization": f"Bearer {OTHER}"})
    assert (await resp.json())["identity"] == "token-2"


def test_auth_bad_sha256_is_a_config_error_that_hides_the_value(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("auth:\n  tokens:\n    - name: ci\n      token: sha256:abc123\n")
    with pytest.raises(ConfigError, match=r"token 'ci': sha256: must be followed by") as caught:
        load_settings(config, env={})
    assert "abc123" not in str(caught.value)


async def test_auth_health_console_and_static_need_no_token(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    for path in ("/health", "/", "/static/app.js"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/", headers=UPGRADE)).status == 401  # the console's socket is not
    assert (await client.get("/ws")).status == 401  # other API routes are not


async def test_auth_metrics_is_open_without_a_metrics_token(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    assert (await client.get("/metrics")).status == 200


async def test_auth_metrics_takes_only_its_own_token(aiohttp_client) -> None:
    settings = make_settings(
        auth={"tokens": [TOKEN], "metrics_token": sha256(METRICS_TOKEN)}, **AUTH_ONLY
    )
    client = await aiohttp_client(stack_app(settings)[0])
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=BEARER)).status == 401
    scrape = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scrape.status == 200 and (await scrape.json())["identity"] == "metrics"
    assert (await client.get("/ws", params={"token": METRICS_TOKEN})).status == 401


@pytest.mark.parametrize("auth", [{"tokens": [TOKEN]}, {"enabled": False}, {"tokens": []}])
async def test_auth_metrics_token_holds_with_an_upgrade_header(aiohttp_client, auth) -> None:
    settings = make_settings(auth={**auth, "metrics_token": METRICS_TOKEN}, **AUTH_ONLY)
    client = await aiohttp_client(service_app(settings))
    for headers in ({}, BEARER):  # a client token is no metrics token, upgrade or not
        assert (await client.get("/metrics", headers={**UPGRADE, **headers})).status == 401


async def test_auth_health_needs_no_token_even_with_an_upgrade_header(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    for path in ("/health", "/static/app.js"):
        assert (await client.get(path, headers=UPGRADE)).status == 200, path


async def test_auth_metrics_token_on_the_real_endpoint(aiohttp_client) -> None:
    settings = make_settings(auth={"tokens": [TOKEN], "metrics_token": METRICS_TOKEN})
    client = await aiohttp_client(service_app(settings))
    assert (await client.get("/metrics")).status == 401
    scrape = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scrape.status == 200 and "myagent_ws_http_requests_total" in await scrape.text()


async def test_auth_repeated_failures_from_one_address_get_429(aiohttp_client) -> None:
    clock = Clock()
    settings = make_settings(rate_limit={"auth_failures_per_min": 3}, **AUTH_ONLY)
    app, _, metrics = stack_app(settings, clock)
    client = await aiohttp_client(app)
    wrong = {"Authorization": "Bearer guess"}
    statuses = [(await client.get("/ws", headers=wrong)).status for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    locked = await client.get("/ws", headers=BEARER)  # no oracle: a right guess is refused too
    assert locked.status == 429 and locked.headers["Retry-After"] == "20"
    assert (await locked.json())["retry_after_s"] == pytest.approx(20.0)
    assert sample(metrics, "myagent_ws_auth_failures_total", reason="throttled") == 3
    clock.advance(20)  # 3 per minute: one more attempt every 20 s
    assert (await client.get("/ws", headers=BEARER)).status == 200
    assert (await client.get("/ws", headers=wrong)).status == 401
    assert (await client.get("/ws", headers=wrong)).status == 429


async def test_auth_off_or_open_loopback_makes_everyone_anonymous(aiohttp_client) -> None:
    for auth in ({"enabled": False, "tokens": [TOKEN]}, {"tokens": []}):
        client = await aiohttp_client(stack_app(make_settings(auth=auth, **AUTH_ONLY))[0])
        resp = await client.get("/ws")
        assert resp.status == 200 and (await resp.json())["identity"] == "anonymous"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_protected_mode_refuses_a_public_host_without_tokens(host: str) -> None:
    settings = Settings.model_validate({"server": {"host": host}})
    with pytest.raises(ConfigError, match="protected mode") as caught:
        service_app(settings)
    assert "MYAGENT_WS_TOKENS" in str(caught.value)
    assert "auth.enabled: false" in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_protected_mode_lets_loopback_run_open(host: str) -> None:
    service_app(Settings.model_validate({"server": {"host": host}}))


def test_protected_mode_is_satisfied_by_tokens_or_explicitly_off() -> None:
    service_app(make_settings(server={"host": "0.0.0.0"}))
    auth_off = {"server": {"host": "0.0.0.0"}, "auth": {"enabled": False}}
    service_app(Settings.model_validate(auth_off))


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_protected_mode_refuses_tokens_that_no_middleware_checks(host: str) -> None:
    settings = Settings.model_validate(
        {
            "server": {"host": host},
            "auth": {"tokens": [TOKEN]},
            "middlewares": ["rate_limit", "logging"],
        }
    )
    with pytest.raises(ConfigError, match="`auth` is not in `middlewares:`"):
        service_app(settings)


def test_protected_mode_cli_prints_the_reason_and_exits_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "check", "examples/weather_agent.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MYAGENT_WS_HOST": "0.0.0.0"},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "protected mode" in out.stderr and "Traceback" not in out.stderr


async def test_auth_errors_never_echo_the_token(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(make_settings(**AUTH_ONLY))[0])
    for headers, params in (({"Authorization": f"Bearer {TOKEN}x"}, {}), ({}, {"token": "zz9"})):
        resp = await client.get("/ws", headers={**UPGRADE, **headers}, params=params)
        text = await resp.text()
        assert resp.status == 401 and TOKEN not in text and "zz9" not in text
        json.loads(text)
