"""The image, built from the Dockerfile and run for real.

`docker run` with no command serves the example agent, or the agent.py mounted at /app/agent.py,
and says what to mount when there is neither; its HEALTHCHECK follows the port it listens on.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.deploy.stack import ask, create_session
from tests.support.docker import FIGURES, StackImages, docker, image_size_mb, run
from tests.support.system import free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]  # a cold build takes minutes
TOKEN = "image-test-token"
HEALTHCHECK = ["python", "-I", "/opt/myagent-ws/healthcheck.py"]
MOUNTED_AGENT = """
from myagent import create_react_agent
from myagent.tool.base_tool import BaseTool, ToolResult


class WeatherTool(BaseTool):
    name = "get_weather"
    description = "获取天气信息"
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }

    async def execute(self, city: str) -> ToolResult:
        return ToolResult(output=f"{city}: cloudy, 18°C (the mounted agent.py)")


agent = create_react_agent(name="mounted-agent", tools=[WeatherTool()])
"""


@contextmanager
def container(image: str, *options: str, command: tuple[str, ...] = ()) -> Iterator[str]:
    """A detached container of the image; removed (forcibly) afterwards."""
    name = f"myagent-ws-test-{secrets.token_hex(4)}"
    docker("run", "--detach", "--name", name, *options, image, *command)
    try:
        yield name
    finally:
        run("docker", "rm", "--force", "--volumes", name, check=False)


async def wait_for_health(port: int, within_s: float = 30) -> dict[str, object]:
    """/health's body once it answers 200 (the server starts in its own time)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(within_s):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200:
                        return dict(await response.json())
            except aiohttp.ClientError:
                pass  # not listening yet, or the proxy's port is up before the server
            await asyncio.sleep(0.2)


async def weather_answer(port: int) -> str:
    """The final answer to 查询北京天气 in a new session, over a real WebSocket."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://127.0.0.1:{port}/ws", headers=headers) as ws,
    ):
        assert (await ws.receive_json())["event"] == "system.connected"
        events = await ask(ws, await create_session(ws), "查询北京天气")
    assert events[-1]["event"] == "agent.final_answer", events
    return str(events[-1]["content"])


def health_status(name: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", name)


def test_image_builds_non_root_with_a_healthcheck_and_the_entrypoint(images: StackImages) -> None:
    config = json.loads(
        docker("image", "inspect", "--format", "{{json .Config}}", images.agent.tag)
    )
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["/opt/myagent-ws/entrypoint.sh"] and not config.get("Cmd")
    assert config_healthcheck(images.agent.tag) == HEALTHCHECK
    assert "8080/tcp" in config["ExposedPorts"]
    FIGURES["agent_image_mb"] = image_size_mb(images.agent.tag)


async def test_docker_run_with_no_command_serves_the_example_agent(images: StackImages) -> None:
    port = free_port()
    with container(images.agent.tag, "-p", f"127.0.0.1:{port}:8080", "-e",
                   f"MYAGENT_WS_TOKENS={TOKEN}"):  # fmt: skip
        started = time.monotonic()
        health = await wait_for_health(port)
        FIGURES["docker_run_to_health_s"] = time.monotonic() - started
        assert health["agents"] == ["weather-assistant"]
        assert await weather_answer(port) == "北京的天气：晴朗，25°C"


async def test_docker_run_with_a_mounted_agent_py_serves_that_file(
    images: StackImages, tmp_path: Path
) -> None:
    agent = tmp_path / "my_agent.py"
    agent.write_text(MOUNTED_AGENT, encoding="utf-8")
    agent.chmod(0o644)
    port = free_port()
    with container(images.agent.tag, "-p", f"127.0.0.1:{port}:8080", "-e",
                   f"MYAGENT_WS_TOKENS={TOKEN}", "-v", f"{agent}:/app/agent.py:ro"):  # fmt: skip
        assert (await wait_for_health(port))["agents"] == ["mounted-agent"]
        assert await weather_answer(port) == "北京: cloudy, 18°C (the mounted agent.py)"


@pytest.mark.parametrize(("mount_point", "reason"), [
    ("/app/agent.py", "/app/agent.py is a directory"),  # -v of a host path that does not exist
    ("/app/examples", "no agent to serve"),
])  # fmt: skip
def test_docker_run_without_an_agent_exits_2_saying_what_to_mount(
    images: StackImages, tmp_path: Path, mount_point: str, reason: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run("docker", "run", "--rm", "-e", f"MYAGENT_WS_TOKENS={TOKEN}", "-v",
               f"{empty}:{mount_point}", images.agent.tag, check=False, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert reason in done.stderr
    assert '-v "$PWD/my_agent.py:/app/agent.py"' in done.stderr, done.stderr


def test_healthcheck_follows_the_port_the_server_listens_on(images: StackImages) -> None:
    with container(images.agent.tag, "-e", f"MYAGENT_WS_TOKENS={TOKEN}", "-e",
                   "MYAGENT_WS_PORT=9000", "--health-interval=1s") as name:  # fmt: skip
        deadline = time.monotonic() + 30
        while (status := health_status(name)) != "healthy":
            assert status == "starting", docker("inspect", "--format", "{{json .State}}", name)
            assert time.monotonic() < deadline, f"still {status} after 30 s"
            time.sleep(0.2)  # Docker probes once a second here
        assert '"url": "ws://0.0.0.0:9000/ws"' in run("docker", "logs", name).stdout


def test_healthcheck_fails_when_no_server_listens(images: StackImages) -> None:
    with container(images.agent.tag, "--entrypoint", "sleep", command=("60",)) as name:
        probe = config_healthcheck(images.agent.tag)
        done = run("docker", "exec", name, *probe, check=False)
    assert done.returncode == 1
    assert "no server listens" in done.stderr


def config_healthcheck(image: str) -> list[str]:
    """The image's HEALTHCHECK command, as Docker runs it."""
    template = "{{json .Config.Healthcheck.Test}}"
    test = json.loads(docker("image", "inspect", "--format", template, image))
    assert test[0] == "CMD", test
    return list(test[1:])
