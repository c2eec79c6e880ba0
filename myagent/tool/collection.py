"""ToolCollection: the tools of an agent, by name, and the one place tools are run."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from myagent.errors import ToolError
from myagent.tool.arguments import argument_problem
from myagent.tool.base_tool import BaseTool, ToolResult

log = structlog.get_logger("myagent.tool")


class ToolCollection(BaseModel):
    """Named tools; `execute` turns every failure into a ToolResult with an error."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tools: list[BaseTool] = Field(default_factory=list)

    def __init__(self, *tools: BaseTool, **data: Any) -> None:
        if tools:
            data["tools"] = [*data.get("tools", []), *tools]
        super().__init__(**data)

    @model_validator(mode="after")
    def _unique_names(self) -> ToolCollection:
        check_unique(self.tools)
        return self

    def __iter__(self) -> Iterator[BaseTool]:  # type: ignore[override]
        return iter(self.tools)

    def __len__(self) -> int:
        return len(self.tools)

    def get(self, name: str) -> BaseTool | None:
        return next((tool for tool in self.tools if tool.name == name), None)

    def add(self, *tools: BaseTool) -> None:
        """Add tools; raise ValueError (and add none) if a name is taken."""
        check_unique([*self.tools, *tools])
        self.tools = [*self.tools, *tools]

    @property
    def names(self) -> list[str]:
        return [tool.name for tool in self.tools]

    def to_params(self) -> list[dict[str, Any]]:
        return [tool.to_param() for tool in self.tools]

    async def execute(self, name: str, args: dict[str, Any]) -> ToolResult:
        """Run one tool; unknown names, bad arguments and exceptions become errors."""
        tool = self.get(name)
        if tool is None:
            return ToolResult(error=f"unknown tool {name!r}; available: {', '.join(self.names)}")
        problem = argument_problem(name, tool.schema, args)
        if problem is not None:
            return ToolResult(error=problem)
        try:  # check the arguments first, so a TypeError inside the tool counts as a crash
            execute_signature(type(tool)).bind(tool, **args)
        except TypeError as exc:
            return ToolResult(error=f"bad arguments for {name}: {exc}")
        try:
            result = await tool.execute(**args)
        except asyncio.CancelledError:
            raise
        except ToolError as exc:
            return ToolResult(error=str(exc))
        except Exception as exc:  # the tool boundary: a bug in a tool must not end the run
            log.exception("tool_crashed", tool=name)
            return ToolResult(error=f"{name} failed: {type(exc).__name__}: {exc}")
        return result if isinstance(result, ToolResult) else ToolResult(output=result)


@functools.cache  # a tool class's signature, once: this is checked on every call
def execute_signature(cls: type[BaseTool]) -> inspect.Signature:
    return inspect.signature(cls.execute)


def check_unique(tools: Iterable[BaseTool]) -> None:
    names = [tool.name for tool in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"tool names must be unique; repeated: {', '.join(duplicates)}")


def as_collection(tools: ToolCollection | Iterable[BaseTool] | None) -> ToolCollection:
    if isinstance(tools, ToolCollection):
        return tools
    return ToolCollection(*(tools or ()))
