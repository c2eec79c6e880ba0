"""A tool written in a module with postponed annotations, its types defined here."""

from __future__ import annotations

from enum import StrEnum

from myagent.tool.base_tool import BaseTool, ToolResult


class Units(StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class ForecastTool(BaseTool):
    name = "forecast"
    description = "Forecast for a city."

    async def execute(self, city: str, days: int = 3, units: Units = Units.CELSIUS) -> ToolResult:
        return ToolResult(output=f"{city}: {days} days in {units.value}")
