"""LLM over the real openai SDK, against the fake OpenAI-compatible server."""

import asyncio
import copy
import json
from typing import Any

import pytest

from myagent import LLM, AssistantTurn, Message
from myagent.errors import LLMError, LLMRateLimitError
from myagent.schema import Usage
from myagent.wire import ToolCallParts
from tests.myagent.helpers import EmailTool, WeatherTool, collect, weather_agent
from tests.support.openai_server import (
    Call,
    HTTPError,
    Malformed,
    OpenAIServer,
    Stall,
    Text,
    ToolCalls,
)
from tests.support.openai_server import Usage as ServerUsage

HI = [Message.user("hi")]


def endpoint_llm(server: OpenAIServer, **kwargs: float) -> LLM:
    options: dict[str, float] = {"max_retries": 0, "timeout_s": 5, **kwargs}
    return LLM(
        model="test-model",
        api_key="test",
        base_url=server.base_url,
        max_retries=int(options["max_retries"]),
        timeout_s=options["timeout_s"],
    )


async def test_llm_stream_yields_text_deltas_then_one_turn(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(Text("Hel", "lo ", "world"))
    items = await collect(llm.stream(HI, []))
    assert items[:-1] == ["Hel", "lo ", "world"]
    assert items[-1] == AssistantTurn(
        content="Hello world", usage=Usage(prompt_tokens=11, completion_tokens=7)
    )
    (request,) = openai_server.requests
    assert request.headers["Authorization"] == "Bearer test"
    assert request.body["model"] == "test-model"
    assert request.body["stream"] is True
    assert request.body["messages"] == [{"role": "user", "content": "hi"}]
    assert "tools" not in request.body


async def test_llm_stream_assembles_tool_calls_from_split_deltas(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(
        ToolCalls(
            Call("get_weather", '{"ci', 'ty": "Pa', 'ris"}', id="call_a"),
            Call("send_email", '{"to": "a@b.c", ', '"subject": "s", ', '"body": "b"}', id="call_b"),
        )
    )
    tools = [WeatherTool().to_param(), EmailTool().to_param()]
    items = await collect(llm.stream(HI, tools))
    assert items == [items[-1]]  # no text deltas
    turn = items[-1]
    assert isinstance(turn, AssistantTurn)
    assert turn.content is None
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in turn.tool_calls] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "send_email", {"to": "a@b.c", "subject": "s", "body": "b"}),
    ]
    assert openai_server.requests[0].body["tools"] == tools


async def test_llm_usage_comes_from_the_final_chunk_and_adds_up(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(Text("a", usage=ServerUsage(3, 2)), Text("b", usage=ServerUsage(5, 1)))
    first = (await collect(llm.stream(HI, [])))[-1]
    second = (await collect(llm.stream(HI, [])))[-1]
    assert isinstance(first, AssistantTurn) and isinstance(second, AssistantTurn)
    assert (first.usage, second.usage) == (
        Usage(prompt_tokens=3, completion_tokens=2),
        Usage(prompt_tokens=5, completion_tokens=1),
    )
    assert llm.total_usage == Usage(prompt_tokens=8, completion_tokens=3)
    assert openai_server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_llm_retries_a_429_then_succeeds(openai_server: OpenAIServer) -> None:
    openai_server.script(HTTPError.rate_limited(retry_after_ms=10), Text("ok"))
    llm = endpoint_llm(openai_server, max_retries=2)
    items = await collect(llm.stream(HI, []))
    await llm.aclose()
    assert items == [
        "ok",
        AssistantTurn(content="ok", usage=Usage(prompt_tokens=11, completion_tokens=7)),
    ]
    assert len(openai_server.requests) == 2


async def test_llm_persistent_429_raises_rate_limit_error_with_retry_after(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script(HTTPError.rate_limited(), HTTPError.rate_limited())
    llm = endpoint_llm(openai_server, max_retries=1)
    with pytest.raises(LLMRateLimitError, match="429") as caught:
        await collect(llm.stream(HI, []))
    await llm.aclose()
    assert caught.value.retry_after_s == pytest.approx(0.01)  # retry-after-ms wins, as in the SDK
    assert caught.value.code == "rate_limited"
    assert len(openai_server.requests) == 2


async def test_llm_http_500_raises_llm_error(openai_server: OpenAIServer, llm: LLM) -> None:
    openai_server.script(HTTPError(500, "the model fell over"))
    with pytest.raises(LLMError, match="HTTP 500") as caught:
        await collect(llm.stream(HI, []))
    assert not isinstance(caught.value, LLMRateLimitError)
    assert "the model fell over" in str(caught.value)
    assert len(openai_server.requests) == 1  # max_retries=0


async def test_llm_malformed_stream_raises_llm_error(openai_server: OpenAIServer, llm: LLM) -> None:
    openai_server.script(Malformed("Hi"))
    seen: list[object] = []
    with pytest.raises(LLMError, match="malformed"):
        async with asyncio.timeout(5):
            async for item in llm.stream(HI, []):
                seen.append(item)
    assert seen == ["Hi"]


async def test_llm_stalled_stream_times_out_as_llm_error(openai_server: OpenAIServer) -> None:
    openai_server.script(Stall("Hi"))
    llm = endpoint_llm(openai_server, timeout_s=0.2)
    with pytest.raises(LLMError, match="timed out"):
        await collect(llm.stream(HI, []))
    await llm.aclose()


async def test_llm_missing_api_key_raises_llm_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = LLM(model="m", base_url=openai_server.base_url, max_retries=0)
    with pytest.raises(LLMError, match="OPENAI_API_KEY"):
        await collect(llm.stream(HI, []))
    assert openai_server.requests == []


async def test_llm_reads_key_base_url_and_model_from_env(
    monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    openai_server.script(Text("ok"))
    llm = LLM(max_retries=0)
    await collect(llm.stream(HI, []))
    await llm.aclose()
    (request,) = openai_server.requests
    assert request.headers["Authorization"] == "Bearer env-key"
    assert request.body["model"] == "env-model"


async def test_llm_sends_temperature_and_max_tokens_only_when_set(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script(Text("a"), Text("b"))
    plain = endpoint_llm(openai_server)
    tuned = LLM(
        model="m", api_key="test", base_url=openai_server.base_url, temperature=0.0, max_tokens=9
    )
    await collect(plain.stream(HI, []))
    await collect(tuned.stream(HI, []))
    await plain.aclose()
    await tuned.aclose()
    first, second = (r.body for r in openai_server.requests)
    assert "temperature" not in first and "max_tokens" not in first
    assert (second["temperature"], second["max_tokens"]) == (0.0, 9)


async def test_llm_deepcopy_is_the_same_model(llm: LLM) -> None:
    assert copy.deepcopy(llm) is llm
    agent = weather_agent(llm)
    assert agent.model_copy(deep=True).llm is llm
    assert copy.deepcopy(agent).llm is llm


async def test_llm_client_is_shared_by_agent_copies(llm: LLM) -> None:
    agent = weather_agent(llm)
    client = agent.llm.client  # type: ignore[attr-defined]
    assert agent.model_copy(deep=True).llm.client is client  # type: ignore[attr-defined]


def part(index: int | None, id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    return {"index": index, "id": id, "function": {"name": name, "arguments": arguments}}


def test_tool_call_parts_join_deltas_without_index_or_with_repeated_names() -> None:
    parts = ToolCallParts()
    for delta in [
        part(None, "a", "get_weather", '{"city":'),
        part(None, "a", "get_weather", ' "Paris"}'),  # id and whole name repeated
        part(None, None, None, ""),
        part(None, "b", "send_", "{}"),
        part(None, None, "email", ""),
    ]:
        parts.add(delta)
    calls = [(c.id, c.function.name, c.function.arguments) for c in parts.tool_calls(lambda: "new")]
    assert calls == [("a", "get_weather", '{"city": "Paris"}'), ("b", "send_email", "{}")]


async def test_llm_posts_to_the_clients_base_url_when_it_changes(
    openai_server: OpenAIServer,
) -> None:
    """The chat URL is made of the client's base_url (kept between calls, as made absolute):
    a base_url set on the client later is the one the next call goes to."""
    llm = LLM(model="m", api_key="test", base_url=openai_server.base_url + "/elsewhere",
              max_retries=0, timeout_s=5)  # fmt: skip
    with pytest.raises(LLMError, match="HTTP 404"):
        await collect(llm.stream(HI, []))
    llm.client.base_url = openai_server.base_url
    openai_server.script(Text("ok"))
    items = await collect(llm.stream(HI, []))
    assert items[0] == "ok"
    assert [r.path for r in openai_server.requests] == ["/v1/chat/completions"]
    await llm.aclose()
