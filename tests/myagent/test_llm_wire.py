"""LLM's own wire path: prepared bodies, SSE read without the SDK's models, shared clients."""

import json
from typing import Any

import pytest

from myagent import LLM, AssistantTurn, Message
from myagent.agent.toolcall import ToolCallAgent
from myagent.errors import LLMError
from myagent.schema import Function, ToolCall, Usage
from myagent.wire import _SSEData
from tests.myagent.helpers import WeatherTool, collect
from tests.support.openai_server import Call, HTTPError, OpenAIServer, Raw, Text, ToolCalls

HI = [Message.user("hi")]


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


def delta(**fields: object) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


async def test_llm_tool_call_split_over_many_chunks_and_text_with_it(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    pieces = [c for c in '{"city": "Paris"}']  # one character a chunk
    openai_server.script(ToolCalls(Call("get_weather", *pieces, id="c1"), content="Let me see."))
    items = await collect(llm.stream(HI, [WeatherTool().to_param()]))
    assert items[:-1] == ["Let me see."]
    turn = items[-1]
    assert isinstance(turn, AssistantTurn) and turn.content == "Let me see."
    assert [(c.id, c.function.name, c.function.arguments) for c in turn.tool_calls] == [
        ("c1", "get_weather", '{"city": "Paris"}')
    ]


async def test_llm_body_is_the_messages_as_to_openai_gives_them(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    call = ToolCall(id="c1", function=Function(name="get_weather", arguments='{"city":"北京"}'))
    messages = [
        Message.system("你是助手"),
        Message.user("北京?"),
        Message.assistant(None, [call]),
        Message.tool("晴", tool_call_id="c1", name="get_weather"),
    ]
    expected = [m.to_openai() for m in messages]
    openai_server.script(Text("ok"), Text("ok"))
    await collect(llm.stream(messages, [WeatherTool().to_param()]))
    messages[1].content = "上海?"  # assigning a field: the message is serialised again
    await collect(llm.stream(messages, []))
    first, second = (r.body for r in openai_server.requests)
    assert first["messages"] == expected
    assert first["tools"] == [WeatherTool().to_param()] and "tools" not in second
    assert second["messages"][1] == {"role": "user", "content": "上海?"}
    assert (first["stream"], first["stream_options"]) == (True, {"include_usage": True})


def test_message_equality_ignores_its_cached_wire_form() -> None:
    sent, fresh = Message.user("hi"), Message.user("hi")
    sent.wire_json()
    assert sent == fresh and sent != Message.user("ho")


async def test_llm_reads_crlf_lines_comments_and_usage(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    body = (
        b": keep-alive comment\r\n\r\n"
        + sse(delta(role="assistant", content="Hel")).replace(b"\n", b"\r\n")
        + b"event: message\r\ndata: "
        + json.dumps(delta(content="lo")).encode()
        + b"\r\n\r\n"
        + sse({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}})
        + b"data: [DONE]\r\n\r\n"
    )
    openai_server.script(Raw(body[:7], body[7:40], body[40:]))
    items = await collect(llm.stream(HI, []))
    assert items == [
        "Hel",
        "lo",
        AssistantTurn(content="Hello", usage=Usage(prompt_tokens=4, completion_tokens=2)),
    ]


async def test_data_split_mid_line_and_over_several_lines() -> None:
    async def pieces():  # type: ignore[no-untyped-def]
        for piece in (b'data: {"a"', b": 1}\n", b"\ndata: [1,\ndata: 2]\n\n", b"data: 3"):
            yield piece

    batches = [batch async for batch in _SSEData().aiter_bytes(pieces())]
    assert [data for batch in batches for data in batch] == [b'{"a": 1}', b"[1,\n2]", b"3"]


async def test_llm_error_sent_inside_the_stream_raises_llm_error(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(
        Raw(sse(delta(content="Hi"), {"error": {"message": "overloaded", "type": "server"}}))
    )
    seen: list[object] = []
    with pytest.raises(LLMError, match="reported an error: overloaded"):
        async for item in llm.stream(HI, []):
            seen.append(item)
    assert seen == ["Hi"]  # what came before the error was streamed


async def test_llm_chunk_that_is_not_an_object_is_malformed(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(Raw(b"data: [1, 2]\n\n"))
    with pytest.raises(LLMError, match="malformed"):
        await collect(llm.stream(HI, []))


async def test_llm_connection_dropped_mid_stream_raises_llm_error(
    openai_server: OpenAIServer, llm: LLM
) -> None:
    openai_server.script(Raw(sse(delta(content="Hi")), drop=True))
    with pytest.raises(LLMError, match=r"cannot reach|malformed|timed out"):
        await collect(llm.stream(HI, []))


async def test_llm_endpoint_not_listening_raises_llm_error() -> None:
    llm = LLM(model="m", api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(LLMError, match="cannot reach the model endpoint"):
        await collect(llm.stream(HI, []))
    await llm.aclose()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_llm_streams_over_either_transport_of_the_sdk(
    openai_server: OpenAIServer, transport: str
) -> None:
    openai_server.script(Text("a", "b"))
    llm = LLM(
        model="m", api_key="k", base_url=openai_server.base_url, max_retries=0, transport=transport
    )  # type: ignore[arg-type]
    assert await collect(llm.stream(HI, [])) == [
        "a",
        "b",
        AssistantTurn(content="ab", usage=Usage(prompt_tokens=11, completion_tokens=7)),
    ]
    await llm.aclose()


async def test_llms_of_one_configuration_share_one_client(openai_server: OpenAIServer) -> None:
    def make(key: str = "k") -> LLM:
        return LLM(model="m", api_key=key, base_url=openai_server.base_url, max_retries=0)

    first, second, other = make(), make(), make("other")
    assert first.client is second.client and other.client is not first.client
    openai_server.script(Text("ok"))
    await first.aclose()  # the other user keeps it open
    assert not second.client.is_closed()
    assert (await collect(second.stream(HI, [])))[0] == "ok"
    await second.aclose()
    await other.aclose()
    assert other._client is None


def test_agent_prompt_messages_are_made_once() -> None:
    agent = ToolCallAgent(name="a", llm=LLM(model="m", api_key="k"), system_prompt="sys",
                          next_step_prompt="next")  # fmt: skip
    agent.current_step = 2
    first, second = agent.llm_messages(), agent.llm_messages()
    assert first[0] is second[0] and first[-1] is second[-1]
    assert first[0].to_openai() == {"role": "system", "content": "sys"}
    assert first[-1].is_step_prompt


async def test_shared_client_sends_each_request_as_the_sdk_builds_it(
    openai_server: OpenAIServer,
) -> None:
    """The shared client builds a request of a prepared body once per shape and reuses it:
    what it sends is what the SDK's own client on the same transport sends, retry count and
    a key changed on the client included."""
    import openai

    body = b'{"model": "m", "messages": [], "stream": true}'
    json_body: Any = {"headers": {"Content-Type": "application/json"}}
    sdk = openai.AsyncOpenAI(
        api_key="k",
        base_url=openai_server.base_url,
        timeout=60.0,  # LLM's default timeout_s
        http_client=openai.DefaultAioHttpClient(),
    )
    llm = LLM(model="m", api_key="k", base_url=openai_server.base_url, max_retries=1)
    openai_server.script(Text("a"), Text("b"))  # the two posts
    openai_server.script(HTTPError.rate_limited(retry_after_ms=1), Text("c"), Text("d"), Text("e"))
    for client in (sdk, llm.client):
        await client.post(llm.chat_options.url, cast_to=object, content=body, options=json_body)
    await collect(llm.stream(HI, []))  # a 429, then its retry
    llm.client.api_key = "rotated"
    await collect(llm.stream(HI, []))
    llm.client.organization = "org-1"  # a default header, set on the client later
    await collect(llm.stream(HI, []))
    await sdk.close()
    await llm.aclose()
    sent = [{k.lower(): v for k, v in r.headers.items()} for r in openai_server.requests]
    theirs, ours, first, retry, rotated, organized = sent
    assert ours == theirs
    assert {**first, "content-length": ""} == {**theirs, "content-length": ""}
    assert (first["x-stainless-retry-count"], retry["x-stainless-retry-count"]) == ("0", "1")
    assert retry["content-length"] == first["content-length"] != ours["content-length"]
    assert [first["authorization"], rotated["authorization"]] == ["Bearer k", "Bearer rotated"]
    assert "openai-organization" not in rotated and organized["openai-organization"] == "org-1"
