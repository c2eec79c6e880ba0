"""The seed's weather agent on Google ADK + LiteLLM, against the benchmark's fake model.

The same tool (get_weather, the same output) and instruction as examples/weather_agent.py; the
model is `openai/<OPENAI_MODEL>` through LiteLLM at OPENAI_BASE_URL (bench.fake_model).
"""

import os

from google.adk.agents import LlmAgent
from google.adk.models.lite_llm import LiteLlm


def get_weather(city: str) -> str:
    """获取天气信息"""
    return f"{city}的天气：晴朗，25°C"


def send_email(to: str, subject: str, body: str) -> str:
    """发送邮件"""
    return f"Email sent to {to}"


root_agent = LlmAgent(
    name="weather",
    model=LiteLlm(
        model=f"openai/{os.environ.get('OPENAI_MODEL', 'bench')}",
        api_base=os.environ["OPENAI_BASE_URL"],
        api_key=os.environ["OPENAI_API_KEY"],
    ),
    instruction="你是一个天气助手，可以查询天气并发送邮件。",
    tools=[get_weather, send_email],
)
