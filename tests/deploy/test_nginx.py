"""The repo's nginx config, run by a real nginx, in front of the service on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import structlog
import websockets

from service.app import create_app
from tests.service.conftest import offline_weather, settings
from tests.support.system import free_port, nginx_proxy

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "deploy-test-token"


def repo_nginx_conf(service_port: int, listen_port: int) -> str:
    """deploy/nginx/nginx.conf with only the upstream and the listen address changed."""
    text = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    assert "server agent:8080;" in text and "listen 80;" in text
    return text.replace("server agent:8080;", f"server 127.0.0.1:{service_port};").replace(
        "listen 80;", f"listen 127.0.0.1:{listen_port};"
    )


async def test_seed_client_flow_through_nginx_sees_the_real_client_address(
    aiohttp_server, tmp_path: Path
) -> None:
    config = settings(auth={"tokens": [TOKEN]}, server={"trusted_proxies": ["127.0.0.1"]})
    server = await aiohttp_server(create_app(config, {"weather": offline_weather}))
    port = free_port()
    with nginx_proxy(repo_nginx_conf(server.port, port), tmp_path, port), \
            structlog.testing.capture_logs() as logs:  # fmt: skip
        async with aiohttp.ClientSession() as http:
            health = await http.get(f"http://127.0.0.1:{port}/health")
            assert health.status == 200 and (await health.json())["status"] == "healthy"
            refused = await http.get(f"http://127.0.0.1:{port}/ws")
            assert refused.status == 401  # the token check happens behind nginx too
            hidden = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert hidden.status == 404  # Prometheus scrapes the replicas, not the edge
            assert (await http.get(f"http://127.0.0.1:{server.port}/metrics")).status == 200
        headers = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "6.6.6.6"}
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers=headers, local_addr=("127.0.0.2", 0)
        ) as ws:
            assert json.loads(await ws.recv())["event"] == "system.connected"
            await ws.send(json.dumps({"event": "user.create_session"}))
            session_id = json.loads(await ws.recv())["session_id"]
            await ws.send(json.dumps({"event": "user.message", "session_id": session_id,
                                      "content": "查询北京天气"}))  # fmt: skip
            events = []
            while not events or events[-1]["event"] != "agent.final_answer":
                events.append(json.loads(await ws.recv()))
    calls = [e["metadata"]["tool"] for e in events if e["event"] == "agent.tool_call"]
    assert calls == ["get_weather"] and "北京的天气" in events[-1]["content"]
    upgrades = [e for e in logs if e.get("event") == "http_request" and e.get("route") == "/ws"
                and e.get("status") == 101]  # fmt: skip
    assert [e["client_ip"] for e in upgrades] == ["127.0.0.2"]  # not nginx's, not the spoof
