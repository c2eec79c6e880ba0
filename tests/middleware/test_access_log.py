"""The logging middleware: one http_request line per request, context on WS lines, metrics."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from aiohttp import web
from yarl import URL

from service.keys import metrics_key
from tests.middleware.conftest import (
    BEARER,
    TOKEN,
    make_settings,
    requests_logged,
    sample,
    service_app,
    stack_app,
)
from tests.service.conftest import create_session, receive_until


async def test_logging_one_line_per_request_with_the_route_never_the_query(
    aiohttp_client, logs
) -> None:
    client = await aiohttp_client(service_app(make_settings()))
    resp = await client.get("/", params={"token": TOKEN, "q": "secret-query"})  # the console
    [line] = requests_logged(logs)
    assert line["log_level"] == "info"
    assert {k: line[k] for k in ("method", "route", "path", "status", "client_ip")} == {
        "method": "GET",
        "route": "/",
        "path": "/",
        "status": 200,
        "client_ip": "127.0.0.1",
    }
    assert line["identity"] == "anonymous" and isinstance(line["duration_s"], float)
    assert line["request_id"] == resp.headers["X-Request-ID"]
    assert "secret-query" not in json.dumps(logs) and TOKEN not in json.dumps(logs)


@pytest.mark.parametrize(
    "path", ["/ws%3Ftoken%3D{}", "/ws;token={}", "/ws%3Faccess_token%3D{}&x=1", "/ws;token=a/{}"]
)
async def test_logging_a_token_misplaced_in_the_path_is_redacted(
    aiohttp_client, logs, path
) -> None:
    client = await aiohttp_client(service_app(make_settings()))
    assert (await client.get(URL(path.format(TOKEN), encoded=True))).status == 401
    [line] = requests_logged(logs)
    assert TOKEN not in json.dumps(logs) and "[redacted]" in line["path"]


async def test_logging_probes_are_debug_lines(aiohttp_client, logs) -> None:
    client = await aiohttp_client(service_app(make_settings()))
    await client.get("/health")
    [line] = requests_logged(logs)
    assert (line["route"], line["log_level"]) == ("/health", "debug")  # polled every few seconds


async def test_logging_websocket_lines_carry_request_id_and_identity(aiohttp_client, logs) -> None:
    client = await aiohttp_client(service_app(make_settings()))
    async with client.ws_connect("/ws", params={"token": TOKEN}) as ws:
        await ws.receive_json()
        await create_session(ws)
    [upgrade] = requests_logged(logs)
    assert (upgrade["route"], upgrade["status"], upgrade["identity"]) == ("/ws", 101, "alice")
    by_event = {entry["event"]: entry for entry in logs}
    for event in ("ws_connected", "session_created", "ws_closed"):
        assert by_event[event]["request_id"] == upgrade["request_id"], event
        assert by_event[event]["identity"] == "alice", event
        assert by_event[event]["connection_id"]
    assert logs.index(upgrade) < logs.index(by_event["ws_connected"])  # logged at the handshake


@pytest.mark.parametrize(
    "auth, identity",
    [({"tokens": [{"name": "alice", "token": TOKEN}]}, "alice"), ({"tokens": []}, "anonymous")],
)
async def test_logging_run_lines_carry_every_id_and_the_identity(
    aiohttp_client, logs, auth, identity
) -> None:
    client = await aiohttp_client(service_app(make_settings(auth=auth)))
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        session_id = await create_session(ws)
        message = {"event": "user.message", "session_id": session_id, "content": "Paris?"}
        await ws.send_json({**message, "request_id": "m-1"})
        await receive_until(ws, "agent.final_answer")
    [upgrade] = requests_logged(logs)
    [run] = [entry for entry in logs if entry["event"] == "run_finished"]
    assert run["message_request_id"] == "m-1"  # the client's id, beside the HTTP request's
    assert run["identity"] == upgrade["identity"] == identity
    assert run["request_id"] == upgrade["request_id"] and run["session_id"] == session_id
    assert run["connection_id"] and run["run_id"]
    assert (run["agent"], run["outcome"]) == ("weather", "finished")
    assert run["steps"] >= 1 and run["duration_s"] >= 0
    assert run["prompt_tokens"] > 0 and run["completion_tokens"] > 0  # from the model's usage


async def test_logging_frames_in_and_out_are_debug_lines(aiohttp_client, logs) -> None:
    client = await aiohttp_client(service_app(make_settings()))
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        await ws.send_json({"event": "user.ping"})
        await receive_until(ws, "system.pong")
    frames = [e for e in logs if e["event"] in {"frame_in", "frame_out"}]
    assert {(e["event"], e["frame"]) for e in frames} >= {
        ("frame_in", "user.ping"),
        ("frame_out", "system.pong"),
    }
    assert {e["log_level"] for e in frames} == {"debug"}


async def test_logging_frames_are_silent_at_info(aiohttp_client) -> None:
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as entries:
            client = await aiohttp_client(service_app(make_settings()))
            async with client.ws_connect("/ws", headers=BEARER) as ws:
                await ws.receive_json()
                await ws.send_json({"event": "user.ping"})
                await receive_until(ws, "system.pong")
    finally:
        structlog.configure(wrapper_class=old["wrapper_class"])
    assert [e["event"] for e in entries if e["event"].startswith("frame_")] == []
    assert requests_logged(entries)


async def test_logging_counts_requests_by_route_template_and_status(aiohttp_client) -> None:
    app = service_app(make_settings())
    client = await aiohttp_client(app)
    await client.get("/health")
    await client.get("/no/such/path")
    await client.get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    metrics = app[metrics_key]
    count = "myagent_ws_http_requests_total"
    assert sample(metrics, count, route="/health", status="200") == 1
    assert sample(metrics, count, route="unmatched", status="401") == 1  # auth runs first
    assert sample(metrics, count, route="/ws", status="401") == 1
    assert sample(metrics, "myagent_ws_http_request_duration_seconds_count", route="/ws") == 1


@pytest.mark.parametrize(
    "order",
    [["auth", "rate_limit", "logging"], ["logging", "auth", "rate_limit"], ["auth", "logging"]],
)
async def test_logging_a_rejection_is_one_line_whatever_the_order(
    aiohttp_client, logs, order
) -> None:
    app, _, metrics = stack_app(make_settings(middlewares=order))
    client = await aiohttp_client(app)
    assert (await client.get("/ws")).status == 401
    [line] = requests_logged(logs)
    assert (line["status"], line["reason"], line["route"]) == (401, "missing_token", "/ws")
    assert line["request_id"] and line["client_ip"] == "127.0.0.1"
    assert sample(metrics, "myagent_ws_http_requests_total", route="/ws", status="401") == 1


async def test_logging_a_failing_handler_is_logged_as_500(aiohttp_client, logs) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app, _, _ = stack_app(make_settings(middlewares=["logging"]))
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    assert (await client.get("/boom")).status == 500
    [line] = requests_logged(logs)
    assert (line["status"], line["route"], line["log_level"]) == (500, "/boom", "error")


async def test_logging_counts_health_probes_without_a_line_at_info(aiohttp_client) -> None:
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as entries:
            app = service_app(make_settings())  # built at info: probe lines are not wanted
            client = await aiohttp_client(app)
            for _ in range(3):
                assert (await client.get("/health")).status == 200
    finally:
        structlog.configure(wrapper_class=old["wrapper_class"])
    metrics = app[metrics_key]
    assert sample(metrics, "myagent_ws_http_requests_total", route="/health", status="200") == 3
    duration = "myagent_ws_http_request_duration_seconds_count"
    assert sample(metrics, duration, route="/health") == 3
    assert requests_logged(entries) == []
