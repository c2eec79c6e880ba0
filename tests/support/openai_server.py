"""A scriptable OpenAI-compatible chat-completions server on aiohttp, for tests.

Queue replies with `server.script(...)`; each request to /v1/chat/completions takes the next one.
With none queued, `responder(body)` (if set) makes the reply from the request, so that several
processes and clients can share one server. Every request is recorded in `server.requests`
(body, headers) for assertions.

    async with OpenAIServer() as server:
        server.script(ToolCalls(Call("get_weather", '{"ci', 'ty":"Paris"}')), Text("Sun", "ny"))
        llm = LLM(model="m", api_key="test", base_url=server.base_url, max_retries=0)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_ids = itertools.count(1)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 11
    completion_tokens: int = 7


class Text:
    """A streamed text answer, one SSE chunk per piece."""

    def __init__(self, *pieces: str, usage: Usage = Usage()) -> None:
        self.pieces, self.usage = pieces, usage


class Call:
    """One tool call whose JSON arguments arrive split in these pieces."""

    def __init__(self, name: str, *arguments: str, id: str | None = None) -> None:
        self.name, self.arguments = name, arguments
        self.id = id or f"call_srv_{next(_ids)}"


class ToolCalls:
    """A streamed turn of tool calls (each chunk carries its call's `index`)."""

    def __init__(self, *calls: Call, content: str | None = None, usage: Usage = Usage()) -> None:
        self.calls, self.content, self.usage = calls, content, usage


@dataclass(frozen=True)
class HTTPError:
    """An error status with an OpenAI-style error body, e.g. 429 with Retry-After."""

    status: int
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limited(cls, retry_after_ms: int = 10) -> HTTPError:
        headers = {"retry-after-ms": str(retry_after_ms), "Retry-After": "1"}
        return cls(429, "Rate limit reached; slow down", headers)


class Malformed:
    """A stream whose data line (after these text pieces) is not JSON."""

    def __init__(self, *pieces: str) -> None:
        self.pieces = pieces


class Stall:
    """A stream that sends these text pieces, then nothing until the server closes."""

    def __init__(self, *pieces: str) -> None:
        self.pieces = pieces


class Raw:
    """A stream of these bytes exactly (for CRLF line ends, comments, errors in the stream)."""

    def __init__(self, *pieces: bytes, drop: bool = False) -> None:
        self.pieces, self.drop = pieces, drop  # drop: cut the connection after the pieces


Reply = Text | ToolCalls | HTTPError | Malformed | Stall | Raw


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class OpenAIServer:
    """The fake endpoint: start it, script replies, read what it received."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.replies: deque[Reply] = deque()
        self.responder = responder
        self.stalled = asyncio.Event()  # set when a Stall reply has sent its pieces
        self.disconnected = asyncio.Event()  # set when a client hangs up on a stalled stream
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._closing.set()  # releases stalled streams so shutdown is quick
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> OpenAIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        if self.replies:
            reply = self.replies.popleft()
        elif self.responder is not None:
            reply = self.responder(body)
        else:
            return _error(500, "the fake server has no scripted reply left")
        if isinstance(reply, HTTPError):
            return _error(reply.status, reply.message, reply.headers)
        if not body.get("stream"):
            return _error(400, "the fake server only streams; send stream=true")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        stream = _Chunks(body["model"])
        if isinstance(reply, Text):
            await _send_text(response, stream, reply.pieces)
            await _finish(response, stream, "stop", reply.usage if include_usage else None)
        elif isinstance(reply, ToolCalls):
            await _send_tool_calls(response, stream, reply)
            await _finish(response, stream, "tool_calls", reply.usage if include_usage else None)
        elif isinstance(reply, Raw):
            for piece in reply.pieces:
                await response.write(piece)
            if reply.drop:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write_eof()
        elif isinstance(reply, Malformed):
            await _send_text(response, stream, reply.pieces)
            await response.write(b"data: {this is not json\n\n")
            await response.write(b"data: [DONE]\n\n")
        else:
            await _send_text(response, stream, reply.pieces)
            self.stalled.set()
            try:
                await self._closing.wait()
            except asyncio.CancelledError:  # the client went away: aiohttp cancels the handler
                self.disconnected.set()
                raise
        return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "scripted", "code": str(status)}}
    return web.json_response(body, status=status, headers=headers)


class _Chunks:
    """Builds chat.completion.chunk objects of one response."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{next(_ids)}"
        self.model = model
        self.created = int(time.time())

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return self._base(choices=[choice])

    def usage(self, usage: Usage) -> dict[str, Any]:
        return self._base(choices=[], usage=_usage(usage))

    def _base(self, **fields: Any) -> dict[str, Any]:
        base = {"id": self.id, "object": "chat.completion.chunk", "created": self.created}
        return {**base, "model": self.model, **fields}


def _usage(usage: Usage) -> dict[str, int]:
    total = usage.prompt_tokens + usage.completion_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": total,
    }


async def _send(response: web.StreamResponse, data: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())


async def _send_text(
    response: web.StreamResponse, stream: _Chunks, pieces: tuple[str, ...]
) -> None:
    await _send(response, stream.chunk({"role": "assistant", "content": ""}))
    for piece in pieces:
        await _send(response, stream.chunk({"content": piece}))


async def _send_tool_calls(response: web.StreamResponse, stream: _Chunks, reply: ToolCalls) -> None:
    await _send(response, stream.chunk({"role": "assistant", "content": reply.content}))
    for index, call in enumerate(reply.calls):
        head = {"index": index, "id": call.id, "type": "function"}
        function = {"name": call.name, "arguments": ""}
        await _send(response, stream.chunk({"tool_calls": [{**head, "function": function}]}))
        for piece in call.arguments:
            part = {"index": index, "function": {"arguments": piece}}
            await _send(response, stream.chunk({"tool_calls": [part]}))


async def _finish(
    response: web.StreamResponse, stream: _Chunks, reason: str, usage: Usage | None
) -> None:
    await _send(response, stream.chunk({}, finish=reason))
    if usage is not None:
        await _send(response, stream.usage(usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
