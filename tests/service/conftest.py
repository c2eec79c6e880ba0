"""Fixtures for the service: apps built on ScriptedLLM / offline agents, real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse

from myagent import ScriptedLLM, create_react_agent
from myagent.agent.base import BaseAgent
from myagent.llm import AssistantTurn
from myagent.offline import OfflineLLM
from myagent.tool.base_tool import BaseTool, ToolResult
from service.settings import Settings
from tests.support.openai_server import OpenAIServer

UNLIMITED = {  # limits far above what a test sends; tests of the limiter set their own
    "http_per_s": 10_000,
    "http_burst": 10_000,
    "messages_per_s": 10_000,
    "messages_burst": 10_000,
    "frames_per_s": 10_000,
    "frames_burst": 10_000,
}
TERMINAL = {"agent.final_answer", "agent.error", "agent.interrupted"}


class WeatherTool(BaseTool):
    name = "get_weather"
    description = "获取天气信息"
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }

    async def execute(self, city: str) -> ToolResult:
        return ToolResult(output=f"{city}的天气：晴朗，25°C")


class GateTool(BaseTool):
    """A tool that waits until the test opens its gate; records whether it was cancelled."""

    name = "slow_lookup"
    description = "slow lookup"
    gate: Any = None
    started: Any = None
    cancelled: Any = None

    async def execute(self, query: str = "") -> ToolResult:
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return ToolResult(output=f"looked up {query}")


def offline_weather() -> BaseAgent:
    return create_react_agent("weather", tools=[WeatherTool()], llm=OfflineLLM())


def scripted(
    *turns: AssistantTurn | str | Exception, tools: list[BaseTool] | None = None
) -> Callable[[], BaseAgent]:
    """A factory of agents that each play this script."""

    def factory() -> BaseAgent:
        return create_react_agent(
            "scripted", tools=tools or [WeatherTool()], llm=ScriptedLLM(*turns)
        )

    return factory


@pytest.fixture
async def model() -> AsyncIterator[OpenAIServer]:
    """The OpenAI-compatible test server, as the model of agents built on LLM."""
    async with OpenAIServer() as server:
        yield server


@pytest.fixture
def gate_tool() -> GateTool:
    return GateTool(gate=asyncio.Event(), started=asyncio.Event(), cancelled=asyncio.Event())


def settings(**sections: Any) -> Settings:
    """Settings with auth and limits off (their tests build their own), and these sections."""
    data: dict[str, Any] = {"auth": {"enabled": False}, "rate_limit": UNLIMITED}
    data.update(sections)
    return Settings.model_validate(data)


async def receive_until(
    ws: ClientWebSocketResponse, *events: str, within_s: float = 5
) -> list[dict[str, Any]]:
    """Frames up to and including the first whose event is one of `events`."""
    wanted = set(events) or TERMINAL
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(within_s):
        while True:
            frame = await ws.receive_json()
            out.append(frame)
            if frame["event"] in wanted:
                return out


async def create_session(ws: ClientWebSocketResponse, **fields: Any) -> str:
    await ws.send_json({"event": "user.create_session", **fields})
    frames = await receive_until(ws, "agent.session_created", "agent.error")
    assert frames[-1]["event"] == "agent.session_created", frames[-1]
    return str(frames[-1]["session_id"])


async def open_ws(client: Any, path: str = "/ws", **kwargs: Any) -> ClientWebSocketResponse:
    """A socket of the test client, past its system.connected frame."""
    ws: ClientWebSocketResponse = await client.ws_connect(path, **kwargs)
    hello = await ws.receive_json()
    assert hello["event"] == "system.connected"
    return ws
