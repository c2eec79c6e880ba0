"""A fake OpenAI-compatible chat-completions endpoint that answers at once, for the benchmark.

Each POST /v1/chat/completions streams one model turn with zero delay, as a real endpoint
streams it (one SSE event a write):
- if the last message is not a tool result: one tool call, `get_weather({"city": ...})`, its
  arguments split over a few chunks;
- after a tool result: the answer in `--chunks` text chunks.

So one user message costs two model calls, whatever the history before it: a conversation can
go on for as many turns as the benchmark wants, its history growing turn by turn. GET /stats
says how many calls came and the size of the largest and last request, so the benchmark can
show that the history did grow (and by how many bytes).

    python -m bench.fake_model --port 8400 --chunks 20
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiohttp import web

CHUNK = "晴朗"  # every text chunk: two CJK characters, like a token of the weather agent's answer
CITY = "北京"


def sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


class Turns:
    """The SSE events of both kinds of turn, built once per model name (the server is a fake)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.cache: dict[tuple[str, bool, bool], list[bytes]] = {}

    def events(self, model: str, tool_turn: bool, usage: bool) -> list[bytes]:
        key = (model, tool_turn, usage)
        if key not in self.cache:
            self.cache[key] = self._build(model, tool_turn, usage)
        return self.cache[key]

    def _build(self, model: str, tool_turn: bool, usage: bool) -> list[bytes]:
        head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk"}
        base = {**head, "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        events = [chunk({"role": "assistant", "content": None if tool_turn else ""})]
        if tool_turn:
            call = {"index": 0, "id": "call_bench", "type": "function"}
            events.append(chunk({"tool_calls": [{**call, "function": {"name": "get_weather"}}]}))
            for piece in ('{"ci', 'ty": "', CITY, '"}'):
                part = {"index": 0, "function": {"arguments": piece}}
                events.append(chunk({"tool_calls": [part]}))
            events.append(chunk({}, "tool_calls"))
        else:
            events.extend(chunk({"content": CHUNK}) for _ in range(self.chunks))
            events.append(chunk({}, "stop"))
        if usage:
            counts = {"prompt_tokens": 50, "completion_tokens": self.chunks, "total_tokens": 70}
            events.append(sse({**base, "choices": [], "usage": counts}))
        events.append(b"data: [DONE]\n\n")
        return events


def make_app(chunks: int) -> web.Application:
    turns = Turns(chunks)
    stats = {"calls": 0, "max_request_bytes": 0, "last_request_bytes": 0, "max_messages": 0}

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        messages = body.get("messages") or [{}]
        stats["calls"] += 1
        stats["last_request_bytes"] = len(raw)
        stats["max_request_bytes"] = max(stats["max_request_bytes"], len(raw))
        stats["max_messages"] = max(stats["max_messages"], len(messages))
        tool_turn = messages[-1].get("role") != "tool"
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for event in turns.events(str(body.get("model", "bench")), tool_turn, usage):
            await response.write(event)
        await response.write_eof()
        return response

    async def read_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/chat/completions", chat)
    app.router.add_get("/stats", read_stats)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    web.run_app(
        make_app(args.chunks), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
