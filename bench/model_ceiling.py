"""The model-path ceiling: the thinnest aiohttp server running the weather agent's turn.

Per user.message it does what the turn needs and nothing else: it posts the conversation to
the model endpoint with one shared raw aiohttp client, reads the SSE lines, json.loads each
chunk, runs get_weather, posts again and streams the answer; it sends the frames myagent-ws
sends (thinking, tool_call, tool_result, thinking, a partial answer per chunk, the final
answer), one send_str each. No middleware, logging, metrics, SDK or retries.

With `--client sdk` it makes the same calls through the openai SDK with myagent's own
`LLM.post_stream` (the shared AsyncOpenAI client on the SDK's aiohttp transport, the
low-level `post` of a prepared body, the stream read by myagent.wire.ChunkStream) and
nothing else changes: the floor of a turn that keeps the SDK, measured in the same run as
the ceiling and ours. Only then does it import the SDK.

python -m bench.model_ceiling --port 8310 --model-url http://127.0.0.1:8400/v1 [--client sdk]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType, web

from bench.frames import Session, connected, now

if TYPE_CHECKING:
    from myagent.llm import LLM

SYSTEM = "你是一个天气助手，可以查询天气并发送邮件。"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "获取天气信息",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "城市名称"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "发送邮件",
            "parameters": {
                "type": "object",
                "properties": {
                    "to": {"type": "string"},
                    "subject": {"type": "string"},
                    "body": {"type": "string"},
                },
                "required": ["to", "subject", "body"],
            },
        },
    },
]
Chunks = Callable[[list[dict[str, Any]]], AsyncIterator[dict[str, Any]]]  # one model call
chunks_key: web.AppKey[Chunks] = web.AppKey("chunks")


TOOLS_JSON = json.dumps(TOOLS, ensure_ascii=False)  # the tools never change: dumped once


def request_body(messages: list[dict[str, Any]]) -> bytes:
    """The request: the history dumped once per call, the tools' JSON as it was dumped."""
    history = json.dumps(messages, ensure_ascii=False)
    body = f'{{"model": "bench", "messages": {history}, "tools": {TOOLS_JSON}, "stream": true}}'
    return body.encode()


def raw_chunks(http: aiohttp.ClientSession, url: str) -> Chunks:
    """A model call with the raw aiohttp client: the SSE lines, json.loads of each chunk."""
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

    async def chunks(messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async with http.post(url, data=request_body(messages), headers=headers) as response:
            async for line in response.content:
                if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                    yield json.loads(line[6:])

    return chunks


def sdk_chunks(llm: LLM) -> Chunks:
    """A model call through the openai SDK, as myagent's LLM makes it."""

    async def chunks(messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        stream = await llm.post_stream(request_body(messages))
        async for batch in stream.batches():
            for chunk in batch:
                yield chunk

    return chunks


async def turn(
    ws: web.WebSocketResponse,
    chunks: Chunks,
    session: Session,
    history: list[dict[str, Any]],
    frame: dict[str, Any],
) -> None:
    """One user message: model (tool call), tool, model (answer), with the service's frames."""
    run = {"request_id": frame.get("request_id"), "run_id": uuid.uuid4().hex}
    history.append({"role": "user", "content": frame["content"]})
    for step in (1, 2):
        await ws.send_str(
            session.frame(
                "agent.thinking", **run, content=f"Step {step}: thinking", metadata={"step": step}
            )
        )
        text, call = [], {"id": "", "name": "", "arguments": ""}
        async for chunk in chunks([{"role": "system", "content": SYSTEM}, *history]):
            if not chunk["choices"]:
                continue
            delta = chunk["choices"][0]["delta"]
            if delta.get("content"):
                text.append(delta["content"])
                await ws.send_str(
                    session.frame("agent.partial_answer", **run, content=delta["content"])
                )
            for part in delta.get("tool_calls") or ():
                call["id"] = part.get("id") or call["id"]
                call["name"] += part.get("function", {}).get("name") or ""
                call["arguments"] += part.get("function", {}).get("arguments") or ""
        if not call["name"]:
            answer = "".join(text)
            history.append({"role": "assistant", "content": answer})
            await ws.send_str(session.frame("agent.final_answer", **run, content=answer))
            return
        args = json.loads(call["arguments"])
        tool_call = {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        history.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})
        await ws.send_str(
            session.frame(
                "agent.tool_call",
                **run,
                step_id=call["id"],
                metadata={"tool": call["name"], "args": args, "status": "running"},
            )
        )
        started = time.perf_counter()
        output = f"{args['city']}的天气：晴朗，25°C"
        history.append(
            {"role": "tool", "content": output, "tool_call_id": call["id"], "name": call["name"]}
        )
        await ws.send_str(
            session.frame(
                "agent.tool_result",
                **run,
                step_id=call["id"],
                content=output,
                metadata={
                    "tool": call["name"],
                    "status": "success",
                    "duration_s": time.perf_counter() - started,
                },
            )
        )


def make_app(model_url: str, client: str = "raw") -> web.Application:
    url = model_url.rstrip("/") + "/chat/completions"

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, compress=False)
        await ws.prepare(request)
        await ws.send_str(connected())
        sessions: dict[str, tuple[Session, list[dict[str, Any]]]] = {}
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame["event"] == "user.create_session":
                session = Session()
                sessions[session.id] = (session, [])
                await ws.send_str(session.created())
            elif frame["event"] == "user.message":
                session, history = sessions[frame["session_id"]]
                await turn(ws, request.app[chunks_key], session, history, frame)
        return ws

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "timestamp": now()})

    async def http_ctx(app: web.Application) -> AsyncIterator[None]:
        if client == "sdk":
            from myagent.llm import LLM  # here: the raw ceiling does not import the SDK

            llm = LLM("bench", api_key="bench", base_url=model_url)
            app[chunks_key] = sdk_chunks(llm)
            yield
            await llm.aclose()
            return
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            app[chunks_key] = raw_chunks(http, url)
            yield

    app = web.Application()
    app.cleanup_ctx.append(http_ctx)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8310)
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--client", choices=["raw", "sdk"], default="raw")
    args = parser.parse_args()
    web.run_app(
        make_app(args.model_url, args.client),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
