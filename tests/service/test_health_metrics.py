"""/health and /metrics content."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.keys import lifecycle_key
from tests.service.conftest import create_session, offline_weather, receive_until, settings
from tests.support.poll import until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_reports_counts_and_agents(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    body = await (await client.get("/health")).json()
    assert body["status"] == "healthy" and body["agents"] == ["weather"]
    assert (body["active_connections"], body["active_sessions"]) == (0, 0)
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    await create_session(ws)
    body = await (await client.get("/health")).json()
    assert (body["active_connections"], body["active_sessions"], body["running_sessions"]) == (
        1,
        1,
        0,
    )
    assert {"timestamp", "version", "uptime_s"} <= body.keys()
    await ws.close()


async def test_metrics_count_frames_runs_tools_and_llm(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    frames = await receive_until(ws)
    await ws.send_str("{")
    await ws.receive_json()
    resp = await client.get("/metrics")
    assert resp.status == 200
    m = samples(await resp.text())
    assert m[("myagent_ws_active_connections", ())] == 1
    assert m[("myagent_ws_runs_total", (("agent", "weather"), ("outcome", "finished")))] == 1
    assert m[("myagent_ws_tool_calls_total", (("status", "success"), ("tool", "get_weather")))] == 1
    assert m[("myagent_ws_frames_received_total", (("event", "user.message"),))] == 1
    sent = m[("myagent_ws_frames_sent_total", (("event", "agent.partial_answer"),))]
    assert sent == sum(f["event"] == "agent.partial_answer" for f in frames)
    assert m[("myagent_ws_errors_total", (("code", "invalid_json"),))] == 1
    assert m[("myagent_ws_llm_request_duration_seconds_count", (("model", "offline"),))] == 2
    assert m[("myagent_ws_llm_tokens_total", (("kind", "completion"), ("model", "offline")))] > 0
    assert m[("myagent_ws_run_duration_seconds_count", (("agent", "weather"),))] == 1
    await ws.close()


async def test_each_app_has_its_own_registry(aiohttp_client) -> None:
    first = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    second = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    ws = await first.ws_connect("/ws")
    await ws.receive_json()
    m = samples(await (await second.get("/metrics")).text())
    assert m[("myagent_ws_active_connections", ())] == 0
    await ws.close()


async def test_plain_get_on_ws_is_400_and_503_while_draining(aiohttp_client) -> None:
    app = create_app(settings(), {"weather": offline_weather})
    client = await aiohttp_client(app)
    resp = await client.get("/ws")
    assert resp.status == 400 and "WebSocket upgrade" in (await resp.json())["error"]
    app[lifecycle_key].drain(retry_after_s=1.0)  # as SIGTERM does
    assert (await client.get("/ws")).status == 503
    assert (await client.get("/health")).status == 503


async def test_console_files_are_revalidated_on_every_load(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    for path in ("/", "/static/app.js", "/static/style.css"):
        resp = await client.get(path)
        assert (resp.status, resp.headers.get("Cache-Control")) == (200, "no-cache"), path


async def test_health_counts_running_sessions_while_a_run_goes(aiohttp_client) -> None:
    import asyncio

    from myagent.llm import AssistantTurn
    from tests.service.conftest import GateTool, scripted

    gate_tool = GateTool(gate=asyncio.Event(), started=asyncio.Event(), cancelled=asyncio.Event())
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done", tools=[gate_tool])
    client = await aiohttp_client(create_app(settings(), {"weather": factory}))
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "go"})
    await receive_until(ws, "agent.tool_call")
    assert (await (await client.get("/health")).json())["running_sessions"] == 1
    gate_tool.gate.set()
    await receive_until(ws)
    assert (await (await client.get("/health")).json())["running_sessions"] == 0
    await ws.close()


async def test_static_serves_only_the_console_files(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    assert (await client.get("/static/markdown.js")).status == 200
    for path in ("/static/nope.js", "/static/..%2Fapp.py", "/static/%2e%2e/app.py"):
        assert (await client.get(path)).status == 404, path


async def test_client_chosen_close_codes_share_one_metric_label(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    for code in range(3000, 3030):  # 30 codes a client may choose (3000-4999)
        ws = await client.ws_connect("/ws")
        await ws.receive_json()
        await ws.close(code=code)

    async def closed() -> dict[str, float]:
        m = samples(await (await client.get("/metrics")).text())
        found = {
            dict(labels)["code"]: value
            for (name, labels), value in m.items()
            if name == "myagent_ws_connections_closed_total"
        }
        return found if sum(found.values()) >= 30 else {}

    assert await until(closed) == {"other": 30}  # one series, not 30


async def test_metrics_have_the_process_and_collector_figures_on_any_registry(
    aiohttp_client,
) -> None:
    """python_gc_* and process_* on the app's own registry; an app embedded on prometheus's
    default registry (which has them already) still starts."""
    from prometheus_client import REGISTRY

    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    m = samples(await (await client.get("/metrics")).text())
    assert m[("python_gc_collections_total", (("generation", "2"),))] >= 0
    assert m[("process_resident_memory_bytes", ())] > 0
    embedded = await aiohttp_client(
        create_app(settings(), {"weather": offline_weather}, registry=REGISTRY)
    )
    assert (await embedded.get("/metrics")).status == 200
