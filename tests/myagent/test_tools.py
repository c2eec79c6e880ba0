"""Tools: the seed's two forms, schema inference, and ToolCollection's error handling."""

from typing import Any

import pytest

from myagent import BaseTool, ToolCollection, ToolResult
from myagent.errors import ToolError
from tests.myagent.future_tools import ForecastTool
from tests.myagent.helpers import CrashingTool, EmailTool, WeatherTool


class KeywordTool(BaseTool):
    name = "search"
    description = "Search things."

    async def execute(self, *, query: str, limit: int = 5, exact: bool = False) -> ToolResult:
        return ToolResult(output=f"{query}/{limit}/{exact}")


class ShadowingTool(BaseTool):
    """Argument names that are also attributes of pydantic's BaseModel."""

    name = "shadow"
    description = "Arguments named like BaseModel methods."

    async def execute(self, json: str, copy: bool = False, schema: str = "") -> ToolResult:
        return ToolResult(output=f"{json}/{copy}/{schema}")


class BuggyTool(BaseTool):
    name = "buggy"
    description = "Has a TypeError inside."

    async def execute(self, n: int) -> ToolResult:
        return ToolResult(output=len(n))  # type: ignore[arg-type]


class PlainValueTool(BaseTool):
    name = "plain"
    description = "Returns a plain value."

    async def execute(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs


def test_seed_weather_tool_keeps_its_class_attributes() -> None:
    tool = WeatherTool()
    assert (tool.name, tool.description) == ("get_weather", "获取天气信息")
    assert tool.to_param() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "获取天气信息",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "城市名称"}},
                "required": ["city"],
            },
        },
    }


def test_seed_email_tool_schema_is_inferred_from_execute() -> None:
    assert EmailTool().parameters is None
    assert EmailTool().schema == {
        "type": "object",
        "properties": {
            "to": {"type": "string"},
            "subject": {"type": "string"},
            "body": {"type": "string"},
        },
        "required": ["to", "subject", "body"],
    }


def test_inferred_schema_has_types_defaults_and_keyword_only_arguments() -> None:
    assert KeywordTool().schema == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 5},
            "exact": {"type": "boolean", "default": False},
        },
        "required": ["query"],
    }
    assert PlainValueTool().schema == {"type": "object", "properties": {}}


def test_inferred_schema_allows_argument_names_of_basemodel_attributes() -> None:
    schema = ShadowingTool().schema
    assert list(schema["properties"]) == ["json", "copy", "schema"]
    assert schema["required"] == ["json"]


def test_inferred_schema_resolves_postponed_annotations_in_the_tool_module() -> None:
    schema = ForecastTool().schema
    assert schema["required"] == ["city"]
    assert schema["properties"]["days"] == {"type": "integer", "default": 3}
    units = schema["properties"]["units"]
    assert units.get("enum") == ["celsius", "fahrenheit"] or "$ref" in units


def test_tool_collection_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="unique; repeated: get_weather"):
        ToolCollection(WeatherTool(), WeatherTool())


def test_tool_collection_add_refuses_a_taken_name_and_adds_nothing() -> None:
    tools = ToolCollection(WeatherTool())
    with pytest.raises(ValueError, match="repeated: get_weather"):
        tools.add(EmailTool(), WeatherTool())
    assert tools.names == ["get_weather"]
    tools.add(EmailTool())
    assert tools.names == ["get_weather", "send_email"]


async def test_tool_collection_runs_a_tool_and_wraps_plain_values() -> None:
    tools = ToolCollection(WeatherTool(), PlainValueTool(), ShadowingTool())
    assert await tools.execute("get_weather", {"city": "Oslo"}) == ToolResult(
        output="Oslo的天气：晴朗，25°C", system="Weather query completed"
    )
    assert await tools.execute("plain", {"a": 1}) == ToolResult(output={"a": 1})
    assert (await tools.execute("shadow", {"json": "j", "copy": True})).output == "j/True/"


async def test_tool_collection_reports_a_type_error_inside_a_tool_as_a_crash() -> None:
    tools = ToolCollection(BuggyTool())
    result = await tools.execute("buggy", {"n": 3})
    assert result.error is not None and result.error.startswith("buggy failed: TypeError")
    bad = await tools.execute("buggy", {"n": 3, "m": 4})
    assert bad.error is not None and bad.error.startswith("bad arguments for buggy")


async def test_tool_collection_turns_exceptions_into_error_results() -> None:
    tools = ToolCollection(CrashingTool())
    assert (await tools.execute("crash", {})).error == "crash failed: RuntimeError: boom"
    assert (await tools.execute("nope", {})).error == "unknown tool 'nope'; available: crash"


async def test_tool_error_message_is_the_result_error() -> None:
    class Picky(BaseTool):
        name = "picky"
        description = "Refuses."

        async def execute(self) -> ToolResult:
            raise ToolError("try again with a city")

    result = await ToolCollection(Picky()).execute("picky", {})
    assert (result.error, str(result)) == ("try again with a city", "Error: try again with a city")
