"""The rate_limit middleware: HTTP 429, connection caps, frame limits; then on the real service."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType

from middleware.rate_limit import RateLimitMiddleware
from service.keys import metrics_key
from tests.middleware.conftest import (
    BEARER,
    OTHER,
    Clock,
    layer,
    make_settings,
    sample,
    service_app,
    stack_app,
    until,
)
from tests.service.conftest import create_session, receive_until

STACK = ["auth", "rate_limit"]
BOB = {"Authorization": f"Bearer {OTHER}"}


def limited(**limits: Any) -> Any:
    return make_settings(rate_limit=limits, middlewares=STACK)


async def test_rate_limit_http_over_the_burst_is_429_with_retry_after(aiohttp_client) -> None:
    clock = Clock()
    app, _, metrics = stack_app(limited(http_per_s=0.5, http_burst=2), clock)
    client = await aiohttp_client(app)
    assert [(await client.get("/ws", headers=BEARER)).status for _ in range(2)] == [200, 200]
    resp = await client.get("/ws", headers=BEARER)
    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    body = await resp.json()
    assert body["code"] == "rate_limited" and body["retry_after_s"] == pytest.approx(2.0)
    assert sample(metrics, "myagent_ws_rate_limited_total", level="http") == 1
    clock.advance(1.9)
    assert (await client.get("/ws", headers=BEARER)).status == 429
    clock.advance(0.1)
    assert (await client.get("/ws", headers=BEARER)).status == 200


async def test_rate_limit_is_per_identity(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(limited(http_per_s=0.1, http_burst=1))[0])
    assert (await client.get("/ws", headers=BEARER)).status == 200
    assert (await client.get("/ws", headers=BEARER)).status == 429
    assert (await client.get("/ws", headers=BOB)).status == 200


async def test_rate_limit_anonymous_clients_are_told_apart_by_address(aiohttp_client) -> None:
    settings = make_settings(
        auth={"enabled": False},
        server={"trusted_proxies": ["127.0.0.1"]},
        rate_limit={"http_per_s": 0.1, "http_burst": 1},
        middlewares=STACK,
    )
    client = await aiohttp_client(stack_app(settings)[0])
    first, second = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    assert (await client.get("/ws", headers=first)).status == 200
    assert (await client.get("/ws", headers=first)).status == 429
    assert (await client.get("/ws", headers=second)).status == 200


async def test_rate_limit_never_throttles_health_or_metrics(aiohttp_client) -> None:
    client = await aiohttp_client(stack_app(limited(http_per_s=0.1, http_burst=1))[0])
    for _ in range(5):
        assert (await client.get("/health")).status == 200
        assert (await client.get("/metrics")).status == 200


async def test_rate_limit_caps_open_sockets_per_identity(aiohttp_client) -> None:
    app, stack, metrics = stack_app(limited(connections_per_identity=2))
    limiter = layer(stack, "rate_limit")
    assert isinstance(limiter, RateLimitMiddleware)
    client = await aiohttp_client(app)
    first = await client.ws_connect("/ws", headers=BEARER)
    second = await client.ws_connect("/ws", headers=BEARER)
    over = await client.get(
        "/ws", headers={**BEARER, "Connection": "Upgrade", "Upgrade": "websocket"}
    )
    assert over.status == 429 and over.headers["Retry-After"] == "5"
    assert "too many open connections" in (await over.json())["error"]
    assert sample(metrics, "myagent_ws_rate_limited_total", level="connection") == 1
    bob = await client.ws_connect("/ws", headers=BOB)  # another identity is not capped
    await first.close()
    await until(lambda: limiter.open.get("alice") == 1)
    third = await client.ws_connect("/ws", headers=BEARER)
    for ws in (second, third, bob):
        await ws.close()
    await until(lambda: limiter.total == 0 and not limiter.open)  # nothing left behind


async def test_rate_limit_caps_open_sockets_per_server_with_503(aiohttp_client) -> None:
    app, _, metrics = stack_app(limited(max_connections=1))
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws", headers=BEARER):
        over = await client.get(
            "/ws", headers={**BOB, "Connection": "Upgrade", "Upgrade": "websocket"}
        )
        assert over.status == 503 and over.headers["Retry-After"] == "5"
        assert (await over.json())["code"] == "over_capacity"
    assert sample(metrics, "myagent_ws_rate_limited_total", level="server") == 1


async def test_rate_limit_frames_messages_have_their_own_allowance(aiohttp_client) -> None:
    clock = Clock()
    settings = limited(messages_per_s=1, messages_burst=2, frames_per_s=1, frames_burst=3)
    app, _, metrics = stack_app(settings, clock)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        for event in ["user.message"] * 3 + ["user.ping"] * 4:
            await ws.send_str(event)
        answers = [await ws.receive() for _ in range(7)]
        texts = [a.data if a.type is WSMsgType.TEXT else None for a in answers]
        assert texts[:2] == ["user.message", "user.message"]
        assert '"rate_limited"' in texts[2] and '"retry_after_s": 1.0' in texts[2]
        assert texts[3:6] == ["user.ping"] * 3
        assert '"rate_limited"' in texts[6]
        clock.advance(1)
        await ws.send_str("user.message")
        assert await ws.receive_str() == "user.message"
    assert sample(metrics, "myagent_ws_rate_limited_total", level="frame") == 2


async def test_rate_limit_closes_1008_after_violations_in_a_row(aiohttp_client) -> None:
    clock = Clock()
    settings = limited(frames_per_s=1, frames_burst=1, violations_before_close=3)
    client = await aiohttp_client(stack_app(settings, clock)[0])
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.send_str("user.ping")
        assert await ws.receive_str() == "user.ping"
        for _ in range(2):  # two refusals, then an accepted frame: the count starts again
            await ws.send_str("user.ping")
            assert "rate_limited" in await ws.receive_str()
        clock.advance(1)
        await ws.send_str("user.ping")
        assert await ws.receive_str() == "user.ping"
        for _ in range(3):
            await ws.send_str("user.ping")
            assert "rate_limited" in await ws.receive_str()
        closing = await ws.receive()
        assert closing.type is WSMsgType.CLOSE and closing.data == 1008


# --- on the real service (offline agent, real clock, limits that cannot refill in a test) ----


async def test_rate_limit_message_flood_is_refused_then_closed_1008(aiohttp_client) -> None:
    settings = make_settings(
        rate_limit={"messages_per_s": 0.01, "messages_burst": 2, "violations_before_close": 4}
    )
    app = service_app(settings)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        session_id = await create_session(ws)
        message = {"event": "user.message", "session_id": session_id, "content": "查询北京天气"}
        await ws.send_json({**message, "request_id": "first"})  # runs
        await ws.send_json({**message, "request_id": "second"})  # session_busy: a run is going
        refused = []
        for n in range(3):  # each refusal answered, the socket still open
            await ws.send_json({**message, "request_id": f"flood-{n}"})
            answer = await receive_until(ws, "agent.error")
            while answer[-1]["request_id"] != f"flood-{n}":
                answer = await receive_until(ws, "agent.error")
            refused.append(answer[-1])
        await ws.send_json({**message, "request_id": "flood-3"})  # the 4th in a row: closed
        async with asyncio.timeout(5):
            closing = await ws.receive()
            while closing.type is WSMsgType.TEXT:
                closing = await ws.receive()
    assert [f["code"] for f in refused] == ["rate_limited"] * 3
    assert all(f["retry_after_s"] > 0 and "user.message" in f["error"] for f in refused)
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1008)
    metrics = app[metrics_key]
    assert sample(metrics, "myagent_ws_rate_limited_total", level="frame") == 4


@pytest.mark.parametrize("junk", ["{", "[1,2]", '{"event": "user.hack"}', b"\x00\x01"])
async def test_rate_limit_a_flood_of_junk_frames_is_limited_then_closed_1008(
    aiohttp_client, junk: str | bytes
) -> None:
    settings = make_settings(
        rate_limit={"frames_per_s": 0.01, "frames_burst": 3, "violations_before_close": 5}
    )
    client = await aiohttp_client(service_app(settings))
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        for _ in range(20):
            await (ws.send_bytes(junk) if isinstance(junk, bytes) else ws.send_str(junk))
        codes = []
        async with asyncio.timeout(5):
            while (msg := await ws.receive()).type is WSMsgType.TEXT:
                codes.append(msg.json()["code"])
    assert codes[3:] == ["rate_limited"] * 5 and "rate_limited" not in codes[:3]
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1008)


async def test_rate_limited_client_keeps_its_other_sessions(aiohttp_client) -> None:
    settings = make_settings(rate_limit={"messages_per_s": 0.01, "messages_burst": 1})
    client = await aiohttp_client(service_app(settings))
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        first, second = await create_session(ws), await create_session(ws)
        await ws.send_json(
            {"event": "user.message", "session_id": first, "content": "查询上海天气"}
        )
        await ws.send_json(
            {"event": "user.message", "session_id": second, "content": "查询北京天气"}
        )
        frames = await receive_until(ws, "agent.final_answer")
        refusals = [f for f in frames if f["event"] == "agent.error"]
        assert frames[-1]["session_id"] == first and "上海的天气" in frames[-1]["content"]
        assert [f["code"] for f in refusals] == ["rate_limited"]
        await ws.send_json({"event": "user.resume_session", "session_id": second, "last_seq": 0})
        resumed = await receive_until(ws, "agent.session_resumed")
        assert resumed[-1]["session_id"] == second
        await ws.send_json({"event": "user.ping"})
        assert (await receive_until(ws, "system.pong"))[-1]["event"] == "system.pong"


async def test_rate_limit_one_clients_flood_does_not_slow_anothers_run(aiohttp_client) -> None:
    settings = make_settings(rate_limit={"frames_per_s": 1, "frames_burst": 5})
    client = await aiohttp_client(service_app(settings))
    async with (
        client.ws_connect("/ws", headers=BEARER) as flooder,
        client.ws_connect("/ws", headers=BOB) as runner,
    ):
        await flooder.receive_json()
        await runner.receive_json()
        session_id = await create_session(runner)
        await runner.send_json(
            {"event": "user.message", "session_id": session_id, "content": "查询上海天气"}
        )
        for _ in range(300):
            await flooder.send_json({"event": "user.ping"})
        frames = await receive_until(runner, "agent.final_answer")
        assert not [f for f in frames if f["event"] == "agent.error"]
        assert "上海的天气" in frames[-1]["content"]
        codes = [f.get("code") for f in await receive_until(flooder, "agent.error")]
        assert codes[-1] == "rate_limited"
