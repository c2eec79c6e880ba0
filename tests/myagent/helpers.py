"""Tools and event helpers shared by the myagent tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from myagent import ChatModel, ToolCallAgent, create_react_agent
from myagent.errors import ToolError
from myagent.llm import closing_stream
from myagent.tool.base_tool import BaseTool, ToolResult

T = TypeVar("T")
E = TypeVar("E")
TIMEOUT_S = 5


# The seed's two tools, verbatim from examples/weather_agent.py.
class WeatherTool(BaseTool):
    name = "get_weather"
    description = "获取天气信息"
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "城市名称"}},
        "required": ["city"],
    }

    async def execute(self, city: str) -> ToolResult:
        return ToolResult(output=f"{city}的天气：晴朗，25°C", system="Weather query completed")


class EmailTool(BaseTool):
    name = "send_email"
    description = "发送邮件"

    async def execute(self, to: str, subject: str, body: str) -> ToolResult:
        return ToolResult(output=f"Email sent to {to}")


class BlockingTool(BaseTool):
    """Waits for an event that the test never sets: a tool to cancel."""

    name = "wait_forever"
    description = "Waits until released."

    async def execute(self) -> ToolResult:
        await asyncio.Event().wait()
        return ToolResult(output="released")  # pragma: no cover


class CrashingTool(BaseTool):
    """A tool with a bug."""

    name = "crash"
    description = "Always crashes."

    async def execute(self, what: str = "boom") -> ToolResult:
        raise RuntimeError(what)


class FailingTool(BaseTool):
    """A tool that fails the expected way."""

    name = "fail"
    description = "Always fails with a ToolError."

    async def execute(self) -> ToolResult:
        raise ToolError("no forecast for Atlantis; try Paris")


def weather_agent(llm: ChatModel, *extra: BaseTool, **kwargs: Any) -> ToolCallAgent:
    """The seed's weather agent, on this model, with extra tools."""
    return create_react_agent(
        name="weather-assistant",
        tools=[WeatherTool(), EmailTool(), *extra],
        system_prompt="你是一个天气助手，可以查询天气并发送邮件。",
        llm=llm,
        **kwargs,
    )


async def collect(stream: AsyncIterator[T]) -> list[T]:
    """Every item of a stream, which must end within TIMEOUT_S."""
    async with asyncio.timeout(TIMEOUT_S), closing_stream(stream):
        return [item async for item in stream]


async def pump(stream: AsyncIterator[T], queue: asyncio.Queue[T]) -> None:
    """Feed a stream into a queue, for a test that reads it from another task."""
    async for item in stream:
        await queue.put(item)


async def next_of(queue: asyncio.Queue[Any], kind: type[E]) -> E:
    """Read the queue until an item of this type arrives, within TIMEOUT_S."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            item = await queue.get()
            if isinstance(item, kind):
                return item
