"""The seed's sample agent: a weather tool and an email tool.

Serve it with `myagent-ws server examples/weather_agent.py`.
"""

from myagent import create_react_agent
from myagent.tool.base_tool import BaseTool, ToolResult


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


agent = create_react_agent(
    name="weather-assistant",
    tools=[WeatherTool(), EmailTool()],
    system_prompt="你是一个天气助手，可以查询天气并发送邮件。",
    max_steps=5,
)
