"""What one model call costs through the openai SDK, against a raw aiohttp client: the floor
of the model path.

    python -m bench.sdk_floor              # 5 interleaved rounds of 400 calls each way
    python -m bench.sdk_floor --quick      # a smoke run

In one process pinned to one CPU (bench.fake_model on the other), each way makes the same
streamed call (the weather agent's first turn: its system prompt, one user message, its two
tools) to the fake endpoint and reads the whole stream:

- raw: the model-path ceiling's client (bench/model_ceiling.py): one aiohttp session, the
  body posted as bytes, the SSE lines read and each chunk json.loads'ed;
- sdk: what `LLM` does in the SDK: `AsyncOpenAI.post` of the prepared body to the absolute
  URL, the stream read by myagent.wire.ChunkStream;
- llm: `LLM.stream` as an agent calls it (the body built from the messages, the deltas and
  the tool call put together).

Logs are configured as the service configures them (JSON, at info). Figures per call, medians
of the rounds: the process's CPU (ms) and the wall time of the whole call. A turn of the
weather agent makes two calls before its first text, so `2 x (sdk - raw)` is what the SDK
alone adds to a turn's CPU and first text over the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.model_path import CLIENT_CPU, SERVER_CPU, pinned, process
from bench.run import free_port
from myagent.llm import LLM
from myagent.schema import Message
from myagent.wire import RequestBody
from service.logs import configure_logging

Call = Callable[[], Awaitable[None]]  # one whole call, its stream read to the end


def weather_tools() -> list[dict[str, Any]]:
    """The weather agent's tools, as the model is offered them."""
    from examples.weather_agent import agent

    return agent.tool_params()


def ways(http: aiohttp.ClientSession, llm: LLM, base: str) -> dict[str, Call]:
    messages = [
        Message.system("你是一个天气助手，可以查询天气并发送邮件。"),
        Message.user("查询北京天气"),
    ]
    tools = weather_tools()
    body = RequestBody("bench", {}).build(messages, tools)
    url = f"{base}/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def raw() -> None:
        async with http.post(url, data=body, headers=headers) as response:
            async for line in response.content:
                if line.startswith(b"data: {"):
                    json.loads(line[6:])

    async def sdk() -> None:
        stream = await llm.post_stream(body)
        async for _ in stream.batches():
            pass

    async def whole() -> None:
        async for _ in llm.stream(messages, tools):
            pass

    return {"raw": raw, "sdk": sdk, "llm": whole}


async def measure(calls: int, rounds: int, pin: bool = True) -> dict[str, dict[str, float]]:
    if pin and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    port = free_port()
    fake = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "bench.fake_model", "--port", str(port)]
    samples: dict[str, dict[str, list[float]]] = {}
    env = dict(os.environ)
    async with process(pinned(CLIENT_CPU, argv) if pin else argv, env, f"{fake}/health"):
        llm = LLM("bench", api_key="bench", base_url=f"{fake}/v1")
        async with aiohttp.ClientSession() as http:
            chosen = ways(http, llm, f"{fake}/v1")
            for round_no in range(rounds):
                order = list(chosen.items())
                for name, call in order if round_no % 2 else order[::-1]:
                    for _ in range(max(calls // 10, 3)):  # warm: connections, caches
                        await call()
                    cpu, walls = time.process_time(), []
                    for _ in range(calls):
                        started = time.perf_counter()
                        await call()
                        walls.append(time.perf_counter() - started)
                    figures = samples.setdefault(name, {"cpu_ms": [], "wall_ms": []})
                    figures["cpu_ms"].append((time.process_time() - cpu) / calls * 1e3)
                    figures["wall_ms"].append(statistics.median(walls) * 1e3)
        await llm.aclose()
    return {
        name: {key: round(statistics.median(values), 3) for key, values in figures.items()}
        for name, figures in samples.items()
    }


def report(results: dict[str, dict[str, float]]) -> str:
    raw, sdk = results["raw"]["cpu_ms"], results["sdk"]["cpu_ms"]
    lines = [
        "| way | CPU ms per call | wall p50 ms per call | CPU vs raw |",
        "| --- | --- | --- | --- |",
    ]
    for name, figures in results.items():
        lines.append(
            f"| {name} | {figures['cpu_ms']} | {figures['wall_ms']} | "
            f"{figures['cpu_ms'] / raw:.2f}x |"
        )
    lines.append("")
    lines.append(
        f"The SDK adds {sdk - raw:.3f} ms of CPU to each call; the two calls before a turn's "
        f"first text add {2 * (sdk - raw):.3f} ms."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, rounds = (20, 1) if args.quick else (args.calls, args.rounds)
    # As the service logs: llm_turn (debug) costs nothing then. Here, not in measure(): it
    # configures the process for good (loggers cache on first use), a test's process too.
    configure_logging(json=True)
    print(report(asyncio.run(measure(calls, rounds))))


if __name__ == "__main__":
    main()
