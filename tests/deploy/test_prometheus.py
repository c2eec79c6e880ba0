"""The repo's scrape config, run by a real Prometheus; promtool on a live scrape."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from service.app import create_app
from tests.service.conftest import create_session, offline_weather, receive_until, settings
from tests.support.system import free_port, prometheus_server, require

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "scrape-token-for-tests"


def repo_scrape_config(target: str, token_file: Path) -> str:
    """deploy/prometheus/prometheus.yml aimed at one loopback target, scraping every second."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and "dns_sd_configs" in job
    del job["dns_sd_configs"]  # Docker's DNS is not here: the one replica on loopback instead
    job["static_configs"] = [{"targets": [target]}]
    job["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}  # as documented
    return yaml.safe_dump(config)


async def converse(client: Any) -> None:
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    await receive_until(ws)
    await ws.close()


async def poll(url: str, ready: Any, within_s: float = 30) -> dict[str, Any]:
    """GET url until ready(json) is true (Prometheus works on its own clock)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(within_s):
        while True:
            response = await http.get(url)
            if response.status == 200 and ready(body := await response.json()):
                return dict(body)
            await asyncio.sleep(0.25)  # 503 while it starts, or not scraped yet


async def test_prometheus_scrapes_the_service_with_its_bearer_token(
    aiohttp_client, tmp_path: Path
) -> None:
    config = settings(auth={"enabled": True, "tokens": ["client"], "metrics_token": METRICS_TOKEN})
    client = await aiohttp_client(create_app(config, {"weather": offline_weather}))
    assert (await client.get("/metrics")).status == 401  # the token is needed
    ws_headers = {"Authorization": "Bearer client"}
    ws = await client.ws_connect("/ws", headers=ws_headers)
    await ws.receive_json()
    sid = await create_session(ws)
    await ws.send_json({"event": "user.message", "session_id": sid, "content": "查询北京天气"})
    await receive_until(ws)
    await ws.close()
    token_file = tmp_path / "metrics_token"
    token_file.write_text(METRICS_TOKEN)
    port = free_port()
    target = f"127.0.0.1:{client.server.port}"
    with prometheus_server(repo_scrape_config(target, token_file), tmp_path, port) as base:
        targets = await poll(f"{base}/api/v1/targets", lambda b: any(
            t["health"] == "up" for t in b["data"]["activeTargets"]))  # fmt: skip
        assert targets["data"]["activeTargets"][0]["labels"]["job"] == "myagent-ws"
        query = f"{base}/api/v1/query?query=myagent_ws_runs_total"
        result = await poll(query, lambda b: b["data"]["result"])
    (series,) = result["data"]["result"]
    assert series["metric"]["agent"] == "weather" and series["metric"]["outcome"] == "finished"
    assert float(series["value"][1]) == 1


async def test_promtool_accepts_a_live_scrape(aiohttp_client) -> None:
    promtool = require("promtool", "/usr/bin/promtool")
    client = await aiohttp_client(create_app(settings(), {"weather": offline_weather}))
    await converse(client)
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    await ws.send_str("{")  # an error counted too
    await ws.receive_json()
    scrape = await (await client.get("/metrics")).text()
    await ws.close()
    assert "myagent_ws_runs_total" in scrape and "myagent_ws_errors_total" in scrape
    process = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(scrape.encode()), 30)
    assert process.returncode == 0, (out + err).decode()
    assert out.strip() == b"" and err.strip() == b""  # no complaint at all
