"""docker-compose.yml run for real: `docker-compose up -d --scale agent=3`, used through nginx.

One stack for the module (it takes ~25 s to come up); the last test takes it down with `down -v`
and checks that nothing is left (the fixture does the same, whatever happened).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.deploy.stack import (
    PROJECT_LABEL,
    Stack,
    ask,
    compose_stack,
    connect,
    create_session,
    receive_until,
)
from tests.support.docker import FIGURES, DockerError, StackImages, docker

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]  # a cold build takes minutes
REPLICAS = 3


@pytest.fixture(scope="module")
def stack(images: StackImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with compose_stack(images, tmp_path_factory.mktemp("compose"), scale=REPLICAS) as up:
        FIGURES["compose_up_to_healthy_s"] = up.figures["up_to_healthy_s"]
        yield up


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body = await response.text()
        return response.status, json.loads(body) if body.startswith("{") else body


async def test_stack_health_through_nginx_is_healthy_on_redis(stack: Stack) -> None:
    status, health = await get(f"{stack.http_url}/health")
    assert status == 200, health
    assert health["status"] == "healthy"
    assert health["state"] == {"backend": "redis", "status": "ok"}


async def test_stack_conversation_with_a_token_gets_the_final_answer(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, stack)
        events = await ask(ws, await create_session(ws), "查询北京天气")
        await ws.close()
    assert [e["event"] for e in events if e["event"] == "agent.tool_call"] == ["agent.tool_call"]
    assert events[-1]["event"] == "agent.final_answer"
    assert events[-1]["content"] == "北京的天气：晴朗，25°C"


async def test_stack_refuses_a_missing_token_with_401_through_nginx(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(stack.ws_url)
        assert refused.value.status == 401
        async with http.get(stack.ws_url.replace("ws://", "http://")) as response:
            assert response.status == 401
            assert (await response.json())["error"]


async def test_stack_prometheus_scrapes_three_healthy_replicas(stack: Stack) -> None:
    replicas = stack.containers("agent")
    assert len(replicas) == REPLICAS
    address = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    addresses = {f"{docker('inspect', '--format', address, c)}:8080" for c in replicas}
    url = f"http://127.0.0.1:{stack.prometheus_port}/api/v1/targets"
    async with asyncio.timeout(60):  # the first scrape comes within scrape_interval (15 s)
        while True:
            status, body = await get(url)
            targets = body["data"]["activeTargets"] if status == 200 else []
            up = {t["labels"]["instance"] for t in targets if t["health"] == "up"}
            if up == addresses:
                break
            await asyncio.sleep(1)  # Prometheus scrapes on its own clock
    assert {t["labels"]["job"] for t in targets} == {"myagent-ws"}
    assert len(targets) == REPLICAS


async def test_stack_metrics_answers_404_through_nginx(stack: Stack) -> None:
    status, _ = await get(f"{stack.http_url}/metrics")
    assert status == 404


def redis_keys(stack: Stack, pattern: str, within_s: float = 30) -> set[str]:
    """The keys Redis holds that match, once it answers (it loads its append-only file first)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return set(stack.compose("exec", "-T", "redis", "redis-cli", "--scan", "--pattern",
                                     pattern, timeout=30).split())  # fmt: skip
        except DockerError:
            assert time.monotonic() < deadline, f"Redis does not answer after {within_s} s"
            time.sleep(0.5)  # starting, or loading its data


async def test_stack_redis_restart_keeps_every_session(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, stack)
        session_id = await create_session(ws)
        events = await ask(ws, session_id, "查询北京天气")
        await ws.close()
        seqs = [e["seq"] for e in events if "seq" in e]
        held = await asyncio.to_thread(redis_keys, stack, f"*{session_id}*")
        assert held, "the session left nothing in Redis"
        await asyncio.to_thread(stack.compose, "restart", "redis")
        # read before any replica writes again: what is there came from the append-only file
        assert held <= await asyncio.to_thread(redis_keys, stack, f"*{session_id}*")
        await asyncio.to_thread(stack.wait_healthy)
        ws = await connect(http, stack)  # any replica
        await ws.send_json({"event": "user.resume_session", "session_id": session_id,
                            "last_seq": 0})  # fmt: skip
        replayed = await receive_until(ws, {"agent.session_resumed", "agent.error"})
        assert replayed[-1]["event"] == "agent.session_resumed", replayed[-1]
        assert [e["seq"] for e in replayed[:-1]] == [1, *seqs]
        again = await ask(ws, session_id, "查询北京天气")
        await ws.close()
    assert again[-1]["event"] == "agent.final_answer", again[-1]
    assert again[-1]["seq"] > seqs[-1]


def test_stack_down_v_leaves_no_container_network_or_volume(stack: Stack) -> None:
    volumes = {
        mount["Name"]
        for container in stack.containers(every=True)
        for mount in json.loads(docker("inspect", "--format", "{{json .Mounts}}", container))
        if mount["Type"] == "volume"
    }
    assert len(volumes) >= 2  # redis-data, and the prometheus image's anonymous volume
    stack.down()
    label = f"label={PROJECT_LABEL}={stack.project}"
    assert stack.containers(every=True) == []
    assert docker("network", "ls", "--quiet", "--filter", label) == ""
    assert docker("volume", "ls", "--quiet", "--filter", label) == ""
    left = set(docker("volume", "ls", "--quiet").split()) & volumes
    assert not left, left
    assert not [n for n in docker("network", "ls", "--format", "{{.Name}}").split()
                if n.startswith(stack.project)]  # fmt: skip
