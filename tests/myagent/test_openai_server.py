"""The fake OpenAI server speaks SSE the way the real endpoint does."""

import json

import aiohttp

from tests.support.openai_server import Call, OpenAIServer, Text, ToolCalls


async def post(server: OpenAIServer, body: dict[str, object]) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.base_url}/chat/completions", json=body) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_openai_server_streams_sse_chunks_ending_with_done(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script(Text("a", "b"))
    status, content_type, text = await post(openai_server, {"model": "m", "stream": True})
    assert (status, content_type) == (200, "text/event-stream")
    frames = text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "a", "b", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # include_usage was not asked for


async def test_openai_server_sends_usage_last_and_tool_call_deltas_with_index(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script(ToolCalls(Call("f", '{"a"', ": 1}", id="c1")))
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    _, _, text = await post(openai_server, body)
    chunks = [json.loads(f.removeprefix("data: ")) for f in text.split("\n\n")[:-2]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18
    parts = [
        p for c in chunks if c["choices"] for p in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [p["index"] for p in parts] == [0, 0, 0]
    assert parts[0]["id"] == "c1" and parts[0]["function"]["name"] == "f"
    assert "".join(p["function"]["arguments"] for p in parts) == '{"a": 1}'
    assert openai_server.requests[0].body == body


async def test_openai_server_answers_500_when_the_script_is_empty(
    openai_server: OpenAIServer,
) -> None:
    status, _, text = await post(openai_server, {"model": "m", "stream": True})
    assert status == 500 and "no scripted reply" in text
