"""The offline model drives the seed's weather agent with no account."""

import random
import re

from myagent import OfflineLLM, ScriptedLLM
from myagent.events import Answer, AnswerDelta, ToolFinished, ToolStarted
from myagent.offline import _CJK_STOP, _LATIN_STOP, _residue
from tests.myagent.helpers import collect, weather_agent


async def test_offline_weather_agent_calls_get_weather_and_answers() -> None:
    from examples.weather_agent import agent

    run = agent.model_copy(deep=True)
    events = await collect(run.stream_run("查询北京天气"))
    calls = [e for e in events if isinstance(e, ToolStarted)]
    results = [e for e in events if isinstance(e, ToolFinished)]
    assert [(c.tool, c.args) for c in calls] == [("get_weather", {"city": "北京"})]
    assert results[0].status == "success"
    assert isinstance(events[-1], Answer)
    assert "北京的天气：晴朗，25°C" in events[-1].content


async def test_offline_english_question_extracts_the_city() -> None:
    agent = weather_agent(OfflineLLM())
    events = await collect(agent.stream_run("What's the weather in Paris?"))
    calls = [(e.tool, e.args) for e in events if isinstance(e, ToolStarted)]
    assert calls == [("get_weather", {"city": "Paris"})]
    assert isinstance(events[-1], Answer) and "Paris的天气" in events[-1].content


async def test_offline_without_a_matching_tool_says_it_is_offline() -> None:
    agent = weather_agent(OfflineLLM())
    events = await collect(agent.stream_run("Tell me a joke"))
    assert not [e for e in events if isinstance(e, ToolStarted)]
    assert isinstance(events[-1], Answer)
    assert "offline model" in events[-1].content
    assert "get_weather" in events[-1].content


async def test_offline_answers_from_tool_results_despite_a_next_step_prompt() -> None:
    agent = weather_agent(OfflineLLM(), next_step_prompt="If you are done, answer the user.")
    events = await collect(agent.stream_run("查询北京天气"))
    assert len([e for e in events if isinstance(e, ToolStarted)]) == 1
    assert isinstance(events[-1], Answer)
    assert "北京的天气：晴朗，25°C" in events[-1].content


async def test_offline_second_question_gets_its_own_tool_call() -> None:
    agent = weather_agent(OfflineLLM())
    await agent.arun("查询北京天气")
    answer = await agent.arun("What's the weather in Paris?")
    assert "Paris的天气" in answer and "北京" not in answer


async def test_offline_model_is_shared_by_agent_copies() -> None:
    template = weather_agent(OfflineLLM())
    assert template.model_copy(deep=True).llm is template.llm
    assert isinstance(weather_agent(ScriptedLLM()).llm, ScriptedLLM)


async def test_offline_email_tool_gets_the_address_named_in_the_message() -> None:
    from examples.weather_agent import agent

    run = agent.model_copy(deep=True)
    events = await collect(run.stream_run("发送邮件 to bob.smith+news@mail.example.com, thanks"))
    [call] = [e for e in events if isinstance(e, ToolStarted)]
    assert call.tool == "send_email" and call.args["to"] == "bob.smith+news@mail.example.com"


async def test_offline_model_reads_a_bounded_prefix_and_streams_bounded_deltas() -> None:
    from myagent.offline import MAX_DELTAS, MAX_READ

    agent = weather_agent(OfflineLLM())
    events = await collect(agent.stream_run("天气 " + "x" * (4 * MAX_READ)))
    [call] = [e for e in events if isinstance(e, ToolStarted)]
    assert len(call.args["city"]) < MAX_READ
    assert len([e for e in events if isinstance(e, AnswerDelta)]) <= MAX_DELTAS


def test_residue_skips_only_stop_words_that_cannot_match() -> None:
    """_residue tests a CJK stop word with `in` before its re.sub: the same residue as running
    every substitution, on messages mixing CJK, the stop words and Latin case variants."""
    rng = random.Random(7)
    pieces = [*_CJK_STOP, "北京", "天气", "Weather", "WEATHER", "ſ", "K", "k", " ", "，", "?"]
    for _ in range(3000):
        message = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        used = set(rng.sample(["weather", "天气", "北京", "s", "查询"], rng.randint(0, 3)))
        text = message
        for word in sorted(used | set(_CJK_STOP), key=len, reverse=True):
            text = re.sub(re.escape(word), " ", text, flags=re.IGNORECASE)
        words = re.findall(r"[^\s,.;:!?，。？！、]+", text)
        expected = " ".join(w for w in words if w.lower() not in _LATIN_STOP).strip()
        assert _residue(message, used) == expected, message
