"""The offline model drives the seed's weather agent with no account."""

from myagent.events import Answer, ToolFinished, ToolStarted


async def test_offline_weather_agent_calls_get_weather_and_answers() -> None:
    from examples.weather_agent import agent

    run = agent.model_copy(deep=True)
    events = [event async for event in run.stream_run("查询北京天气")]
    calls = [e for e in events if isinstance(e, ToolStarted)]
    results = [e for e in events if isinstance(e, ToolFinished)]
    assert [(c.tool, c.args) for c in calls] == [("get_weather", {"city": "北京"})]
    assert results[0].status == "success"
    assert isinstance(events[-1], Answer)
    assert "北京的天气：晴朗，25°C" in events[-1].content
